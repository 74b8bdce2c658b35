package routing

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCleanPath(t *testing.T) {
	cases := []struct {
		path string
		ok   bool
	}{
		{"/v1/chat/completions", true},
		{"/v1/chat/completions?x=../..&y=%2F", true},
		{"/v1/files/file-abc.jsonl", true},
		{"/v1/models/ft:gpt-4.1:org..x", true},
		{"/v1/.well-known", true},
		{"/v1/...", true},
		{"/v1/a%20b", true},
		{"/v1/%41", true},
		{"/", true},
		{"", true},
		{"/v1/../../admin", false},
		{"/v1/..", false},
		{"/v1/.", false},
		{"/v1/./chat/completions", false},
		{"/v1/..?x", false},
		{"/v1/..#f", false},
		{"/v1/%2e%2e/%2e%2e/admin", false},
		{"/v1/%2E%2E/admin", false},
		{"/v1/..%2f..%2fadmin", false},
		{"/v1/..%2F..%2Fadmin", false},
		{"/v1/chat%5ccompletions", false},
		{"/v1/chat%5Ccompletions", false},
		{`/v1/..\..\admin`, false},
		{`/v1/chat\completions`, false},
		{"/v1/%252e%252e/admin", false},
		{"/v1/a%2", true},
		{"/v1/a%", true},
	}
	for _, tc := range cases {
		require.Equal(t, tc.ok, CleanPath(tc.path), "%q", tc.path)
	}
}

// TestCleanPathMeansNoEscapeFromThePrefix is a property: every path
// CleanPath accepts, with any prefix put in front and resolved the way a
// normalising upstream would (percent-decoded, then RFC 3986 dot-segment
// removal), still lies under that prefix.
func TestCleanPathMeansNoEscapeFromThePrefix(t *testing.T) {
	alphabet := []string{"/", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", "a", "v1", "%", "2e", "?", "#", "%25"}
	var gen func(n int, prefix string)
	count := 0
	gen = func(n int, p string) {
		if n == 0 {
			count++
			if !CleanPath(p) {
				return
			}
			pathPart, _, _ := strings.Cut(p, "?")
			pathPart, _, _ = strings.Cut(pathPart, "#")
			decoded, err := url.PathUnescape(pathPart)
			if err != nil {
				return // an upstream refuses it too
			}
			decoded = strings.ReplaceAll(decoded, "\\", "/")
			full := path.Clean("/openai/v1/" + decoded)
			require.True(t, full == "/openai/v1" || strings.HasPrefix(full, "/openai/v1/"), "%q resolves to %q", p, full)
			return
		}
		for _, s := range alphabet {
			gen(n-1, p+s)
		}
	}
	gen(5, "")
	require.Greater(t, count, 100_000)
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/v1/chat/completions", "/v1/../x", "/v1/%2e%2e/x", "/v1/..%2fx", "/v1/a?b=../"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !CleanPath(p) {
			return
		}
		pathPart, _, _ := strings.Cut(p, "?")
		pathPart, _, _ = strings.Cut(pathPart, "#")
		decoded, err := url.PathUnescape(pathPart)
		if err != nil {
			return
		}
		require.NotContains(t, decoded, "\\")
		for _, seg := range strings.Split(decoded, "/") {
			require.False(t, dotSegment(seg), "%q decodes to a dot-segment", p)
		}
	})
}

func BenchmarkCleanPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !CleanPath("/v1/chat/completions?api-version=2024-10-21") {
			b.Fatal("refused")
		}
	}
}
