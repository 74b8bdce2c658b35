package body

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// jsonResult is everything a JSONUsageScanner reports.
type jsonResult struct {
	Usage    Usage
	SawUsage bool
	Model    string
}

func scanJSON(maxCapture int, chunks ...[]byte) jsonResult {
	s := JSONUsageScanner{MaxCapture: maxCapture}
	for _, c := range chunks {
		s.Feed(c)
	}
	return jsonResult{Usage: s.Usage(), SawUsage: s.SawUsage(), Model: s.Model()}
}

func TestJSONUsageScannerSample(t *testing.T) {
	require.Equal(t, jsonWant, scanJSON(0, []byte(jsonResponse)))

	// encoding/json reads the same.
	var doc struct {
		Model string `json:"model"`
		Usage struct {
			PromptTokens        int64 `json:"prompt_tokens"`
			CompletionTokens    int64 `json:"completion_tokens"`
			TotalTokens         int64 `json:"total_tokens"`
			PromptTokensDetails struct {
				CachedTokens int64 `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	require.NoError(t, json.Unmarshal([]byte(jsonResponse), &doc))
	require.Equal(t, jsonWant, jsonResult{
		Usage: Usage{
			Input: doc.Usage.PromptTokens, CachedInput: doc.Usage.PromptTokensDetails.CachedTokens,
			Output: doc.Usage.CompletionTokens, Total: doc.Usage.TotalTokens,
		},
		SawUsage: true, Model: doc.Model,
	})
}

func TestJSONUsageScannerEverySplit(t *testing.T) {
	data := []byte(jsonResponse)
	for i := 0; i <= len(data); i++ {
		require.Equal(t, jsonWant, scanJSON(0, data[:i], data[i:]), "split at %d", i)
	}
	for i := 0; i <= len(data); i += 5 {
		for j := i; j <= len(data); j += 11 {
			require.Equal(t, jsonWant, scanJSON(0, data[:i], data[i:j], data[j:]), "split at %d, %d", i, j)
		}
	}
	// One byte at a time.
	var chunks [][]byte
	for i := range data {
		chunks = append(chunks, data[i:i+1])
	}
	require.Equal(t, jsonWant, scanJSON(0, chunks...))
}

func TestJSONUsageScannerRandomChunks(t *testing.T) {
	data := response4K()
	want := scanJSON(0, data)
	require.Equal(t, jsonResult{Usage: Usage{Input: 12, Output: 900, Total: 912}, SawUsage: true, Model: "gpt-4o"}, want)
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 500; n++ {
		require.Equal(t, want, scanJSON(0, randomChunks(rng, data)...))
	}
}

func TestJSONUsageScannerCases(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want jsonResult
	}{
		{"usage first, model last", `{"usage":{"prompt_tokens":3,"completion_tokens":4},"choices":[],"model":"m"}`,
			jsonResult{Usage: Usage{Input: 3, Output: 4, Total: 7}, SawUsage: true, Model: "m"}},
		{"spaces everywhere", " \n{ \"usage\" :\t{ \"total_tokens\" : 9 } , \"model\" : \"m\" } ",
			jsonResult{Usage: Usage{Total: 9}, SawUsage: true, Model: "m"}},
		{"escaped names and model", `{"us\u0061ge":{"prompt_tokens":1},"model":"a\"b\u00e9"}`,
			jsonResult{Usage: Usage{Input: 1, Total: 1}, SawUsage: true, Model: `a"bé`}},
		{"last usage wins", `{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}`,
			jsonResult{Usage: Usage{Input: 2, Total: 2}, SawUsage: true}},
		{"null usage, model of wrong type", `{"usage":null,"model":5}`, jsonResult{}},
		{"usage as a string", `{"usage":"{\"prompt_tokens\":1}"}`, jsonResult{}},
		{"usage invalid inside", `{"usage":{"prompt_tokens":1,,}}`, jsonResult{}},
		{"nested usage and model ignored", `{"data":{"usage":{"prompt_tokens":1},"model":"x"},"list":[{"usage":{"prompt_tokens":2}}]}`, jsonResult{}},
		{"a key that is a long string", `{"` + strings.Repeat("k", 100) + `":1,"model":"m"}`, jsonResult{Model: "m"}},
		{"value after a long key is not captured", `{"` + strings.Repeat("u", 100) + `":{"prompt_tokens":1}}`, jsonResult{}},
		{"scalars at depth 1", `{"a":1,"b":true,"c":null,"d":-2.5e3,"model":"m"}`, jsonResult{Model: "m"}},
		{"array body", `[{"usage":{"prompt_tokens":1}}]`, jsonResult{}},
		{"error body", `{"error":{"message":"rate limited","type":"rate_limit_exceeded"}}`, jsonResult{}},
		{"not json", `<html>usage</html>`, jsonResult{}},
		{"truncated", `{"model":"m","usage":{"prompt_tokens":1`, jsonResult{Model: "m"}},
		{"data after the document is ignored", `{"model":"m"}{"model":"n","usage":{"prompt_tokens":1}}`, jsonResult{Model: "m"}},
		{"empty", ``, jsonResult{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.body)
			require.Equal(t, tc.want, scanJSON(0, data))
			for i := 0; i <= len(data); i++ {
				require.Equal(t, tc.want, scanJSON(0, data[:i], data[i:]), "split at %d", i)
			}
		})
	}
}

func TestJSONUsageScannerBoundsCapture(t *testing.T) {
	pad := strings.Repeat("x", 500)
	body := `{"usage":{"pad":"` + pad + `","prompt_tokens":1},"model":"m"}`
	require.Equal(t, jsonResult{Model: "m"}, scanJSON(100, []byte(body)))
	require.Equal(t, jsonResult{Usage: Usage{Input: 1, Total: 1}, SawUsage: true, Model: "m"}, scanJSON(1000, []byte(body)))

	// A 10 MiB usage value fed in pieces is dropped without growing the buffer.
	s := JSONUsageScanner{MaxCapture: 1024}
	s.Feed([]byte(`{"usage":{"pad":"`))
	piece := []byte(strings.Repeat("z", 1<<10))
	for i := 0; i < 10<<10; i++ {
		s.Feed(piece)
	}
	s.Feed([]byte(`"},"model":"m"}`))
	require.LessOrEqual(t, cap(s.capture), 2048)
	require.False(t, s.SawUsage())
	require.Equal(t, "m", s.Model())
}

func TestJSONUsageScannerDoesNotAllocateOnceWarm(t *testing.T) {
	data := response4K()
	var s JSONUsageScanner
	s.Feed(data)
	allocs := testing.AllocsPerRun(100, func() {
		s = JSONUsageScanner{capture: s.capture[:0], model: s.model}
		s.Feed(data[:1000])
		s.Feed(data[1000:])
	})
	require.Zero(t, allocs)
	require.True(t, s.SawUsage())
}

func TestJSONUsageScannerFullyEscapedNames(t *testing.T) {
	body := `{"\u0075\u0073\u0061\u0067\u0065":{"prompt_tokens":1},"\u006d\u006f\u0064\u0065\u006c":"m"}`
	require.Equal(t, jsonResult{Usage: Usage{Input: 1, Total: 1}, SawUsage: true, Model: "m"}, scanJSON(0, []byte(body)))
}

// A reset scanner reports no model until an answer names one, and reading
// the same model again after a reset copies nothing.
func TestJSONUsageScannerResetKeepsNothingVisible(t *testing.T) {
	var s JSONUsageScanner
	s.Feed([]byte(`{"model":"gpt-4.1","usage":{"prompt_tokens":1,"completion_tokens":2}}`))
	require.Equal(t, "gpt-4.1", s.Model())
	s.Reset()
	require.Equal(t, "", s.Model())
	require.False(t, s.SawUsage())
	s.Feed([]byte(`{"usage":{"prompt_tokens":1}}`))
	require.Equal(t, "", s.Model(), "no model named since the reset")
	s.Reset()
	s.Feed([]byte(`{"model":"other"}`))
	require.Equal(t, "other", s.Model())

	answer := []byte(`{"model":"other","usage":{"prompt_tokens":1}}`)
	allocs := testing.AllocsPerRun(100, func() {
		s.Reset()
		s.Feed(answer)
	})
	require.Zero(t, allocs)
	require.Equal(t, "other", s.Model())
}
