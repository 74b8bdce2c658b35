package envoy

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReplacePrefixKeepsTheRest: a prefix replacement changes the body as
// Envoy's drain and prepend do, and leaves the rest where it lies (not copied)
// whenever the drained bytes and the room before them hold the data.
func TestReplacePrefixKeepsTheRest(t *testing.T) {
	rest := bytes.Repeat([]byte("r"), 4096)
	for _, tc := range []struct {
		name    string
		length  int
		data    string
		inPlace bool
	}{
		{"shorter", 12, `{"model":"a"`, true},
		{"same length", 12, `{"model":"b"`, true},
		{"longer, within the room", 12, `{"model":"gpt-4.1-mini","stream_options":{"include_usage":true}`, true},
		{"nothing drained", 0, `{"x":1,`, true},
		{"longer than the room", 12, string(bytes.Repeat([]byte("p"), bodyRoom+13)), false},
		{"the whole body", 12 + len(rest), "{}", false},
		{"past the end", 1 << 20, "{}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, body := appendBody(nil, nil, []byte(`{"model":"x"`))
			base, body = appendBody(base, body, rest)
			want := tc.data + string(body[min(tc.length, len(body)):])
			tail := &body[len(body)-1]
			nb, got := replacePrefix(base, body, tc.length, []byte(tc.data))
			require.Equal(t, want, string(got))
			require.Equal(t, tc.inPlace, &got[len(got)-1] == tail, "the rest stayed in place")
			require.GreaterOrEqual(t, roomBefore(nb, got), 0, "the body lies in its base")
			// The body stays a buffer that can grow at both ends.
			nb, got = appendBody(nb, got, []byte("]}"))
			nb, got = replacePrefix(nb, got, 1, []byte("{"))
			require.Equal(t, "{"+want[1:]+"]}", string(got))
			require.GreaterOrEqual(t, roomBefore(nb, got), 0)
		})
	}
}

// TestAppendBodyKeepsRoom: a buffered body keeps its room before it as it
// grows, and a body outside its base has none.
func TestAppendBodyKeepsRoom(t *testing.T) {
	base, body := appendBody(nil, nil, []byte("ab"))
	require.Equal(t, bodyRoom, roomBefore(base, body))
	for range 100 {
		base, body = appendBody(base, body, bytes.Repeat([]byte("c"), 1000))
		require.Equal(t, bodyRoom, roomBefore(base, body))
	}
	require.Equal(t, 2+100*1000, len(body))
	require.Equal(t, -1, roomBefore(base, []byte("elsewhere")))
	require.Equal(t, -1, roomBefore(nil, body))
	require.Equal(t, -1, roomBefore(base, body[:0]))
}
