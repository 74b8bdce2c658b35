package body

import (
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// exactCount is parseCount's contract in exact arithmetic: a JSON integer
// token without sign or leading zero, clipped at MaxCount.
func exactCount(tok string) (int64, bool) {
	if tok == "" || len(tok) > 1 && tok[0] == '0' || strings.TrimLeft(tok, "0123456789") != "" {
		return 0, false
	}
	n, ok := new(big.Int).SetString(tok, 10)
	if !ok {
		return 0, false
	}
	if n.Cmp(big.NewInt(MaxCount)) > 0 {
		return MaxCount, true
	}
	return n.Int64(), true
}

func TestParseCountAgreesWithBigIntegers(t *testing.T) {
	cases := []string{"0", "1", "999999999999", "1000000000000", "1000000000001",
		"9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616",
		"92233720368547758070", strings.Repeat("9", 400), "01", "-1", "1.0", "1e3", "", "+5"}
	rng := rand.New(rand.NewPCG(15, 1))
	for range 2000 {
		digits := make([]byte, 1+rng.IntN(30))
		for i := range digits {
			digits[i] = byte('0' + rng.IntN(10))
		}
		cases = append(cases, string(digits), strconv.FormatUint(rng.Uint64(), 10))
	}
	for _, tok := range cases {
		n, ok := parseCount([]byte(tok))
		wn, wok := exactCount(tok)
		require.Equal(t, wok, ok, "%q", tok)
		require.Equal(t, wn, n, "%q", tok)
	}
}

func FuzzParseCount(f *testing.F) {
	for _, s := range []string{"0", "1000000000001", "9223372036854775808", "18446744073709551616", "00", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		n, ok := parseCount([]byte(tok))
		wn, wok := exactCount(tok)
		require.Equal(t, wok, ok)
		require.Equal(t, wn, n)
		require.True(t, n >= 0 && n <= MaxCount)
	})
}

// TestHostileUsageIsBounded: the usage numbers of issue 15 and beyond read as
// at most MaxCount each, so their sum cannot wrap.
func TestHostileUsageIsBounded(t *testing.T) {
	cases := []struct {
		usage string
		want  Usage
	}{
		{`{"prompt_tokens":9223372036854775807,"completion_tokens":4611686018427387904}`,
			Usage{Input: MaxCount, Output: MaxCount, Total: 2 * MaxCount}},
		{`{"prompt_tokens":184467440737095516150,"completion_tokens":5,"total_tokens":99999999999999999999999}`,
			Usage{Input: MaxCount, Output: 5, Total: MaxCount}},
		{`{"prompt_tokens":-5,"completion_tokens":1.5e300,"prompt_tokens_details":{"cached_tokens":9223372036854775808}}`,
			Usage{CachedInput: MaxCount}},
		{`{"input_tokens":10,"output_tokens":20}`, Usage{Input: 10, Output: 20, Total: 30}},
	}
	for _, tc := range cases {
		u, ok := parseUsage([]byte(tc.usage))
		require.True(t, ok, tc.usage)
		require.Equal(t, tc.want, u, tc.usage)
	}
}
