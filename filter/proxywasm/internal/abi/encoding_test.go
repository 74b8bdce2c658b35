package abi

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSerializePairsSpecExample(t *testing.T) {
	// The example map of the spec's Serialization section.
	got := SerializePairs([][2]string{{"a", "1"}, {"b", "22"}})
	want := []byte{
		2, 0, 0, 0,
		1, 0, 0, 0, 1, 0, 0, 0,
		1, 0, 0, 0, 2, 0, 0, 0,
		'a', 0, '1', 0, 'b', 0, '2', '2', 0,
	}
	require.Equal(t, want, got)
	require.Len(t, got, SerializedPairsSize([][2]string{{"a", "1"}, {"b", "22"}}))
}

func TestPairsRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs [][2]string
	}{
		{"empty", nil},
		{"one", [][2]string{{":path", "/v1/chat/completions"}}},
		{"empty value", [][2]string{{"x-empty", ""}}},
		{"empty key", [][2]string{{"", "v"}}},
		{"repeated key", [][2]string{{"set-cookie", "a=1"}, {"set-cookie", "b=2"}}},
		{"binary value", [][2]string{{"bin", "\xff\x00\x01\xfe"}, {"k\x00k", "\x00"}}},
		{"many", [][2]string{{":method", "POST"}, {":authority", "api.example"}, {"content-type", "application/json"}, {"x", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := SerializePairs(tt.pairs)
			got, err := DeserializePairs(b)
			require.NoError(t, err)
			owned, err := DeserializePairsOwned(append([]byte(nil), b...))
			require.NoError(t, err)
			if len(tt.pairs) == 0 {
				require.Empty(t, got)
				require.Empty(t, owned)
				return
			}
			require.Equal(t, tt.pairs, got)
			require.Equal(t, tt.pairs, owned)
			// The copying form does not alias its input.
			clear(b)
			require.Equal(t, tt.pairs, got)
		})
	}
}

func TestAppendPairsOwned(t *testing.T) {
	data := SerializePairs([][2]string{{"a", "1"}, {"b", "22"}})
	dst := make([][2]string, 1, 8)
	dst[0] = [2]string{"kept", "x"}
	got, err := AppendPairsOwned(dst, data)
	require.NoError(t, err)
	require.Equal(t, [][2]string{{"kept", "x"}, {"a", "1"}, {"b", "22"}}, got)
	require.Equal(t, &dst[:1][0], &got[0], "appended in place while capacity lasts")

	got, err = AppendPairsOwned(dst, data[:len(data)-1]) // value not NUL-terminated
	require.ErrorIs(t, err, ErrMalformedPairs)
	require.Equal(t, [][2]string{{"kept", "x"}}, got, "dst unchanged on error")

	got, err = AppendPairsOwned(dst, nil)
	require.NoError(t, err)
	require.Equal(t, dst, got)
}

func TestDeserializeEmptyForms(t *testing.T) {
	for _, b := range [][]byte{nil, {}, {0}, {0, 0, 0, 0}} {
		got, err := DeserializePairs(b)
		require.NoError(t, err)
		require.Empty(t, got)
	}
}

func TestDeserializeMalformed(t *testing.T) {
	valid := SerializePairs([][2]string{{"ab", "cd"}})
	tests := []struct {
		name string
		data []byte
	}{
		{"short header", []byte{1, 0}},
		{"one nonzero byte", []byte{1}},
		{"count without lengths", []byte{1, 0, 0, 0}},
		{"huge count", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"truncated data", valid[:len(valid)-1]},
		{"trailing bytes", append(append([]byte(nil), valid...), 'x')},
		{"trailing after empty", []byte{0, 0, 0, 0, 9}},
		{"key length past end", func() []byte {
			b := append([]byte(nil), valid...)
			b[4] = 200
			return b
		}()},
		{"value length past end", func() []byte {
			b := append([]byte(nil), valid...)
			b[8] = 200
			return b
		}()},
		{"key not terminated", func() []byte {
			b := append([]byte(nil), valid...)
			b[12+2] = 'x'
			return b
		}()},
		{"value not terminated", func() []byte {
			b := append([]byte(nil), valid...)
			b[len(b)-1] = 'x'
			return b
		}()},
		{"negative length on 32-bit view", []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DeserializePairs(tt.data)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrMalformedPairs), "error %v should wrap ErrMalformedPairs", err)
			require.Nil(t, got)
		})
	}
}

func FuzzDeserializePairs(f *testing.F) {
	f.Add(SerializePairs([][2]string{{"a", "1"}, {"b", "22"}}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		pairs, err := DeserializePairs(data)
		if err != nil || len(pairs) == 0 {
			return
		}
		require.Equal(t, data, SerializePairs(pairs))
	})
}

func TestPathRoundTrip(t *testing.T) {
	tests := []struct {
		path []string
		wire string
	}{
		{[]string{"request", "path"}, "request\x00path"},
		{[]string{"plugin_root_id"}, "plugin_root_id"},
		{[]string{"metadata", "filter_metadata", "envoy.lb", "canary"}, "metadata\x00filter_metadata\x00envoy.lb\x00canary"},
		{[]string{"a", "", "b"}, "a\x00\x00b"},
	}
	for _, tt := range tests {
		b := SerializePath(tt.path)
		require.Equal(t, tt.wire, string(b))
		require.Equal(t, tt.path, DeserializePath(b))
	}
	require.Nil(t, DeserializePath(nil))
	require.Equal(t, []string{"request", "path"}, DeserializePath([]byte("request\x00path\x00")))
}

func BenchmarkDeserializePairs(b *testing.B) {
	data := SerializePairs([][2]string{
		{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "api.example.com"},
		{"content-type", "application/json"}, {"authorization", "Bearer sk-xxxxxxxxxxxxxxxxxxxxxxxx"},
		{"user-agent", "openai-python/1.0"}, {"x-request-id", "6f1c1f1e-1111-2222-3333-444455556666"},
	})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DeserializePairs(data); err != nil {
			b.Fatal(err)
		}
	}
}
