package config

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// headerRoutesConfig has n routes matching on one or two of a few headers,
// interleaved with open routes, all under prefixes of a few kinds.
func randomRoutesConfig(rng *rand.Rand, n int) string {
	names := []string{"x-team", "x-env", "x-tier"}
	values := []string{"a", "b", "c"}
	prefixes := []string{"/", "/v1/", "/v1/chat/", "/v2/"}
	var b strings.Builder
	b.WriteString(`{"providers":[{"name":"p","host":"x"}],"routes":[`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"name":"r` + strconv.Itoa(i) + `","provider":"p","match":{"pathPrefix":"` + prefixes[rng.IntN(len(prefixes))] + `"`)
		if k := rng.IntN(3); k > 0 {
			b.WriteString(`,"headers":{`)
			perm := rng.Perm(len(names))[:k]
			for j, h := range perm {
				if j > 0 {
					b.WriteString(",")
				}
				b.WriteString(`"` + names[h] + `":"` + values[rng.IntN(len(values))] + `"`)
			}
			b.WriteString("}")
		}
		b.WriteString("}}")
	}
	b.WriteString("]}")
	return b.String()
}

// MatchHeaders finds the same route as the plain first-match scan (Match),
// for any routes and any request headers, duplicates and unrelated ones
// included.
func TestMatchHeadersAgreesWithMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 1))
	var sc MatchScratch
	paths := []string{"/", "/v1/chat/completions", "/v1/embeddings", "/v2/x", "/healthz"}
	for range 200 {
		cfg, err := Parse([]byte(randomRoutesConfig(rng, 1+rng.IntN(12))), nil)
		require.NoError(t, err)
		for range 50 {
			var hdrs [][2]string
			for range rng.IntN(5) {
				hdrs = append(hdrs, [2]string{[]string{"x-team", "x-env", "x-tier", "x-other"}[rng.IntN(4)], []string{"a", "b", "c"}[rng.IntN(3)]})
			}
			path := paths[rng.IntN(len(paths))]
			lookup := func(name string) (string, bool) {
				for _, kv := range hdrs {
					if kv[0] == name {
						return kv[1], true
					}
				}
				return "", false
			}
			require.Same(t, cfg.Match(path, lookup), cfg.MatchHeaders(path, hdrs, &sc), "path %s headers %v", path, hdrs)
		}
	}
}

func TestMatchHeadersAllocatesNothing(t *testing.T) {
	cfg, err := Parse([]byte(headerRoutes(1000)), nil)
	require.NoError(t, err)
	var sc MatchScratch
	hdrs := [][2]string{{":path", "/v1/chat/completions"}, {"x-team", "team-999"}, {"user-agent", "sdk"}}
	require.Same(t, cfg.Routes[999], cfg.MatchHeaders("/v1/chat/completions", hdrs, &sc))
	require.Zero(t, testing.AllocsPerRun(100, func() { cfg.MatchHeaders("/v1/chat/completions", hdrs, &sc) }))
}

// headerRoutes has n routes, each for one value of x-team.
func headerRoutes(n int) string {
	var b strings.Builder
	b.WriteString(`{"providers":[{"name":"p","host":"x"}],"routes":[`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"name":"r` + strconv.Itoa(i) + `","provider":"p","match":{"pathPrefix":"/v1/","headers":{"x-team":"team-` + strconv.Itoa(i) + `"}}}`)
	}
	b.WriteString("]}")
	return b.String()
}

// BenchmarkMatchHeaderRoutes matches the last of n header routes, with a
// dozen request headers as an SDK sends them.
func BenchmarkMatchHeaderRoutes(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run("routes="+strconv.Itoa(n), func(b *testing.B) {
			cfg, err := Parse([]byte(headerRoutes(n)), nil)
			require.NoError(b, err)
			hdrs := [][2]string{{":authority", "api.openai.com"}, {":path", "/v1/chat/completions"}, {":method", "POST"},
				{"content-type", "application/json"}, {"user-agent", "OpenAI/Go 3.1"}, {"x-stainless-lang", "go"},
				{"x-stainless-os", "Linux"}, {"x-stainless-arch", "x64"}, {"x-stainless-runtime", "go"},
				{"accept", "application/json"}, {"authorization", "Bearer sk"}, {"x-team", "team-" + strconv.Itoa(n-1)}}
			var sc MatchScratch
			want := cfg.Routes[n-1]
			b.ResetTimer()
			for range b.N {
				if cfg.MatchHeaders("/v1/chat/completions", hdrs, &sc) != want {
					b.Fatal("wrong route")
				}
			}
		})
	}
}
