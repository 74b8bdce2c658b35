package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
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
	return newBenchHost(b, mod, benchConfig, map[string]string{"p": upstream})
}

// newBenchHost starts a host of one worker with the module (nil: no plugin at
// all, the passthrough baseline) and the plugin configuration; unrouted
// requests go to cluster p.
func newBenchHost(b *testing.B, mod []byte, pluginConfig string, clusters map[string]string, opts ...func(*envoy.Config)) *envoy.Host {
	cfg := envoy.Config{
		Module: mod, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(pluginConfig), Workers: 1,
		Clusters: clusters, DefaultCluster: "p",
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	}
	if mod == nil {
		cfg.NoPlugin, cfg.PluginConfig = true, nil
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := envoy.New(context.Background(), cfg)
	require.NoError(b, err)
	b.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// fallbackConfig sends chat requests to provider p and, when p answers 429, to
// provider b's backup model at once: a first visit of a fallback entry waits no
// backoff (baseBackoffMs, at its minimum of 1 ms, applies only to revisits), p's
// answer carries no Retry-After, and the retry budget allows far more retries
// than the benchmark makes.
const fallbackConfig = `{
  "models": {"fast-model": {}, "backup-model": {}},
  "aliases": {"fast": "fast-model"},
  "providers": [
    {"name": "p", "host": "p.example.com", "pathPrefix": "/openai/v1", "cluster": "p", "credential": {"inline": "sk-bench"}},
    {"name": "b", "host": "b.example.com", "pathPrefix": "/openai/v1", "cluster": "b", "credential": {"inline": "sk-backup"}}],
  "routes": [
    {"name": "chat", "match": {"pathPrefix": "/v1/"}, "provider": "p",
     "limits": {"requestsPerMinute": 1000000000, "tokensPerMinute": 1000000000},
     "fallback": {"models": [{"model": "backup-model", "provider": "b"}], "maxAttempts": 2,
       "baseBackoffMs": 1, "maxBackoffMs": 1, "retryAfterCapMs": 0, "retryBudgetPercent": 1000}}]
}`

const smallChat = `{"model":"fast","max_tokens":100,"messages":[{"role":"user","content":"Tell me about the shepherds of the mesh."}]}`

// throttledUpstream answers every request with OpenAI's 429, without Retry-After.
type throttledUpstream struct{}

func (throttledUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write([]byte(`{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`))
}

// sseEvents is a streamed chat completion: 200 content chunks, the usage chunk
// that stream_options.include_usage asks for, and [DONE].
var sseEvents = func() [][]byte {
	var evs [][]byte
	for i := 0; i < 200; i++ {
		evs = append(evs, fmt.Appendf(nil, `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764230400,"model":"fast-model","choices":[{"index":0,"delta":{"content":"token %d "},"finish_reason":null}]}`+"\n\n", i))
	}
	evs = append(evs,
		[]byte(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764230400,"model":"fast-model","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":200,"total_tokens":214}}`+"\n\n"),
		[]byte("data: [DONE]\n\n"))
	return evs
}()

// sseUpstream streams sseEvents one HTTP chunk at a time, as a provider does
// while it generates, and sends the next event only once the client got the
// previous one (gate): every event then reaches the host, and the plugin, on
// its own, as events spaced by generation time do, whatever the setup's speed.
// A gate that does not open within a second is counted as a stall and passed.
// After the last event, or one carrying usage (which the filter may remove, so
// the client never gets it), it does not wait.
type sseUpstream struct {
	events [][]byte // nil: sseEvents
	gate   chan struct{}
	stalls atomic.Int64
}

func (u *sseUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("content-type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	events := u.events
	if events == nil {
		events = sseEvents
	}
	for i, ev := range events {
		select { // a late signal of the previous event
		case <-u.gate:
		default:
		}
		w.Write(ev)
		rc.Flush()
		if i == len(events)-1 || bytes.Contains(ev, []byte(`"usage":{`)) {
			continue
		}
		t.Reset(time.Second)
		select {
		case <-u.gate:
		case <-t.C:
			u.stalls.Add(1)
		}
	}
}

// gatedRecorder records a response and opens the gate on every body write.
type gatedRecorder struct {
	*httptest.ResponseRecorder
	gate chan struct{}
}

func (g gatedRecorder) Write(p []byte) (int, error) {
	n, err := g.ResponseRecorder.Write(p)
	select {
	case g.gate <- struct{}{}:
	default:
	}
	return n, err
}

// BenchmarkAddedLatency measures what the filter adds to a request in the
// Envoy-faithful host. Each iteration sends the same request through a host
// running the filter, one running a module that does nothing
// (e2e/testdata/noop) and one with no plugin at all (passthrough), against
// the same loopback upstream, in turn; it reports their medians, the filter's
// difference to the do-nothing module (added-p50-µs) and its ratio to the
// passthrough. ns/op and allocs/op are of one such round (three requests);
// each setup's own Go allocations per request (host, client and the in-process
// upstream; the guest allocates in its linear memory, not counted here) and
// the filter's guest callbacks per request are measured after the timed
// rounds.
//
// Cases: a headers-only route (request limit, authority and path rewrite); an
// 8 KiB JSON body naming an alias (model rewrite, token reservation); a
// streamed answer of 200 chunk events with usage scanning; and a 429 answered
// by the fallback (provider p throttles, the fallback goes to provider b at
// once: no backoff wait; the baselines get p's 429, so added-p50 includes the
// fallback's own upstream round trip).
func BenchmarkAddedLatency(b *testing.B) {
	noop, err := wasmbuild.Build("./e2e/testdata/noop")
	require.NoError(b, err)
	up := scenario.Upstream(b, okUpstream{})
	sse := &sseUpstream{gate: make(chan struct{}, 1)}
	sseUp := scenario.Upstream(b, sse)
	throttled := scenario.Upstream(b, throttledUpstream{})
	big := body8k()
	// The client asks for usage, so the stream (usage chunk included) reaches
	// it as sent and the check below can see the usage.
	streamed := `{"model":"fast","max_tokens":100,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell me about the shepherds of the mesh."}]}`

	cases := []struct {
		name, method, path, body string
		config                   string
		clusters                 map[string]string
		warm                     int
		gated                    bool
		check                    func(filter bool, w *httptest.ResponseRecorder) error
	}{
		{name: "headers-only", method: http.MethodGet, path: "/v1/models",
			config: benchConfig, clusters: map[string]string{"p": up}, warm: 200},
		{name: "body-8KiB", method: http.MethodPost, path: "/v1/chat/completions", body: big,
			config: benchConfig, clusters: map[string]string{"p": up}, warm: 200},
		{name: "sse-200-chunks", method: http.MethodPost, path: "/v1/chat/completions", body: streamed,
			config: benchConfig, clusters: map[string]string{"p": sseUp}, warm: 20, gated: true,
			check: func(_ bool, w *httptest.ResponseRecorder) error {
				if !bytes.HasSuffix(w.Body.Bytes(), sseEvents[len(sseEvents)-1]) || !bytes.Contains(w.Body.Bytes(), []byte(`"total_tokens":214`)) {
					return fmt.Errorf("incomplete stream: %.200q", w.Body.Bytes())
				}
				return nil
			}},
		{name: "fallback-429", method: http.MethodPost, path: "/v1/chat/completions", body: smallChat,
			config: fallbackConfig, clusters: map[string]string{"p": throttled, "b": up}, warm: 200,
			check: func(filter bool, w *httptest.ResponseRecorder) error {
				switch {
				case !filter && w.Code == http.StatusTooManyRequests:
					return nil
				case filter && w.Code == http.StatusOK && w.Header().Get("x-shepherd-attempts") == "2":
					return nil
				}
				return fmt.Errorf("status %d, attempts %q: %s", w.Code, w.Header().Get("x-shepherd-attempts"), w.Body)
			}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			filter := newBenchHost(b, module(b), tc.config, tc.clusters)
			base := newBenchHost(b, noop, tc.config, tc.clusters)
			bare := newBenchHost(b, nil, tc.config, tc.clusters)
			do := func(h *envoy.Host) time.Duration {
				r := benchRequest(tc.method, tc.path, tc.body)
				rec := httptest.NewRecorder()
				var w http.ResponseWriter = rec
				if tc.gated {
					w = gatedRecorder{rec, sse.gate}
				}
				start := time.Now()
				h.ServeHTTP(w, r)
				d := time.Since(start)
				if tc.check != nil {
					if err := tc.check(h == filter, rec); err != nil {
						b.Fatal(err)
					}
				} else if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				return d
			}
			b.ReportAllocs()
			setups := []benchSetup{
				{"filter", func() time.Duration { return do(filter) }},
				{"noop", func() time.Duration { return do(base) }},
				{"passthrough", func() time.Duration { return do(bare) }},
			}
			p50 := interleavedMedians(b, tc.warm, setups...)
			b.ReportMetric(float64(p50[0].Microseconds()), "filter-p50-µs")
			b.ReportMetric(float64(p50[1].Microseconds()), "noop-p50-µs")
			b.ReportMetric(float64(p50[2].Microseconds()), "passthrough-p50-µs")
			b.ReportMetric(float64((p50[0]-p50[1]).Nanoseconds())/1e3, "added-p50-µs")
			b.ReportMetric(float64(p50[0])/float64(p50[2]), "filter/passthrough")

			n := min(max(b.N, 20), 200)
			callbacks := filter.VMStats()[0].Callbacks
			for _, s := range setups {
				b.ReportMetric(allocsPerRequest(n, s.do), s.name+"-allocs/req")
			}
			b.ReportMetric(float64(filter.VMStats()[0].Callbacks-callbacks)/float64(n), "filter-callbacks/req")
			if tc.gated {
				b.ReportMetric(float64(sse.stalls.Load()), "stalls")
			}
		})
	}
}

// allocsPerRequest is the process's Go heap allocations per call of do, over n calls.
func allocsPerRequest(n int, do func() time.Duration) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		do()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(n)
}

// benchSetup is one way of serving a request in a benchmark: its name, and one
// request through it, timed.
type benchSetup struct {
	name string
	do   func() time.Duration
}

// interleavedMedians warms every setup up with warm requests, then sends one
// request through each setup in turn, b.N rounds, the order rotating each round
// so that no setup always follows the same other, and returns each setup's
// median: setups measured in the same run share the machine's load alike.
func interleavedMedians(b *testing.B, warm int, setups ...benchSetup) []time.Duration {
	for i := 0; i < warm; i++ { // warm the VMs and connection pools
		for _, s := range setups {
			s.do()
		}
	}
	ds := make([][]time.Duration, len(setups))
	for i := range ds {
		ds[i] = make([]time.Duration, 0, b.N)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range setups {
			k := (i + j) % len(setups)
			ds[k] = append(ds[k], setups[k].do())
		}
	}
	b.StopTimer()
	p50 := make([]time.Duration, len(setups))
	for i := range ds {
		p50[i] = median(ds[i])
	}
	return p50
}

// benchRequest is the request the benchmarks send: method and path with an
// optional JSON body, for api.openai.com as an application in the mesh sends it.
func benchRequest(method, path, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	r.Host = "api.openai.com"
	r.Header.Set("content-type", "application/json")
	return r
}

// pairedMedians warms up, then runs with and without alternately b.N times and
// reports both medians and their difference (added-p50-µs): two setups measured
// in the same run, so load on the machine falls on both alike.
func pairedMedians(b *testing.B, withName, withoutName string, with, without func() time.Duration) {
	p50 := interleavedMedians(b, 200, benchSetup{withName, with}, benchSetup{withoutName, without})
	p50w, p50n := p50[0], p50[1]
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
// It reports the median of each step as the host timed it (Host.StartTimings),
// the module's size and a started VM's linear memory.
func BenchmarkVMStart(b *testing.B) {
	mod := module(b)
	h := benchHost(b, mod, scenario.Upstream(b, okUpstream{}))
	steps := make([][]time.Duration, 5)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := h.Reconfigure([]byte(benchConfig)); err != nil {
			b.Fatal(err)
		}
		t := h.StartTimings()[0]
		for j, d := range []time.Duration{t.Instantiate, t.Initialize, t.Start, t.Configure, t.Total()} {
			steps[j] = append(steps[j], d)
		}
	}
	b.StopTimer()
	for j, name := range []string{"instantiate", "initialize", "vm-start", "configure", "start-total"} {
		b.ReportMetric(float64(median(steps[j]).Nanoseconds())/1e3, name+"-µs")
	}
	b.ReportMetric(float64(len(mod)), "module-bytes")
	b.ReportMetric(float64(h.VMStats()[0].MemoryBytes)/(1<<20), "MiB-memory/vm")
}
