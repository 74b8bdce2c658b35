package body

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decode decodes a body with encoding/json.
func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m), string(body))
	return m
}

func inspect(t testing.TB, body string) ([]byte, Request) {
	t.Helper()
	b := []byte(body)
	r, err := InspectRequest(b)
	require.NoError(t, err)
	return b, r
}

func TestRewriteModel(t *testing.T) {
	for _, tc := range []struct {
		name, body, model, want string
	}{
		{"simple", `{"model":"a","x":1}`, "b", `{"model":"b","x":1}`},
		{"keeps spacing", "{ \"model\" :  \"a\" ,\n \"x\":1}", "gpt-4o", "{ \"model\" :  \"gpt-4o\" ,\n \"x\":1}"},
		{"escaped old value", `{"model":"a\"\u00e9","x":1}`, "b", `{"model":"b","x":1}`},
		{"new value is quoted", `{"model":"a"}`, "we\"ird\\né\n", `{"model":"we\"ird\\né\n"}`},
		{"invalid utf-8 becomes U+FFFD", `{"model":"a"}`, "x\xffy", `{"model":"x` + "\ufffd" + `y"}`},
		{"duplicate: the last is the model", `{"model":"a","model":"b"}`, "c", `{"model":"a","model":"c"}`},
		{"nested model keys untouched", `{"metadata":{"model":"n"},"model":"a"}`, "b", `{"metadata":{"model":"n"},"model":"b"}`},
		{"no model: unchanged", `{"x":1}`, "b", `{"x":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, r := inspect(t, tc.body)
			got := RewriteModel(body, r, tc.model)
			require.Equal(t, tc.want, string(got))
			require.Equal(t, tc.body, string(body), "the input is not modified")
		})
	}
}

func TestRewriteModelChangesOnlyTheModel(t *testing.T) {
	for _, body := range []string{chatRequest, string(request8K())} {
		b, r := inspect(t, body)
		got := RewriteModel(b, r, "relay/llama-3.1-70b \"instruct\" ✓")
		want := decode(t, b)
		want["model"] = "relay/llama-3.1-70b \"instruct\" ✓"
		require.Equal(t, want, decode(t, got))
		// Byte-identical outside the model token.
		require.Equal(t, string(b[:r.Model.Start]), string(got[:r.Model.Start]))
		require.Equal(t, string(b[r.Model.End:]), string(got[len(got)-(len(b)-r.Model.End):]))
	}
}

func TestSetModel(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty object", `{}`, `{"model":"m"}`},
		{"empty object with space", "{ \n }", "{\"model\":\"m\" \n }"},
		{"members", `{"x":1}`, `{"model":"m","x":1}`},
		{"existing model is replaced", `{"x":1,"model":"old"}`, `{"x":1,"model":"m"}`},
		{"leading space", ` {"x":1} `, ` {"model":"m","x":1} `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, r := inspect(t, tc.body)
			got := SetModel(body, r, "m")
			require.Equal(t, tc.want, string(got))
			r2, err := InspectRequest(got)
			require.NoError(t, err)
			require.True(t, r2.ModelIs(got, "m"))
			require.False(t, r2.DuplicateModel)
		})
	}
}

func TestEnsureIncludeUsage(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		changed          bool
	}{
		{"absent", `{"stream":true}`, `{"stream_options":{"include_usage":true},"stream":true}`, true},
		{"absent, spaced", "{ \"stream\" : true }", "{\"stream_options\":{\"include_usage\":true}, \"stream\" : true }", true},
		{"empty options", `{"stream":true,"stream_options":{}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true},
		{"empty options with space", `{"stream":true,"stream_options":{ }}`, `{"stream":true,"stream_options":{"include_usage":true }}`, true},
		{"other options", `{"stream":true,"stream_options":{"x":1}}`, `{"stream":true,"stream_options":{"include_usage":true,"x":1}}`, true},
		{"false", `{"stream":true,"stream_options":{"include_usage":false}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true},
		{"null include_usage", `{"stream":true,"stream_options":{"include_usage":null,"x":2}}`, `{"stream":true,"stream_options":{"include_usage":true,"x":2}}`, true},
		{"null options", `{"stream":true,"stream_options":null}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true},
		{"duplicate options: the last counts", `{"stream":true,"stream_options":{"include_usage":true},"stream_options":{}}`, `{"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":true}}`, true},
		{"already true", `{"stream":true,"stream_options":{"include_usage":true}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, false},
		{"not streaming", `{"stream":false}`, `{"stream":false}`, false},
		{"stream absent", `{}`, `{}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, r := inspect(t, tc.body)
			got, changed := EnsureIncludeUsage(body, r)
			require.Equal(t, tc.want, string(got))
			require.Equal(t, tc.changed, changed)
			r2, err := InspectRequest(got)
			require.NoError(t, err)
			require.Equal(t, r.Stream, r2.IncludeUsage)
		})
	}
}

func TestApplyBothEditsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not streaming: model only", `{}`, `{"model":"m"}`},
		{"insert both", `{"stream":true}`, `{"model":"m","stream_options":{"include_usage":true},"stream":true}`},
		{"replace model, fix options", `{"model":"a","stream":true,"stream_options":{"include_usage":false}}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{"options before model", `{"stream_options":{},"stream":true,"model":"a"}`, `{"stream_options":{"include_usage":true},"stream":true,"model":"m"}`},
		{"insert model, options exist", `{"stream_options":null,"stream":true}`, `{"model":"m","stream_options":{"include_usage":true},"stream":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, r := inspect(t, tc.body)
			got, changed := Apply(body, r, Edit{SetModel: true, Model: "m", IncludeUsage: true})
			require.True(t, changed)
			require.Equal(t, tc.want, string(got))
			decode(t, got)
		})
	}
	body, r := inspect(t, chatRequest)
	got, changed := Apply(body, r, Edit{SetModel: true, Model: "other", IncludeUsage: true})
	require.True(t, changed)
	want := decode(t, body)
	want["model"] = "other"
	want["stream_options"] = map[string]any{"include_usage": true}
	require.Equal(t, want, decode(t, got))

	same, changed := Apply(body, r, Edit{})
	require.False(t, changed)
	require.Equal(t, &body[0], &same[0], "no edit returns the body itself")
}

func TestRewriteAllocatesOnce(t *testing.T) {
	body := request8K()
	r, err := InspectRequest(body)
	require.NoError(t, err)
	for _, model := range []string{"m", "a-much-longer-model-name-for-the-relay", "with \"quotes\" and \n and \x01"} {
		allocs := testing.AllocsPerRun(50, func() {
			_, _ = Apply(body, r, Edit{SetModel: true, Model: model, IncludeUsage: true})
		})
		require.Equal(t, 1.0, allocs, model)
	}
}

func TestAppendAppliedReusesTheBuffer(t *testing.T) {
	body, r := inspect(t, chatRequest)
	want, changed := Apply(body, r, Edit{SetModel: true, Model: "m", IncludeUsage: true})
	require.True(t, changed)

	prefix := []byte("kept:")
	got, changed := AppendApplied(prefix, body, r, Edit{SetModel: true, Model: "m", IncludeUsage: true})
	require.True(t, changed)
	require.Equal(t, "kept:"+string(want), string(got))

	buf := make([]byte, 0, 16<<10)
	allocs := testing.AllocsPerRun(50, func() {
		out, _ := AppendApplied(buf[:0], body, r, Edit{SetModel: true, Model: "m", IncludeUsage: true})
		if len(out) != len(want) {
			panic("bad length")
		}
	})
	require.Zero(t, allocs)

	same, changed := AppendApplied(buf[:0], body, r, Edit{})
	require.False(t, changed)
	require.Empty(t, same)
}

// TestAppendAppliedPrefixBuildsOnlyTheStart: the edits of a long body are
// built up to the end of the last one; that prefix in place of the body's
// first cut bytes is the edited body.
func TestAppendAppliedPrefixBuildsOnlyTheStart(t *testing.T) {
	text := strings.Repeat("a long prompt ", 4096)
	for _, tc := range []struct {
		name    string
		body    string
		edit    Edit
		maxCut  int // the prefix ends within this many bytes
		changed bool
	}{
		{"model first", `{"model":"fast","messages":[{"role":"user","content":"` + text + `"}]}`,
			Edit{SetModel: true, Model: "fast-model"}, 16, true},
		{"model added", `{"messages":[{"role":"user","content":"` + text + `"}]}`,
			Edit{SetModel: true, Model: "m"}, 1, true},
		{"usage asked", `{"model":"m","stream":true,"messages":[{"role":"user","content":"` + text + `"}]}`,
			Edit{IncludeUsage: true}, 1, true},
		{"stream_options after the messages", `{"model":"m","stream":true,"messages":[{"role":"user","content":"` + text + `"}],"stream_options":{"include_usage":false}}`,
			Edit{IncludeUsage: true}, len(text) + 200, true},
		{"nothing to do: usage asked of a request that does not stream", `{"model":"m","messages":[]}`, Edit{IncludeUsage: true}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			r, err := InspectRequest(body)
			require.NoError(t, err)
			want, changed := Apply(body, r, tc.edit)
			prefix, cut, pchanged := AppendAppliedPrefix(nil, body, r, tc.edit)
			require.Equal(t, tc.changed, pchanged)
			require.Equal(t, changed, pchanged)
			if !changed {
				return
			}
			require.LessOrEqual(t, cut, tc.maxCut)
			require.Equal(t, string(want), string(prefix)+string(body[cut:]))
		})
	}
}
