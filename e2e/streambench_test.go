package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// openAIEvents is sseEvents as api.openai.com sends it when include_usage is
// asked: every chunk also carries "usage":null, which the filter cuts when it
// asked on the client's behalf.
var openAIEvents = func() [][]byte {
	evs := make([][]byte, len(sseEvents))
	for i, ev := range sseEvents {
		evs[i] = bytes.Replace(ev, []byte(`"finish_reason":null}]}`), []byte(`"finish_reason":null}],"usage":null}`), 1)
	}
	return evs
}()

// BenchmarkStreamGuestTime reports the filter's own work per SSE event: the
// guest time of a streamed chat completion of 202 events (200 content chunks,
// the usage chunk, [DONE]), each its own body callback, through the filter
// and through the do-nothing module (e2e/testdata/noop) on the same stream,
// in alternating requests, divided by the events. Cases: the client asked for
// usage (the stream passes as sent); the client did not (the filter asked,
// and removes the usage chunk); and the same against a stream in OpenAI's
// shape, whose every chunk carries "usage":null (cut from each). It also
// reports the filter's own work per event, its guest time without the host
// functions it calls (filter-own-µs/event, from a third host that times
// them), as BenchmarkGuestTime does per request. added-p50-µs/event and
// filter/noop-p50 are the same comparison between the median streams of
// the two modules, which the machine's load moves less than the means.
func BenchmarkStreamGuestTime(b *testing.B) {
	noop, err := wasmbuild.Build("./e2e/testdata/noop")
	if err != nil {
		b.Fatal(err)
	}
	asked := `{"model":"fast","max_tokens":100,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell me about the shepherds of the mesh."}]}`
	notAsked := `{"model":"fast","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Tell me about the shepherds of the mesh."}]}`
	for _, tc := range []struct {
		name   string
		events [][]byte
		body   string
		strips bool
	}{
		{"usage-asked", sseEvents, asked, false},
		{"usage-stripped", sseEvents, notAsked, true},
		{"openai-usage-null-stripped", openAIEvents, notAsked, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := &sseUpstream{events: tc.events, gate: make(chan struct{}, 1)}
			addr := scenario.Upstream(b, up)
			filter := newBenchHost(b, module(b), benchConfig, map[string]string{"p": addr})
			base := newBenchHost(b, noop, benchConfig, map[string]string{"p": addr})
			// The filter again with its host calls timed, for its own work
			// without the host functions (which Envoy's C++ runs faster).
			timed := newBenchHost(b, module(b), benchConfig, map[string]string{"p": addr},
				func(c *envoy.Config) { c.TimeHostCalls = true })
			do := func(h *envoy.Host) time.Duration {
				before := h.VMStats()[0].GuestTime - h.VMStats()[0].HostTime
				rec := httptest.NewRecorder()
				h.ServeHTTP(gatedRecorder{rec, up.gate}, benchRequest(http.MethodPost, "/v1/chat/completions", tc.body))
				if rec.Code != http.StatusOK || !strings.HasSuffix(rec.Body.String(), "data: [DONE]\n\n") {
					b.Fatalf("status %d: %.200q", rec.Code, rec.Body.Bytes())
				}
				if h != base && tc.strips == strings.Contains(rec.Body.String(), `"usage"`) {
					b.Fatalf("usage stripped: %v, want %v", !tc.strips, tc.strips)
				}
				// Guest time; with timed host calls, without them.
				return h.VMStats()[0].GuestTime - h.VMStats()[0].HostTime - before
			}
			for i := 0; i < 20; i++ { // warm up: metrics defined, buffers grown
				do(filter)
				do(base)
				do(timed)
			}
			var f, n, own time.Duration
			fs, ns := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				fs = append(fs, do(filter))
				ns = append(ns, do(base))
				f, n = f+fs[i], n+ns[i]
				own += do(timed)
			}
			b.StopTimer()
			events := float64(len(tc.events))
			perEvent := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) / events }
			b.ReportMetric(perEvent(f), "filter-guest-µs/event")
			b.ReportMetric(perEvent(n), "noop-guest-µs/event")
			b.ReportMetric(perEvent(f-n), "added-guest-µs/event")
			b.ReportMetric(perEvent(own), "filter-own-µs/event")
			b.ReportMetric(float64(f)/float64(n), "filter/noop")
			// The same from the median stream of each module: a stream that
			// the machine's load or a collection stretched moves the means
			// above, not these.
			p50 := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / events }
			b.ReportMetric(p50(median(fs)-median(ns)), "added-p50-µs/event")
			b.ReportMetric(float64(median(fs))/float64(median(ns)), "filter/noop-p50")
		})
	}
}

