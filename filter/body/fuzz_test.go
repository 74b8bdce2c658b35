package body

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
	"github.com/stretchr/testify/require"
)

// The seed corpora live in testdata/fuzz; these add the samples of the tests.

func FuzzInspectRequest(f *testing.F) {
	f.Add([]byte(chatRequest))
	f.Add(request8K())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := InspectRequest(data)
		valid := json.Valid(data)
		// What is accepted has a valid structure: valid JSON once the
		// strings InspectRequest does not read inside are made valid.
		if err == nil || errors.Is(err, ErrNotObject) || errors.Is(err, ErrModelType) || errors.Is(err, ErrFieldType) {
			require.True(t, json.Valid(neutralized(data)), "accepted invalid json")
		}
		if errors.Is(err, ErrInvalidJSON) && valid && utf8.Valid(data) {
			require.ErrorContains(t, err, "nested too deeply", "rejected valid json")
		}
		if err != nil || !valid {
			return
		}
		var doc map[string]any
		require.NoError(t, json.Unmarshal(data, &doc))
		model, hasModel := doc["model"]
		require.Equal(t, hasModel, r.HasModel)
		if hasModel && utf8.Valid(data) {
			require.Equal(t, model, r.ModelName(data))
		}
		require.Equal(t, doc["stream"] == true, r.Stream)
		if n, ok := doc["max_tokens"].(float64); ok {
			require.Equal(t, math.Min(n, MaxCount), float64(r.MaxTokens))
		} else {
			require.Equal(t, int64(-1), r.MaxTokens)
		}
		require.GreaterOrEqual(t, r.PromptTextBytes, int64(0))
		require.LessOrEqual(t, r.PromptTextBytes, int64(len(data)))
	})
}

func FuzzRewriteModel(f *testing.F) {
	f.Add([]byte(chatRequest), "relay/model")
	f.Add([]byte(`{}`), "m")
	f.Add([]byte(`{"stream":true,"stream_options":null}`), "a\"b")
	f.Fuzz(func(t *testing.T, data []byte, model string) {
		r, err := InspectRequest(data)
		if err != nil || !json.Valid(data) {
			return
		}
		wantModel, err := jsonlite.Unquote(jsonlite.AppendString(nil, model))
		require.NoError(t, err)

		for _, e := range []Edit{
			{SetModel: true, Model: model},
			{IncludeUsage: true},
			{SetModel: true, Model: model, IncludeUsage: true},
		} {
			out, changed := Apply(data, r, e)
			// The edited prefix in place of the body's first cut bytes is the
			// edited body.
			prefix, cut, prefixChanged := AppendAppliedPrefix(nil, data, r, e)
			require.Equal(t, changed, prefixChanged)
			if changed {
				require.Equal(t, string(out), string(prefix)+string(data[cut:]))
			}
			require.True(t, json.Valid(out), "invalid output %q", out)
			r2, err := InspectRequest(out)
			require.NoError(t, err, "%q", out)
			if !changed {
				require.Equal(t, data, out)
			}
			if e.SetModel {
				require.True(t, r2.HasModel)
				require.Equal(t, wantModel, r2.ModelName(out))
				require.Equal(t, r.DuplicateModel, r2.DuplicateModel)
			} else {
				require.Equal(t, string(data[r.Model.Start:r.Model.End]), string(out[r2.Model.Start:r2.Model.End]))
			}
			if e.IncludeUsage {
				require.Equal(t, r.Stream || r.IncludeUsage, r2.IncludeUsage)
			}
			require.Equal(t, r.Stream, r2.Stream)
			require.Equal(t, r.MaxTokens, r2.MaxTokens)
			require.Equal(t, r.PromptTextBytes, r2.PromptTextBytes)

			if utf8.Valid(data) {
				var before, after map[string]any
				require.NoError(t, json.Unmarshal(data, &before))
				require.NoError(t, json.Unmarshal(out, &after))
				if e.SetModel {
					before["model"] = wantModel
				}
				if e.IncludeUsage && r.Stream {
					if so, ok := before["stream_options"].(map[string]any); ok {
						so["include_usage"] = true
					} else {
						before["stream_options"] = map[string]any{"include_usage": true}
					}
				}
				require.Equal(t, before, after)
			}
		}
	})
}

func FuzzSSEScanner(f *testing.F) {
	f.Add([]byte(sseStream), uint16(100), uint16(0))
	f.Add(sse200()[:2000], uint16(7), uint16(300))
	f.Fuzz(func(t *testing.T, data []byte, cut, maxEvent uint16) {
		want := scanSSE(int(maxEvent), data)
		c := int(cut) % (len(data) + 1)
		require.Equal(t, whole(want), whole(scanSSE(int(maxEvent), data[:c], data[c:])))
		var bytewise [][]byte
		for i := range data {
			bytewise = append(bytewise, data[i:i+1])
		}
		require.Equal(t, whole(want), whole(scanSSE(int(maxEvent), bytewise...)))
		require.LessOrEqual(t, want.FirstContentOnce, 1)
		// The output count too, which whole events past the first content
		// reach by a shorter path.
		outputs := func(chunks ...[]byte) int {
			s := SSEScanner{MaxEvent: int(maxEvent)}
			for _, c := range chunks {
				s.Feed(c)
			}
			s.Finish()
			return s.Outputs()
		}
		require.Equal(t, outputs(data), outputs(bytewise...))
	})
}

func FuzzJSONUsageScanner(f *testing.F) {
	f.Add([]byte(jsonResponse), uint16(100), uint16(0))
	f.Add(response4K(), uint16(4000), uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, cut, maxCapture uint16) {
		want := scanJSON(int(maxCapture), data)
		c := int(cut) % (len(data) + 1)
		require.Equal(t, want, scanJSON(int(maxCapture), data[:c], data[c:]))
		var bytewise [][]byte
		for i := range data {
			bytewise = append(bytewise, data[i:i+1])
		}
		require.Equal(t, want, scanJSON(int(maxCapture), bytewise...))

		// On a valid response, agree with encoding/json about the model.
		var doc map[string]any
		if maxCapture == 0 && utf8.Valid(data) && json.Unmarshal(data, &doc) == nil {
			if m, ok := doc["model"].(string); ok {
				require.Equal(t, m, want.Model)
			}
		}
	})
}
