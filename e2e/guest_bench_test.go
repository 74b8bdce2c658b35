package e2e_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/e2e/scenario"
	"github.com/shepherd-mesh/shepherd/e2e/wasmbuild"
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
// around each guest export: the filter's own cost without the HTTP round trip's
// noise, next to the do-nothing module's.
func BenchmarkGuestTime(b *testing.B) {
	noop, err := wasmbuild.Build("./e2e/testdata/noop")
	if err != nil {
		b.Fatal(err)
	}
	up := scenario.Upstream(b, okUpstream{})
	for _, tc := range guestCases() {
		b.Run(tc.name, func(b *testing.B) {
			perRequest := func(h *envoy.Host, n int) float64 {
				before := h.VMStats()[0].GuestTime
				for i := 0; i < n; i++ {
					r := benchRequest(tc.method, tc.path, tc.body)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
				return float64((h.VMStats()[0].GuestTime - before).Nanoseconds()) / 1e3 / float64(n)
			}
			filter := benchHost(b, module(b), up)
			base := benchHost(b, noop, up)
			perRequest(filter, 500) // warm up: metrics defined, heap grown
			perRequest(base, 500)
			b.ResetTimer()
			f := perRequest(filter, b.N)
			n := perRequest(base, b.N)
			b.StopTimer()
			b.ReportMetric(f, "filter-guest-µs/req")
			b.ReportMetric(n, "noop-guest-µs/req")
		})
	}
}
