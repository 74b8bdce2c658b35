package e2e_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/e2e/scenario"
	"github.com/shepherd-mesh/shepherd/e2e/wasmbuild"
)

const benchConfig = `{
  "models": {"gpt-4.1": {"input": 2, "output": 8}, "fast-model": {}},
  "aliases": {"fast": "fast-model"},
  "providers": [{"name": "p", "host": "p.example.com", "pathPrefix": "/openai/v1", "cluster": "p", "credential": {"inline": "sk-bench"}}],
  "routes": [
    {"name": "headers", "match": {"pathPrefix": "/v1/models"}, "provider": "p", "streamUsage": false,
     "limits": {"requestsPerMinute": 1000000000}},
    {"name": "body", "match": {"pathPrefix": "/v1/"}, "provider": "p",
     "limits": {"requestsPerMinute": 1000000000, "tokensPerMinute": 1000000000}}
  ]
}`

// body8k is a chat request of about 8 KiB naming an alias, so the filter reads,
// rewrites and reserves tokens for it.
func body8k() string {
	var b strings.Builder
	b.WriteString(`{"model":"fast","max_tokens":100,"messages":[`)
	for i := 0; b.Len() < 8<<10; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"role":"user","content":"Tell me about the shepherds of the mesh and their flocks of tokens, number `)
		b.WriteString(strings.Repeat("x", 20))
		b.WriteString(`"}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

func benchHost(b *testing.B, mod []byte, upstream string) *envoy.Host {
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: mod, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(benchConfig), Workers: 1,
		Clusters: map[string]string{"p": upstream}, DefaultCluster: "p",
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(b, err)
	b.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// BenchmarkAddedLatency measures what the filter adds to a request in the
// Envoy-faithful host: each iteration sends the same request through a host
// running the filter and through one running a module that does nothing, against
// the same loopback upstream, and reports the difference of their medians.
func BenchmarkAddedLatency(b *testing.B) {
	noop, err := wasmbuild.Build("./e2e/testdata/noop")
	require.NoError(b, err)
	up := scenario.Upstream(b, okUpstream{})
	filter := benchHost(b, module(b), up)
	base := benchHost(b, noop, up)
	big := body8k()

	cases := []struct {
		name, method, path, body string
	}{
		{"headers-only", http.MethodGet, "/v1/models", ""},
		{"body-8KiB", http.MethodPost, "/v1/chat/completions", big},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			do := func(h *envoy.Host) time.Duration {
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				r := httptest.NewRequest(tc.method, tc.path, body)
				r.Host = "api.openai.com"
				r.Header.Set("content-type", "application/json")
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, r)
				d := time.Since(start)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return d
			}
			pairedMedians(b, "filter", "noop", func() time.Duration { return do(filter) }, func() time.Duration { return do(base) })
		})
	}
}

// pairedMedians warms up, then runs with and without alternately b.N times and
// reports both medians and their difference (added-p50-µs): two setups measured
// in the same run, so load on the machine falls on both alike.
func pairedMedians(b *testing.B, withName, withoutName string, with, without func() time.Duration) {
	for i := 0; i < 200; i++ { // warm both VMs and connection pools
		with()
		without()
	}
	w := make([]time.Duration, 0, b.N)
	n := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w = append(w, with())
		n = append(n, without())
	}
	b.StopTimer()
	p50w, p50n := median(w), median(n)
	b.ReportMetric(float64(p50w.Microseconds()), withName+"-p50-µs")
	b.ReportMetric(float64(p50n.Microseconds()), withoutName+"-p50-µs")
	b.ReportMetric(float64((p50w-p50n).Nanoseconds())/1e3, "added-p50-µs")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkVMStart measures a VM's start from the compiled module, as Envoy does
// per worker: instantiate, _initialize, proxy_on_vm_start and proxy_on_configure
// with the config. Reconfigure replaces the host's one VM with a new one each time.
// It also reports the module's size and a started VM's linear memory.
func BenchmarkVMStart(b *testing.B) {
	mod := module(b)
	h := benchHost(b, mod, scenario.Upstream(b, okUpstream{}))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := h.Reconfigure([]byte(benchConfig)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(mod)), "module-bytes")
	b.ReportMetric(float64(h.VMStats()[0].MemoryBytes)/(1<<20), "MiB-memory/vm")
}
