package e2e_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/e2e/scenario"
	"github.com/shepherd-mesh/shepherd/e2e/wasmbuild"
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
// them), as BenchmarkGuestTime does per request.
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
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f += do(filter)
				n += do(base)
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
		})
	}
}
