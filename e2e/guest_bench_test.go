package e2e_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// guestCases are the requests BenchmarkGuestTime and BenchmarkGuestProfile
// send: the two routes of the latency budgets.
func guestCases() []struct{ name, method, path, body string } {
	return []struct{ name, method, path, body string }{
		{"headers-only", http.MethodGet, "/v1/models", ""},
		{"body-8KiB", http.MethodPost, "/v1/chat/completions", body8k()},
	}
}

// BenchmarkGuestTime reports the time a request spends inside the plugin's VM
// (every callback, and the host calls made from them), as the host measures it
// around each guest export: the filter's cost without the HTTP round trip's
// noise, next to the do-nothing module's; and the filter's own time, without
// the host functions it calls (which a C++ host runs far faster than this
// one), to compare with e2e/v8host under V8.
func BenchmarkGuestTime(b *testing.B) {
	noop, err := wasmbuild.Build("./e2e/testdata/noop")
	if err != nil {
		b.Fatal(err)
	}
	up := scenario.Upstream(b, okUpstream{})
	for _, tc := range guestCases() {
		b.Run(tc.name, func(b *testing.B) {
			// perRequest returns the guest's time per request and the part of
			// it outside host functions (0 unless the host times them).
			perRequest := func(h *envoy.Host, n int) (guest, own float64) {
				before := h.VMStats()[0]
				for i := 0; i < n; i++ {
					r := benchRequest(tc.method, tc.path, tc.body)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
				after := h.VMStats()[0]
				g, hc := after.GuestTime-before.GuestTime, after.HostTime-before.HostTime
				return float64(g.Nanoseconds()) / 1e3 / float64(n), float64((g - hc).Nanoseconds()) / 1e3 / float64(n)
			}
			filter := benchHost(b, module(b), up)
			base := benchHost(b, noop, up)
			// The same filter with its host calls timed, for its own time
			// (the clock reads make its total a little higher).
			timed := newBenchHost(b, module(b), benchConfig, map[string]string{"p": up},
				func(c *envoy.Config) { c.TimeHostCalls = true })
			for _, h := range []*envoy.Host{filter, base, timed} {
				perRequest(h, 500) // warm up: metrics defined, heap grown
			}
			b.ResetTimer()
			f, _ := perRequest(filter, b.N)
			n, _ := perRequest(base, b.N)
			_, own := perRequest(timed, b.N)
			b.StopTimer()
			b.ReportMetric(f, "filter-guest-µs/req")
			b.ReportMetric(n, "noop-guest-µs/req")
			b.ReportMetric(own, "filter-own-µs/req")
		})
	}
}
