package pricing

import (
	"math"
	"math/big"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseUSD(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  error
	}{
		{"2.00", 2_000_000, nil},
		{"0.50", 500_000, nil},
		{"8.00", 8_000_000, nil},
		{"0.075", 75_000, nil},
		{"15", 15_000_000, nil},
		{"0", 0, nil},
		{".5", 500_000, nil},
		{"5.", 5_000_000, nil},
		{"0.000001", 1, nil},
		{"0.0750000000", 75_000, nil},
		{"000000000000000000000002.5", 2_500_000, nil},
		{"7.5e-2", 75_000, nil},
		{"7.5E-2", 75_000, nil},
		{"2e0", 2_000_000, nil},
		{"1e+6", MaxPrice, nil},
		{"1000000", MaxPrice, nil},
		{"1e-6", 1, nil},
		{"0e99", 0, nil},
		{"0.0000001", 0, ErrPrecision},
		{"1e-7", 0, ErrPrecision},
		{"1000000.000001", 0, ErrRange},
		{"1e7", 0, ErrRange},
		{"99999999999999999999", 0, ErrRange},
		{"", 0, ErrSyntax},
		{".", 0, ErrSyntax},
		{"-1", 0, ErrSyntax},
		{"+1", 0, ErrSyntax},
		{"1,5", 0, ErrSyntax},
		{"1.2.3", 0, ErrSyntax},
		{" 1", 0, ErrSyntax},
		{"e5", 0, ErrSyntax},
		{"1e", 0, ErrSyntax},
		{"1e+", 0, ErrSyntax},
		{"1e99999", 0, ErrSyntax},
		{"$2", 0, ErrSyntax},
		{"NaN", 0, ErrSyntax},
	}
	for _, tc := range cases {
		got, err := ParseUSD(tc.in)
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
	_, err := ParseUSD("0.0000001")
	require.EqualError(t, err, `pricing: usd "0.0000001": finer than a micro-USD per million tokens`)
}

// TestParseUSDRoundTrips formats micro-USD values as decimal strings in several
// spellings and parses them back.
func TestParseUSDRoundTrips(t *testing.T) {
	seed := uint64(99)
	for range 20000 {
		seed = seed*6364136223846793005 + 1442695040888963407
		v := int64(seed>>20) % (MaxPrice + 1)
		whole, frac := v/1_000_000, v%1_000_000
		fracStr := strconv.FormatInt(frac+1_000_000, 10)[1:] // six digits
		for _, s := range []string{
			strconv.FormatInt(whole, 10) + "." + fracStr,
			strconv.FormatInt(whole, 10) + "." + fracStr + "000",
			strconv.FormatInt(v, 10) + "e-6",
			strconv.FormatInt(v, 10) + "0e-7",
		} {
			got, err := ParseUSD(s)
			require.NoError(t, err, s)
			require.Equal(t, v, got, s)
		}
	}
}

// exact is the reference cost: the rational sum in USD, rounded half up to
// micro-USD with math/big.
func exact(p Price, in, cached, out int64) int64 {
	cached = min(cached, in)
	pico := new(big.Int).Mul(big.NewInt(in-cached), big.NewInt(p.Input))
	pico.Add(pico, new(big.Int).Mul(big.NewInt(cached), big.NewInt(p.CachedInput)))
	pico.Add(pico, new(big.Int).Mul(big.NewInt(out), big.NewInt(p.Output)))
	pico.Add(pico, big.NewInt(picoPerMicro/2))
	pico.Quo(pico, big.NewInt(picoPerMicro))
	return pico.Int64()
}

func TestCost(t *testing.T) {
	table := Example2026()
	cases := []struct {
		name            string
		model           string
		in, cached, out int64
		want            int64
		known           bool
	}{
		// 800×2.00 + 200×0.50 + 500×8.00 = 5700 micro-USD.
		{"gpt-4.1", "gpt-4.1", 1000, 200, 500, 5700, true},
		{"dated snapshot", "gpt-4.1-2025-04-14", 1000, 200, 500, 5700, true},
		{"compact date", "gpt-4.1-mini-20250414", 1_000_000, 0, 0, 400_000, true},
		{"zero tokens", "gpt-4.1", 0, 0, 0, 0, true},
		{"negative counts are zero", "gpt-4.1", -5, -1, -100, 0, true},
		{"cached above input is capped", "gpt-4.1", 100, 500, 0, 50, true},
		{"sub-micro rounds down", "gemini-2.5-flash", 16, 16, 0, 0, true},   // 0.48 micro
		{"half a micro rounds up", "gemini-2.5-flash", 50, 50, 0, 2, true},  // 1.5 micro
		{"parts summed before rounding", "deepseek-v3.2", 1, 0, 1, 1, true}, // 0.28 + 0.42 = 0.70
		{"unknown model", "gpt-5-turbo", 1000, 0, 1000, 0, false},
		{"not a date", "gpt-4.1-x", 1000, 0, 0, 0, false},
		{"empty model", "", 1, 0, 1, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, known := table.Cost(tc.model, tc.in, tc.cached, tc.out)
			require.Equal(t, tc.known, known)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestCostMatchesExactArithmetic(t *testing.T) {
	seed := uint64(5)
	next := func(n int64) int64 {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int64(seed>>1) % n
	}
	for range 20000 {
		p := Price{Input: next(MaxPrice + 1), CachedInput: next(50_000_000), Output: next(100_000_000)}
		in, cached, out := next(MaxTokens+1), next(10_000_000), next(1_000_000_000)
		if next(2) == 0 { // realistic sizes too
			in, cached, out = next(200_000), next(100_000), next(50_000)
		}
		require.Equal(t, exact(p, in, cached, out), p.Micro(in, cached, out), "%+v %d %d %d", p, in, cached, out)
	}
}

func TestCostAtTheBounds(t *testing.T) {
	p := Price{Input: MaxPrice, CachedInput: MaxPrice, Output: MaxPrice}
	// 2×1e12 tokens × 1e12 pico = 2e24 pico = 2e18 micro-USD, within int64.
	want := exact(p, MaxTokens, 0, MaxTokens)
	require.Equal(t, int64(2e18), want)
	require.Equal(t, want, p.Micro(MaxTokens, 0, MaxTokens))
	// Counts above MaxTokens are taken as MaxTokens.
	require.Equal(t, want, p.Micro(math.MaxInt64, 0, math.MaxInt64))
	require.Equal(t, want, p.Micro(math.MaxInt64, math.MaxInt64, math.MaxInt64))
}

func TestPicoSaturates(t *testing.T) {
	require.Equal(t, int64(math.MaxInt64), Pico{Hi: picoPerMicro}.Micro())
	require.Equal(t, int64(math.MaxInt64), Pico{Hi: picoPerMicro - 1, Lo: math.MaxUint64}.Micro())
}

func TestAccumulatorLosesNothing(t *testing.T) {
	// One token at $0.075 per million is 0.075 micro-USD: each request alone
	// rounds to 0, a million of them cost 75000 micro-USD.
	price, err := ParseUSD("0.075")
	require.NoError(t, err)
	p := Price{Output: price}
	single, _ := (&Table{prices: map[string]Price{"m": p}}).Cost("m", 0, 0, 1)
	require.Zero(t, single)

	var acc Accumulator
	var total int64
	for range 1_000_000 {
		total += acc.Add(p.Pico(0, 0, 1))
	}
	require.Equal(t, int64(75_000), total)
	require.Zero(t, acc.Remainder())

	// Mixed requests: what was handed out plus the remainder is the exact sum.
	acc = Accumulator{}
	total = 0
	exactPico := new(big.Int)
	q := Example2026()
	seed := uint64(3)
	for i := range 10_000 {
		seed = seed*6364136223846793005 + 1442695040888963407
		in, cached, out := int64(seed>>40)%5000, int64(seed>>50)%1000, int64(seed>>30)%3000
		model := [...]string{"gpt-4.1", "gpt-4.1-mini", "deepseek-v3.2", "gemini-2.5-flash", "claude-sonnet-4.5"}[i%5]
		pr, ok := q.Lookup(model)
		require.True(t, ok)
		c := pr.Pico(in, cached, out)
		total += acc.Add(c)
		exactPico.Add(exactPico, new(big.Int).Lsh(new(big.Int).SetUint64(c.Hi), 64))
		exactPico.Add(exactPico, new(big.Int).SetUint64(c.Lo))
	}
	got := new(big.Int).Mul(big.NewInt(total), big.NewInt(picoPerMicro))
	got.Add(got, big.NewInt(acc.Remainder()))
	require.Equal(t, 0, exactPico.Cmp(got))
	require.Less(t, acc.Remainder(), int64(picoPerMicro))
}

func TestNewTable(t *testing.T) {
	table, err := NewTable(map[string]Price{"a": {Input: 1}, "b": {Output: MaxPrice}})
	require.NoError(t, err)
	require.Equal(t, 2, table.Len())

	cases := []struct {
		prices map[string]Price
		err    string
	}{
		{map[string]Price{"": {}}, "pricing: model name must not be empty"},
		{map[string]Price{"m": {Input: -1}}, `pricing: model "m" input: must be between 0 and 1000000 USD per million tokens`},
		{map[string]Price{"m": {CachedInput: MaxPrice + 1}}, `pricing: model "m" cachedInput: must be between 0 and 1000000 USD per million tokens`},
		{map[string]Price{"m": {Output: -5}}, `pricing: model "m" output: must be between 0 and 1000000 USD per million tokens`},
	}
	for _, tc := range cases {
		_, err := NewTable(tc.prices)
		require.EqualError(t, err, tc.err)
	}
}

func TestExample2026MatchesItsDocumentedPrices(t *testing.T) {
	documented := map[string][3]string{
		"gpt-4.1":           {"2.00", "0.50", "8.00"},
		"gpt-4.1-mini":      {"0.40", "0.10", "1.60"},
		"deepseek-v3.2":     {"0.28", "0.028", "0.42"},
		"gemini-2.5-flash":  {"0.30", "0.03", "2.50"},
		"claude-sonnet-4.5": {"3.00", "0.30", "15.00"},
	}
	table := Example2026()
	require.Equal(t, len(documented), table.Len())
	for model, s := range documented {
		var want Price
		var err error
		want.Input, err = ParseUSD(s[0])
		require.NoError(t, err)
		want.CachedInput, err = ParseUSD(s[1])
		require.NoError(t, err)
		want.Output, err = ParseUSD(s[2])
		require.NoError(t, err)
		got, ok := table.Lookup(model)
		require.True(t, ok, model)
		require.Equal(t, want, got, model)
	}
}

func TestCostAllocatesNothing(t *testing.T) {
	table := Example2026()
	var acc Accumulator
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := table.Cost("gpt-4.1-2025-04-14", 1200, 100, 300); !ok {
			panic("unknown")
		}
		p, _ := table.Lookup("claude-sonnet-4.5")
		acc.Add(p.Pico(1200, 100, 300))
	})
	require.Zero(t, allocs)
}

func FuzzParseUSD(f *testing.F) {
	for _, s := range []string{"2.00", "0.075", "7.5e-2", "1e6", ".", "1e-7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseUSD(s)
		if err != nil {
			return
		}
		if v < 0 || v > MaxPrice {
			t.Fatalf("%q: %d out of range", s, v)
		}
		// Whatever parsed reads back the same from its canonical spelling.
		canon := strconv.FormatInt(v/1_000_000, 10) + "." + strconv.FormatInt(v%1_000_000+1_000_000, 10)[1:]
		if again, err := ParseUSD(canon); err != nil || again != v {
			t.Fatalf("%q: %d, but %q reads %d, %v", s, v, canon, again, err)
		}
	})
}

func BenchmarkCost(b *testing.B) {
	table := Example2026()
	for _, model := range []string{"gpt-4.1", "gpt-4.1-2025-04-14"} {
		b.Run(model, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				table.Cost(model, 1200, 100, 300)
			}
		})
	}
}

func BenchmarkAccumulatorAdd(b *testing.B) {
	p, _ := Example2026().Lookup("gpt-4.1")
	var acc Accumulator
	b.ReportAllocs()
	for b.Loop() {
		acc.Add(p.Pico(1200, 100, 300))
	}
}
