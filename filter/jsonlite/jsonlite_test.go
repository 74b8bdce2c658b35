package jsonlite

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestParseValues(t *testing.T) {
	v, err := Parse([]byte(` {"a": [1, -2.5e3, true, false, null], "b": {"c": "x\"y\u00e9\ud83d\ude00\n"}, "": 0} `))
	require.NoError(t, err)
	require.Equal(t, Object, v.Kind)
	require.Len(t, v.Members, 3)

	a := v.Get("a")
	require.Equal(t, Array, a.Kind)
	require.Len(t, a.Items, 5)
	n, ok := a.Items[0].Int()
	require.True(t, ok)
	require.EqualValues(t, 1, n)
	f, ok := a.Items[1].Float()
	require.True(t, ok)
	require.Equal(t, -2500.0, f)
	_, ok = a.Items[1].Int()
	require.False(t, ok, "-2.5e3 is not an integer literal")
	require.Equal(t, Bool, a.Items[2].Kind)
	require.True(t, a.Items[2].Bool)
	require.False(t, a.Items[3].Bool)
	require.Equal(t, Null, a.Items[4].Kind)

	require.Equal(t, "x\"yé😀\n", v.Get("b").Get("c").Str)
	require.NotNil(t, v.Get(""))
	require.Nil(t, v.Get("missing"))
	require.Nil(t, a.Get("a"), "Get on an array")
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{``, "invalid json at offset 0: unexpected end of input"},
		{`{"a":1,}`, "invalid json at offset 7: expected a member name"},
		{`{"a" 1}`, "invalid json at offset 5: expected ':' after member name"},
		{`[1 2]`, "invalid json at offset 3: expected ',' or ']' in array"},
		{`{"a":1`, "invalid json at offset 6: unexpected end of input in object"},
		{`"abc`, "invalid json at offset 0: unterminated string"},
		{`"a\qb"`, "invalid json at offset 2: unknown escape"},
		{`"\u12"`, "invalid json at offset 1: malformed \\u escape"},
		{"\"a\x01\"", "invalid json at offset 2: control character in string"},
		{"\"a\xff\"", "invalid json at offset 2: invalid utf-8 in string"},
		{`01`, "invalid json at offset 1: unexpected data after the document"},
		{`-`, "invalid json at offset 0: malformed number"},
		{`1.`, "invalid json at offset 0: malformed number"},
		{`1e`, "invalid json at offset 0: malformed number"},
		{`tru`, "invalid json at offset 0: unknown literal"},
		{`{} x`, "invalid json at offset 3: unexpected data after the document"},
		{`@`, "invalid json at offset 0: unexpected character '@'"},
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), "invalid json at offset 64: nested too deeply"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			require.EqualError(t, err, tc.want)
		})
	}
}

func TestParseDepthLimitIsInclusive(t *testing.T) {
	doc := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	_, err := Parse([]byte(doc))
	require.NoError(t, err)
}

// FuzzParse checks that Parse never panics and agrees with encoding/json on what is
// valid JSON (encoding/json also accepts invalid UTF-8, which Parse refuses).
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2,{"b":null}]}`, `"\ud83d\ude00"`, `-0.1e-2`, `{"a":"\u0000"}`, `[1,]`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Parse(data)
		valid := json.Valid(data) && utf8.Valid(data)
		if valid != (err == nil) {
			t.Fatalf("Parse error %v but valid=%v for %q", err, valid, data)
		}
		if err == nil && v == nil {
			t.Fatal("nil value without error")
		}
	})
}

func TestAppendStringRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s", "nl\n\r\t", "\x00\x1f\x7f", "é😀", "bad\xffutf8"} {
		out := AppendString(nil, s)
		v, err := Parse(out)
		require.NoError(t, err, "%q -> %s", s, out)
		want := strings.ToValidUTF8(s, "\ufffd")
		require.Equal(t, want, v.Str)
		var std string
		require.NoError(t, json.Unmarshal(out, &std))
		require.Equal(t, want, std)
	}
}