// BenchmarkStreamEventCallback times each response body callback
// (proxy_on_response_body, one per event) of the stream of
// BenchmarkStreamGuestTime, through the filter, the do-nothing module and
// a module that only reads each chunk (e2e/testdata/chunkread), with a
// function listener on that export alone, and reports the median callback
// of each and the filter's difference to the do-nothing module
// (added-p50-µs/callback): the filter's work per event without the
// request's share, and steady under load, as the machine's load stretches
// few callbacks of a stream. read-added-p50-µs/callback is the reading
// module's difference, the floor of a filter that looks at the events. All
// medians include the listener's cost, so only differences and ratios are
// figures.
func BenchmarkStreamEventCallback(b *testing.B) {
	noop, err := wasmbuild.Build("./e2e/testdata/noop")
	if err != nil {
		b.Fatal(err)
	}
	chunkread, err := wasmbuild.Build("./e2e/testdata/chunkread")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		events [][]byte
		body   string
	}{
		{"usage-asked", sseEvents, `{"model":"fast","max_tokens":100,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}`},
		{"usage-stripped", sseEvents, `{"model":"fast","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`},
		{"openai-usage-null-stripped", openAIEvents, `{"model":"fast","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := &sseUpstream{events: tc.events, gate: make(chan struct{}, 1)}
			addr := scenario.Upstream(b, up)
			timer := func(mod []byte) (*envoy.Host, *callbackTimer) {
				t := &callbackTimer{export: "proxy_on_response_body"}
				h, err := envoy.New(experimental.WithFunctionListenerFactory(context.Background(), t), envoy.Config{
					Module: mod, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
					PluginConfig: []byte(benchConfig), Workers: 1,
					Clusters: map[string]string{"p": addr}, DefaultCluster: "p",
					StatsTags: statsTags(), LogWriter: io.Discard,
				})
				require.NoError(b, err)
				b.Cleanup(func() { h.Close(context.Background()) })
				return h, t
			}
			filter, ft := timer(module(b))
			base, nt := timer(noop)
			read, rt := timer(chunkread)
			do := func(h *envoy.Host) {
				rec := httptest.NewRecorder()
				h.ServeHTTP(gatedRecorder{rec, up.gate}, benchRequest(http.MethodPost, "/v1/chat/completions", tc.body))
				if rec.Code != http.StatusOK || !strings.HasSuffix(rec.Body.String(), "data: [DONE]\n\n") {
					b.Fatalf("status %d: %.200q", rec.Code, rec.Body.Bytes())
				}
			}
			for i := 0; i < 20; i++ { // warm up: metrics defined, buffers grown
				do(filter)
				do(base)
				do(read)
			}
			ft.took, nt.took, rt.took = ft.took[:0], nt.took[:0], rt.took[:0]
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				do(filter)
				do(base)
				do(read)
			}
			b.StopTimer()
			f, n, r := median(ft.took), median(nt.took), median(rt.took)
			us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
			b.ReportMetric(us(f), "filter-p50-µs/callback")
			b.ReportMetric(us(n), "noop-p50-µs/callback")
			b.ReportMetric(us(r), "read-p50-µs/callback")
			b.ReportMetric(us(f-n), "added-p50-µs/callback")
			b.ReportMetric(us(r-n), "read-added-p50-µs/callback")
			b.ReportMetric(float64(f)/float64(n), "filter/noop")
			b.ReportMetric(float64(r)/float64(n), "read/noop")
		})
	}
}

// callbackTimer is a wazero FunctionListenerFactory that records how long
// each call of one export takes. A VM runs one call at a time.
type callbackTimer struct {
	export string
	began  time.Time
	took   []time.Duration
}

func (t *callbackTimer) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	for _, n := range def.ExportNames() {
		if n == t.export {
			return t
		}
	}
	return nil
}

func (t *callbackTimer) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
	t.began = time.Now()
}

func (t *callbackTimer) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {
	t.took = append(t.took, time.Since(t.began))
}

func (t *callbackTimer) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}
