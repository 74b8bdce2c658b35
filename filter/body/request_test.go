package body

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
	"github.com/stretchr/testify/require"
)

// view is what a test compares of a Request.
type view struct {
	Model               string
	HasModel, Dup       bool
	Stream              bool
	MaxTokens, MaxCompl int64
	HasStreamOptions    bool
	IncludeUsage        bool
	TextBytes           int64
}

func viewOf(body []byte, r Request) view {
	return view{
		Model: r.ModelName(body), HasModel: r.HasModel, Dup: r.DuplicateModel,
		Stream: r.Stream, MaxTokens: r.MaxTokens, MaxCompl: r.MaxCompletionTokens,
		HasStreamOptions: r.HasStreamOptions, IncludeUsage: r.IncludeUsage,
		TextBytes: r.PromptTextBytes,
	}
}

func TestInspectRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want view
	}{
		{
			name: "chat request with tools, parts and nested model keys",
			body: chatRequest,
			want: view{Model: "gpt-4o-mini", HasModel: true, Stream: true, MaxTokens: 512, MaxCompl: -1, TextBytes: int64(chatRequestText)},
		},
		{
			name: "minimal",
			body: `{"model":"m","messages":[{"role":"user","content":"abcd"}]}`,
			want: view{Model: "m", HasModel: true, MaxTokens: -1, MaxCompl: -1, TextBytes: 4},
		},
		{
			name: "empty object",
			body: ` {} `,
			want: view{MaxTokens: -1, MaxCompl: -1},
		},
		{
			name: "escaped model value and escaped member name",
			body: `{"mod\u0065l":"gpt-\u00e9\"x\"","stream":false}`,
			want: view{Model: `gpt-é"x"`, HasModel: true, MaxTokens: -1, MaxCompl: -1},
		},
		{
			name: "duplicate model: the last wins, as in encoding/json",
			body: `{"model":"first","x":1,"model":"second"}`,
			want: view{Model: "second", HasModel: true, Dup: true, MaxTokens: -1, MaxCompl: -1},
		},
		{
			name: "model key case matters",
			body: `{"Model":"upper","MODEL":"x"}`,
			want: view{MaxTokens: -1, MaxCompl: -1},
		},
		{
			name: "nulls read as absent",
			body: `{"model":"m","stream":null,"max_tokens":null,"max_completion_tokens":null,"stream_options":null}`,
			want: view{Model: "m", HasModel: true, MaxTokens: -1, MaxCompl: -1, HasStreamOptions: true},
		},
		{
			name: "limits and include_usage",
			body: `{"model":"m","stream":true,"max_tokens":0,"max_completion_tokens":9223372036854775807,"stream_options":{"include_usage":true}}`,
			want: view{Model: "m", HasModel: true, Stream: true, MaxTokens: 0, MaxCompl: MaxCount, HasStreamOptions: true, IncludeUsage: true},
		},
		{
			name: "include_usage false",
			body: `{"stream":true,"stream_options":{"include_usage":false}}`,
			want: view{Stream: true, MaxTokens: -1, MaxCompl: -1, HasStreamOptions: true},
		},
		{
			name: "odd messages are skipped, not failed",
			body: `{"messages":[1,"x",{"content":7},{"content":[1,{"text":5},{"type":"text","text":"ab"}]},{"content":"c"}]}`,
			want: view{MaxTokens: -1, MaxCompl: -1, TextBytes: 3},
		},
		{
			name: "messages not an array",
			body: `{"messages":{"content":"abc"}}`,
			want: view{MaxTokens: -1, MaxCompl: -1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			r, err := InspectRequest(body)
			require.NoError(t, err)
			require.Equal(t, tc.want, viewOf(body, r))
			require.Equal(t, byte('{'), body[r.Open])
			require.Equal(t, byte('}'), body[r.Close])
			if r.HasModel {
				require.True(t, r.ModelIs(body, tc.want.Model))
				require.False(t, r.ModelIs(body, tc.want.Model+"x"))
			}
		})
	}
}

