package routing

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/config"
)

func mustConfig(t testing.TB, doc string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(doc), nil)
	require.NoError(t, err)
	return cfg
}

func TestDecidePaths(t *testing.T) {
	cases := []struct {
		routePrefix, providerPrefix, path, want string
	}{
		{"/v1/", "/openai/v1/", "/v1/chat/completions", "/openai/v1/chat/completions"},
		{"/v1", "/openai/v1", "/v1/chat/completions", "/openai/v1/chat/completions"},
		{"/v1/", "/openai/v1", "/v1/chat/completions", "/openai/v1/chat/completions"},
		{"/v1", "/openai/v1/", "/v1/chat/completions", "/openai/v1/chat/completions"},
		{"/v1", "/openai/v1", "/v1", "/openai/v1"},
		{"/v1", "/openai/v1", "/v1?x=1", "/openai/v1?x=1"},
		{"/v1/", "", "/v1/chat/completions", "/v1/chat/completions"},
		{"/", "/api/", "/models", "/api/models"},
	}
	for _, tc := range cases {
		t.Run(tc.routePrefix+"→"+tc.providerPrefix+" "+tc.path, func(t *testing.T) {
			doc := `{"providers":[{"name":"p","host":"api.example.com","pathPrefix":"` + tc.providerPrefix + `"}],` +
				`"routes":[{"name":"r","match":{"pathPrefix":"` + tc.routePrefix + `"},"provider":"p"}]}`
			if tc.providerPrefix == "" {
				doc = `{"providers":[{"name":"p","host":"api.example.com"}],` +
					`"routes":[{"name":"r","match":{"pathPrefix":"` + tc.routePrefix + `"},"provider":"p"}]}`
			}
			d, ok := Decide(mustConfig(t, doc), tc.path, noHeaders, 0)
			require.True(t, ok)
			require.Equal(t, tc.want, d.Path())
			require.Equal(t, tc.want != tc.path, d.PathChanged())
			require.Equal(t, "kept"+tc.want, string(d.AppendPathVia([]byte("kept"), d.Provider)))
			owned := d
			owned.Own()
			require.Equal(t, tc.want, owned.Path())
			require.Equal(t, "api.example.com", d.Authority())
			require.Equal(t, "r", d.Route.Name)
		})
	}
}

func noHeaders(string) (string, bool) { return "", false }

func TestPickFollowsWeights(t *testing.T) {
	cfg := mustConfig(t, `{"providers":[{"name":"a","host":"a"},{"name":"b","host":"b"},{"name":"c","host":"c"}],`+
		`"routes":[{"name":"r","match":{"pathPrefix":"/"},"providers":[{"name":"a","weight":70},{"name":"b","weight":0},{"name":"c","weight":30}]}]}`)
	counts := map[string]int{}
	for pick := uint64(0); pick < 1000; pick++ {
		d, ok := Decide(cfg, "/x", noHeaders, pick*7919)
		require.True(t, ok)
		counts[d.Provider.Name]++
	}
	require.Equal(t, map[string]int{"a": 700, "c": 300}, counts, "a weight of 0 gets nothing")
}

func TestNoRouteMeansPassThrough(t *testing.T) {
	cfg := mustConfig(t, `{"providers":[{"name":"p","host":"h"}],"routes":[{"name":"r","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`)
	_, ok := Decide(cfg, "/healthz", noHeaders, 0)
	require.False(t, ok)
}

func TestDecideAllocatesNothing(t *testing.T) {
	cfg := mustConfig(t, `{"providers":[{"name":"p","host":"h"}],"routes":[{"name":"a","match":{"pathPrefix":"/v2/"},"provider":"p"},{"name":"r","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`)
	allocs := testing.AllocsPerRun(1000, func() {
		d, ok := Decide(cfg, "/v1/chat/completions", noHeaders, 7)
		if !ok || d.Path() != "/v1/chat/completions" || d.PathChanged() {
			panic("unexpected decision")
		}
	})
	require.Zero(t, allocs)
}

func TestAppendPathViaReusesTheBuffer(t *testing.T) {
	cfg := mustConfig(t, `{"providers":[{"name":"p","host":"h","pathPrefix":"/openai/v1/"}],"routes":[{"name":"r","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`)
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(1000, func() {
		d, _ := Decide(cfg, "/v1/chat/completions", noHeaders, 7)
		buf = d.AppendPathVia(buf[:0], d.Provider)
		if string(buf) != "/openai/v1/chat/completions" {
			panic(string(buf))
		}
	})
	require.Zero(t, allocs)
}

func BenchmarkDecide(b *testing.B) {
	cfg := mustConfig(b, `{"providers":[{"name":"p","host":"h","pathPrefix":"/openai/v1/"}],"routes":[{"name":"a","match":{"pathPrefix":"/v2/"},"provider":"p"},{"name":"r","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		d, _ := Decide(cfg, "/v1/chat/completions", noHeaders, 7)
		_ = d.Path()
	}
}
