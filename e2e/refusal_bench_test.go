package e2e_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// refusalConfig admits one request a minute on its one route: after the
// first, every request is refused by the local limit (429 with Retry-After,
// retry-after-ms, x-should-retry and the x-ratelimit-* headers).
const refusalConfig = `{
  "providers": [{"name": "p", "host": "p.example.com", "cluster": "p"}],
  "routes": [{"name": "limited", "match": {"pathPrefix": "/v1/"}, "provider": "p", "streamUsage": false,
              "limits": {"requestsPerMinute": 1, "requestBurst": 1}}]
}`

// BenchmarkGuestTimeRefusal reports the guest time of a request the local
// limit refuses: what shepherd spends per request on a route under a flood
// it turns away. SHEPHERD_FILTER_WASM measures another build of the filter.
//
// It reports the guest's time (every callback, with the host functions it
// calls) and the filter's own time (without them, from a second host that
// times its host calls).
func BenchmarkGuestTimeRefusal(b *testing.B) {
	up := map[string]string{"p": scenario.Upstream(b, okUpstream{})}
	h := newBenchHost(b, module(b), refusalConfig, up)
	timed := newBenchHost(b, module(b), refusalConfig, up, func(c *envoy.Config) { c.TimeHostCalls = true })
	send := func(h *envoy.Host, n int, want int) {
		for i := 0; i < n; i++ {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, benchRequest(http.MethodGet, "/v1/models", ""))
			if w.Code != want {
				b.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
			}
		}
	}
	for _, h := range []*envoy.Host{h, timed} {
		send(h, 1, http.StatusOK)
		send(h, 500, http.StatusTooManyRequests) // warm up: metrics defined, heap grown
	}
	b0, t0 := h.VMStats()[0], timed.VMStats()[0]
	b.ResetTimer()
	send(h, b.N, http.StatusTooManyRequests)
	send(timed, b.N, http.StatusTooManyRequests)
	b.StopTimer()
	b1, t1 := h.VMStats()[0], timed.VMStats()[0]
	perReq := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) }
	b.ReportMetric(perReq(b1.GuestTime-b0.GuestTime), "guest-µs/refusal")
	b.ReportMetric(perReq((t1.GuestTime-t0.GuestTime)-(t1.HostTime-t0.HostTime)), "own-µs/refusal")
}