func TestInspectRequestAgreesWithEncodingJSON(t *testing.T) {
	var want struct {
		Model     string `json:"model"`
		Stream    bool   `json:"stream"`
		MaxTokens int64  `json:"max_tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(chatRequest), &want))
	r, err := InspectRequest([]byte(chatRequest))
	require.NoError(t, err)
	require.Equal(t, want.Model, r.ModelName([]byte(chatRequest)))
	require.Equal(t, want.Stream, r.Stream)
	require.Equal(t, want.MaxTokens, r.MaxTokens)
	require.Equal(t, want.MaxTokens, r.MaxOutputTokens())
}

func TestEstimatePromptTokens(t *testing.T) {
	for _, tc := range []struct {
		textBytes, want int64
	}{{0, 0}, {1, 1}, {4, 1}, {5, 2}, {8, 2}, {4000, 1000}} {
		r := Request{PromptTextBytes: tc.textBytes}
		require.Equal(t, tc.want, r.EstimatePromptTokens(), tc.textBytes)
	}
	r, err := InspectRequest([]byte(chatRequest))
	require.NoError(t, err)
	require.Equal(t, int64((chatRequestText+3)/4), r.EstimatePromptTokens())
}

func TestMaxOutputTokens(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int64
	}{
		{`{}`, -1},
		{`{"max_tokens":10}`, 10},
		{`{"max_completion_tokens":20}`, 20},
		{`{"max_tokens":10,"max_completion_tokens":20}`, 20},
		{`{"max_output_tokens":30}`, 30},
		{`{"max_output_tokens":null,"max_tokens":10}`, 10},
	} {
		r, err := InspectRequest([]byte(tc.body))
		require.NoError(t, err)
		require.Equal(t, tc.want, r.MaxOutputTokens(), tc.body)
	}
	_, err := InspectRequest([]byte(`{"max_output_tokens":"5"}`))
	require.ErrorIs(t, err, ErrFieldType)
}

// TestPromptOfEveryOperation: the prompt estimate reads each operation's
// prompt: chat messages, a Responses or embeddings input (string, strings or
// input items), instructions, and a legacy completion's prompt.
func TestPromptOfEveryOperation(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int64
	}{
		{`{"messages":[{"role":"user","content":"abcd"}]}`, 4},
		{`{"input":"abcdefgh"}`, 8},
		{`{"input":["ab","cd"],"model":"text-embedding-3-small"}`, 4},
		{`{"input":[1,2,3]}`, 0},
		{`{"instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hello"}]}]}`, 8 + 5},
		{`{"prompt":"once upon"}`, 9},
		{`{"input":{"x":"y"}}`, 0},
	} {
		r, err := InspectRequest([]byte(tc.body))
		require.NoError(t, err)
		require.Equal(t, tc.want, r.PromptTextBytes, tc.body)
	}
}

func TestInspectRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want error
		msg  string
	}{
		{"empty", ``, ErrInvalidJSON, "invalid json at offset 0: empty body"},
		{"spaces", "  \n", ErrInvalidJSON, ""},
		{"array", `[{"model":"m"}]`, ErrNotObject, "body is not a json object"},
		{"string", `"model"`, ErrNotObject, ""},
		{"number", `12`, ErrNotObject, ""},
		{"invalid non-object", `[1,`, ErrInvalidJSON, ""},
		{"truncated", `{"model":"m","messages":[{"role":"user"`, ErrInvalidJSON, ""},
		{"trailing comma", `{"model":"m",}`, ErrInvalidJSON, ""},
		{"trailing data", `{"model":"m"} {}`, ErrInvalidJSON, "unexpected data after the document"},
		{"trailing data after non-object", `1 2`, ErrInvalidJSON, ""},
		{"invalid utf-8", "{\"model\":\"m\xff\"}", ErrInvalidJSON, "invalid utf-8"},
		{"bad escape", `{"model":"\q"}`, ErrInvalidJSON, ""},
		{"model number", `{"model":5}`, ErrModelType, "model must be a string"},
		{"model null", `{"model":null}`, ErrModelType, ""},
		{"model object", `{"model":{"name":"m"}}`, ErrModelType, ""},
		{"syntax errors take precedence over types", `{"model":5,"x":[}`, ErrInvalidJSON, ""},
		{"earlier model of wrong type", `{"model":1,"model":"m"}`, ErrModelType, ""},
		{"stream string", `{"stream":"true"}`, ErrFieldType, "stream must be a boolean"},
		{"max_tokens float", `{"max_tokens":1.5}`, ErrFieldType, "max_tokens must be a non-negative integer"},
		{"max_tokens exponent", `{"max_tokens":1e3}`, ErrFieldType, ""},
		{"max_tokens negative", `{"max_tokens":-1}`, ErrFieldType, ""},
		{"max_completion_tokens string", `{"max_completion_tokens":"5"}`, ErrFieldType, "max_completion_tokens must be a non-negative integer"},
		{"stream_options array", `{"stream_options":[]}`, ErrFieldType, "stream_options must be an object"},
		{"include_usage string", `{"stream_options":{"include_usage":"yes"}}`, ErrFieldType, "stream_options.include_usage must be a boolean"},
		{"too deep", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, ErrInvalidJSON, "nested too deeply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := InspectRequest([]byte(tc.body))
			require.ErrorIs(t, err, tc.want)
			if tc.msg != "" {
				require.ErrorContains(t, err, tc.msg)
			}
			require.NotContains(t, err.Error(), "body:", "the caller names the body")
			if errors.Is(tc.want, ErrInvalidJSON) {
				var syn *jsonlite.SyntaxError
				require.ErrorAs(t, err, &syn)
			}
		})
	}
}

func TestInspectRequestDoesNotAllocate(t *testing.T) {
	body := request8K()
	require.InDelta(t, 8<<10, len(body), 1024)
	allocs := testing.AllocsPerRun(100, func() {
		r, err := InspectRequest(body)
		if err != nil || !r.HasModel || !r.ModelIs(body, "gpt-4o-mini") || r.EstimatePromptTokens() == 0 {
			panic("bad inspection")
		}
	})
	require.Zero(t, allocs)
}

func TestInspectRequestHugeBodies(t *testing.T) {
	// 10 MiB of message text, and 10 MiB of nesting-free junk.
	big := []byte(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", 10<<20) + `"}]}`)
	r, err := InspectRequest(big)
	require.NoError(t, err)
	require.Equal(t, int64(10<<20), r.PromptTextBytes)

	_, err = InspectRequest(big[:len(big)-3])
	require.ErrorIs(t, err, ErrInvalidJSON)

	junk := []byte(strings.Repeat("{", 10<<20))
	_, err = InspectRequest(junk)
	require.ErrorIs(t, err, ErrInvalidJSON)
}
