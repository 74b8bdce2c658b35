package e2e_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// BenchmarkQuotaAdmission: what a global limit costs a VM per request in
// quota mode, against the same route without global limits, with a local
// request limit instead, and with a per-request check (check mode). Three one-VM hosts against the in-test
// RLQS/RLS server, one request through each in turn per round (the order
// rotating). It reports each setup's median time inside the VM per request
// (the plugin's callbacks and their host calls, as the host times them),
// the requests per second one VM admits at that cost, the wall-clock p50
// (which in check mode includes the round trip to the sidecar), and the
// ratios to the route without global limits: the quota ratio is the point.
func BenchmarkQuotaAdmission(b *testing.B) {
	srv := startQuotaServer(b, map[string]uint32{"bench": 4_000_000_000}, time.Minute) // never the limit
	up := scenario.Upstream(b, okUpstream{})
	const cfg = `{
  "sidecar": {"cluster": "sidecar", "policyPollMs": 0, "reportIntervalMs": 0, "quotaReportMs": 100},
  "providers": [{"name": "p", "host": "p.example.com", "cluster": "p"}],
  "routes": [{"name": "bench", "match": {"pathPrefix": "/v1/"}, "provider": "p", "streamUsage": false GLOBAL}]
}`
	host := func(global string) *envoy.Host {
		return newBenchHost(b, module(b), strings.Replace(cfg, "GLOBAL", global, 1), map[string]string{"p": up, "sidecar": srv.addr})
	}
	setups := []struct {
		name string
		h    *envoy.Host
	}{
		{"none", host("")},
		{"local", host(`, "limits": {"requestsPerMinute": 1000000000}`)},
		{"quota", host(`, "globalLimits": {"mode": "quota", "failureMode": "closed"}`)},
		{"check", host(`, "globalLimits": {"mode": "check", "failureMode": "closed"}`)},
	}
	do := func(h *envoy.Host) (guest, wall time.Duration) {
		before := h.VMStats()[0].GuestTime
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, benchRequest(http.MethodGet, "/v1/models", ""))
		wall = time.Since(start)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
		return h.VMStats()[0].GuestTime - before, wall
	}
	for range 300 { // warm up; the quota bucket gets its assignment meanwhile
		for _, s := range setups {
			do(s.h)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, n := srv.usage("bench"); n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no quota assignment")
		}
		do(setups[2].h)
	}
	guest := make([][]time.Duration, len(setups))
	wall := make([][]time.Duration, len(setups))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range setups {
			k := (i + j) % len(setups)
			g, w := do(setups[k].h)
			guest[k], wall[k] = append(guest[k], g), append(wall[k], w)
		}
	}
	b.StopTimer()
	med := func(ds []time.Duration) float64 {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return float64(ds[len(ds)/2].Nanoseconds()) / 1e3
	}
	base := med(guest[0])
	baseWall := med(wall[0])
	for k, s := range setups {
		g, w := med(guest[k]), med(wall[k])
		b.ReportMetric(g, s.name+"-guest-µs/req")
		b.ReportMetric(1e6/g, s.name+"-admitted/s/vm")
		b.ReportMetric(w, s.name+"-wall-p50-µs")
		if k > 0 {
			b.ReportMetric(base/g, s.name+"-admitted/s-x-none")
			b.ReportMetric(w/baseWall, s.name+"-wall-x-none")
		}
	}
	if checks := srv.checks.Load(); checks < int64(b.N) {
		b.Fatalf("check mode made %d ShouldRateLimit calls for %d requests", checks, b.N)
	}
}

// BenchmarkQuotaGuestAllocs counts the guest's allocations per request
// (runtime.mallocgc, in a build of the filter that keeps its names) on a
// route without global limits and on quota-mode routes, one keyed by the
// route alone and one by route and consumer (eight tenants, so the bucket
// key is built per request), with the assignment in place. The quota
// stream's own work on the tick is included.
func BenchmarkQuotaGuestAllocs(b *testing.B) {
	mod := filterWithNames(b)
	srv := startQuotaServer(b, map[string]uint32{"quota": 4_000_000_000, "tenants": 4_000_000_000}, time.Minute)
	up := scenario.Upstream(b, okUpstream{})
	const cfg = `{
  "sidecar": {"cluster": "sidecar", "policyPollMs": 0, "reportIntervalMs": 0, "quotaReportMs": 100},
  "providers": [{"name": "p", "host": "p.example.com", "cluster": "p"}],
  "routes": [
    {"name": "none", "match": {"pathPrefix": "/none/"}, "provider": "p", "streamUsage": false},
    {"name": "quota", "match": {"pathPrefix": "/quota/"}, "provider": "p", "streamUsage": false,
     "globalLimits": {"mode": "quota"}},
    {"name": "tenants", "match": {"pathPrefix": "/tenants/"}, "provider": "p", "streamUsage": false,
     "globalLimits": {"mode": "quota", "descriptors": ["route", "consumer"], "consumerHeader": "x-tenant"}},
    {"name": "tenantscheck", "match": {"pathPrefix": "/tenantscheck/"}, "provider": "p", "streamUsage": false,
     "globalLimits": {"mode": "check", "descriptors": ["route", "consumer"], "consumerHeader": "x-tenant"}}
  ]}`
	for _, path := range []string{"/none/v1/models", "/quota/v1/models", "/tenants/v1/models", "/tenantscheck/v1/models"} {
		b.Run(strings.Split(path, "/")[1], func(b *testing.B) {
			counts := callCounters{"runtime.mallocgc": {fresh: true}}
			ctx := experimental.WithFunctionListenerFactory(context.Background(), counts)
			h, err := envoy.New(ctx, envoy.Config{
				Module: mod, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
				PluginConfig: []byte(cfg), Workers: 1,
				Clusters: map[string]string{"p": up, "sidecar": srv.addr}, DefaultCluster: "p",
				StatsTags: statsTags(), LogWriter: io.Discard,
			})
			require.NoError(b, err)
			defer h.Close(context.Background())
			send := func(n int) {
				for i := 0; i < n; i++ {
					r := benchRequest(http.MethodGet, path, "")
					r.Header.Set("x-tenant", "team-"+strconv.Itoa(i%8))
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			}
			send(1000)
			time.Sleep(300 * time.Millisecond) // two report periods: the assignments arrive
			send(1000)
			counts.reset()
			n := max(b.N, 5000)
			b.ResetTimer()
			send(n)
			b.StopTimer()
			b.ReportMetric(float64(counts["runtime.mallocgc"].n.Load())/float64(n), "guest-mallocs/req")
		})
	}
}
