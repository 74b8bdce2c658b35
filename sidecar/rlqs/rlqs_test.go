package rlqs_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
)

const limitsYAML = `
domain: llm
descriptors:
  - key: model
    value: gpt
    rate_limit: {unit: second, requests_per_unit: 100}
  - key: model
    value: slow
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: model
    value: free
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: model
    value: open
    rate_limit: {unlimited: true}
  - key: model
    value: shadow
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: tenant
    descriptors:
      - key: model
        rate_limit: {unit: second, requests_per_unit: 60}
`

type harness struct {
	t        *testing.T
	svc      *rlqs.Service
	cc       *grpc.ClientConn
	clock    *fakeClock
	reg      *prometheus.Registry
	received atomic.Uint64 // messages received by all the clients
	// tick, when set, runs at every whole virtual second of drive, before
	// the clients' reports (replicas publish their demand there).
	tick func()
}

// settle waits (up to 5s) until no action waits to be sent and the clients
// have received every message sent: the virtual clock then moves on with
// nothing in flight, so the runs are deterministic.
func (h *harness) settle() {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		idle, taken := h.svc.Settled()
		return idle && taken == h.received.Load()
	}, 5*time.Second, 50*time.Microsecond)
}

func newHarness(t *testing.T, opts rlqs.Options) *harness {
	t.Helper()
	return newHarnessOn(t, opts, newFakeClock())
}

// newHarnessOn is newHarness on a clock other harnesses may share (several
// replicas).
func newHarnessOn(t *testing.T, opts rlqs.Options, clock *fakeClock) *harness {
	t.Helper()
	h := &harness{t: t, clock: clock, reg: prometheus.NewRegistry()}
	opts.Clock, opts.Registerer = h.clock.Now, h.reg
	h.svc = rlqs.New(opts)
	if opts.Share != nil {
		ctx, cancel := context.WithCancel(context.Background())
		go h.svc.SyncPending(ctx)
		t.Cleanup(cancel)
	}
	cfg, err := ratelimit.ParseConfig("limits.yaml", []byte(limitsYAML))
	require.NoError(t, err)
	h.svc.SetConfig(cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	h.svc.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	h.cc, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.cc.Close() })
	return h
}

// load is one client's traffic: perSecond requests into id, a report every
// second at offset into the second.
type load struct {
	c         *envoyClient
	id        map[string]string
	perSecond float64
	offset    time.Duration

	acc      float64
	admitted int
	tried    int
}

const step = 10 * time.Millisecond

// drive runs the loads for d of virtual time and returns what each admitted.
func (h *harness) drive(d time.Duration, loads ...*load) []int {
	for _, l := range loads {
		l.admitted, l.tried = 0, 0
	}
	for n := 0; n < int(d/step); n++ {
		h.clock.Advance(step)
		inSecond := time.Duration(h.clock.Now().UnixNano() % int64(time.Second))
		if inSecond == 0 && h.tick != nil {
			h.tick()
		}
		for _, l := range loads {
			l.acc += l.perSecond * step.Seconds()
			for ; l.acc >= 1; l.acc-- {
				l.tried++
				if l.c.request(l.id) {
					l.admitted++
				}
			}
			if inSecond == l.offset {
				l.c.reportAll()
			}
		}
	}
	out := make([]int, len(loads))
	for i, l := range loads {
		out[i] = l.admitted
	}
	return out
}

var gpt = map[string]string{"model": "gpt"}

func TestTwoClientsUnevenLoadStayWithinTheLimit(t *testing.T) {
	h := newHarness(t, rlqs.Options{})
	a := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
	b := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 50, offset: 500 * time.Millisecond}
	h.drive(10*time.Second, a, b)

	got := h.drive(60*time.Second, a, b)
	total := got[0] + got[1]
	limit := 100 * 60
	t.Logf("admitted %v", got)
	require.InDelta(t, limit, total, 0.02*float64(limit), "admitted %v over 60s against a limit of 100/s", got)
	// Divided by demand: a asks for three times what b asks for.
	require.InDelta(t, 0.75, float64(got[0])/float64(total), 0.05, "a's part of %v", got)
	require.InDelta(t, 75, a.c.rate(gpt), 5)
	require.InDelta(t, 25, b.c.rate(gpt), 5)
}

func TestIdleClientsShareMovesToTheBusyOne(t *testing.T) {
	h := newHarness(t, rlqs.Options{})
	a := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
	b := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 150, offset: 300 * time.Millisecond}
	h.drive(5*time.Second, a, b)
	require.InDelta(t, 50, a.c.rate(gpt), 3)
	require.InDelta(t, 50, b.c.rate(gpt), 3)

	// b goes idle but keeps reporting its bucket, as Envoy does.
	b.perSecond = 0
	h.drive(3*time.Second, a, b)
	require.GreaterOrEqual(t, a.c.rate(gpt), 95.0, "within 3 intervals the idle share has moved")
	got := h.drive(10*time.Second, a, b)
	require.InDelta(t, 1000, got[0], 0.03*1000, "a admits nearly the whole limit: %v", got)
	require.Zero(t, got[1])

	// And back: b's demand shows in its next report.
	b.perSecond = 150
	h.drive(3*time.Second, a, b)
	require.InDelta(t, 50, b.c.rate(gpt), 3)
}

func TestDisconnectedClientGivesItsShareBackAfterExpiry(t *testing.T) {
	h := newHarness(t, rlqs.Options{})
	a := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
	b := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 150, offset: 500 * time.Millisecond}
	h.drive(5*time.Second, a, b)
	require.InDelta(t, 50, a.c.rate(gpt), 3)
	require.Equal(t, 2.0, metric(t, h.reg, "shepherd_sidecar_rlqs_streams"))

	b.c.close()
	require.Eventually(t, func() bool { return metric(t, h.reg, "shepherd_sidecar_rlqs_streams") == 1 }, 5*time.Second, time.Millisecond)
	// b's assignment (TTL 3 reporting intervals) is still b's to use: a's
	// share stays while it lasts.
	h.drive(2*time.Second, a)
	require.InDelta(t, 50, a.c.rate(gpt), 3)
	// After it expires a's next report gets the whole limit.
	h.drive(3*time.Second, a)
	require.Equal(t, 100.0, a.c.rate(gpt))
	got := h.drive(10*time.Second, a)
	require.InDelta(t, 1000, got[0], 0.02*1000)
}

func TestIdleBucketIsAbandonedAndResubscribed(t *testing.T) {
	h := newHarness(t, rlqs.Options{AbandonAfter: 5 * time.Second})
	a := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 10}
	h.drive(3*time.Second, a)
	require.Equal(t, 100.0, a.c.rate(gpt))
	a.perSecond = 0
	h.drive(6*time.Second, a)
	require.False(t, a.c.holds(gpt), "told to abandon after 5s without a request")
	require.Equal(t, 1.0, metric(t, h.reg, "shepherd_sidecar_rlqs_abandoned_total"))
	require.Equal(t, 0.0, metric(t, h.reg, "shepherd_sidecar_rlqs_buckets"))

	// The next request starts over: reported at once, assigned again.
	require.True(t, a.c.request(gpt))
	require.Equal(t, 100.0, a.c.rate(gpt))
	require.Equal(t, 1.0, metric(t, h.reg, "shepherd_sidecar_rlqs_buckets"))
}

func TestAssignmentsFollowTheConfig(t *testing.T) {
	h := newHarness(t, rlqs.Options{})
	c := h.dialEnvoy(t, "llm")
	for _, tc := range []struct {
		name string
		id   map[string]string
		rate float64 // -1: allow all
	}{
		{"token bucket", gpt, 100},
		{"per minute", map[string]string{"model": "slow"}, 10.0 / 60},
		{"zero is deny all", map[string]string{"model": "free"}, 0},
		{"unlimited is allow all", map[string]string{"model": "open"}, -1},
		{"shadow mode is allow all", map[string]string{"model": "shadow"}, -1},
		{"no descriptor is allow all", map[string]string{"model": "other"}, -1},
		{"nested, keys in any order", map[string]string{"model": "m1", "tenant": "t1"}, 60},
		{"extra entry matches nothing", map[string]string{"model": "gpt", "x": "y"}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.request(tc.id)
			require.InDelta(t, tc.rate, c.rate(tc.id), 1e-9)
		})
	}

	// A reload revises assignments at once.
	cfg, err := ratelimit.ParseConfig("limits.yaml", []byte(strings.Replace(limitsYAML, "requests_per_unit: 100", "requests_per_unit: 40", 1)))
	require.NoError(t, err)
	h.svc.SetConfig(cfg)
	c.waitFor(func(r *rlqsv3.RateLimitQuotaResponse) bool {
		return len(r.GetBucketAction()) == 1 && r.GetBucketAction()[0].GetQuotaAssignmentAction().GetRateLimitStrategy().GetTokenBucket().GetTokensPerFill().GetValue() == 40
	})
	require.Equal(t, 40.0, c.rate(gpt))
}

func TestAssignmentShape(t *testing.T) {
	h := newHarness(t, rlqs.Options{})
	st, err := rlqsv3.NewRateLimitQuotaServiceClient(h.cc).StreamRateLimitQuotas(context.Background())
	require.NoError(t, err)
	require.NoError(t, st.Send(&rlqsv3.RateLimitQuotaUsageReports{Domain: "llm", BucketQuotaUsages: []*rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
		{BucketId: &rlqsv3.BucketId{Bucket: gpt}, NumRequestsAllowed: 1},
		{BucketId: &rlqsv3.BucketId{Bucket: map[string]string{"model": "slow"}}, NumRequestsAllowed: 1},
	}}))
	resp, err := st.Recv()
	require.NoError(t, err)
	require.Len(t, resp.GetBucketAction(), 2)
	for i, want := range []struct {
		max, perFill uint32
		fill, ttl    time.Duration
	}{
		{50, 100, time.Second, 10 * time.Second},  // whole tokens every second, half a second's worth held
		{1, 1, 6 * time.Second, 10 * time.Second}, // 10/min exactly: 1 token every 6s
	} {
		a := resp.GetBucketAction()[i]
		qa := a.GetQuotaAssignmentAction()
		require.NotNil(t, qa)
		tb := qa.GetRateLimitStrategy().GetTokenBucket()
		require.Equal(t, want.max, tb.GetMaxTokens())
		require.Equal(t, want.perFill, tb.GetTokensPerFill().GetValue())
		require.Equal(t, want.fill, tb.GetFillInterval().AsDuration())
		require.Equal(t, want.ttl, qa.GetAssignmentTimeToLive().AsDuration(), "the default TTL until the interval is known")
	}
}

func TestStreamErrorsAndBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    rlqs.Options
		reports []*rlqsv3.RateLimitQuotaUsageReports
		code    codes.Code // of the stream; OK: the stream stays and answers
		refused map[string]float64
		answers int // bucket actions in the answer to the last report
	}{
		{name: "first report without a domain", code: codes.InvalidArgument,
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("", gpt)}},
		{name: "the domain changes", code: codes.InvalidArgument,
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", gpt), usage("other", gpt)}},
		{name: "later reports may omit the domain", answers: 1,
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", gpt), usage("", gpt)}},
		{name: "domain too long", code: codes.InvalidArgument,
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage(strings.Repeat("d", 257), gpt)}},
		{name: "empty bucket id", answers: 1, refused: map[string]float64{"bucket_id": 1},
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", map[string]string{}, gpt)}},
		{name: "too many entries", opts: rlqs.Options{MaxBucketIDEntries: 2}, answers: 1, refused: map[string]float64{"bucket_id": 1},
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", map[string]string{"a": "1", "b": "2", "c": "3"}, gpt)}},
		{name: "bucket id too large", answers: 1, refused: map[string]float64{"bucket_id": 1},
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", map[string]string{"k": strings.Repeat("v", 2000)}, gpt)}},
		{name: "buckets per stream", opts: rlqs.Options{MaxBucketsPerStream: 2}, answers: 2, refused: map[string]float64{"stream_buckets": 1},
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", map[string]string{"model": "a"}, map[string]string{"model": "b"}, map[string]string{"model": "c"})}},
		{name: "buckets in all", opts: rlqs.Options{MaxBuckets: 1}, answers: 1, refused: map[string]float64{"buckets": 2},
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", map[string]string{"model": "a"}, map[string]string{"model": "b"}, map[string]string{"model": "c"})}},
		{name: "reports within the burst", opts: rlqs.Options{MaxReportsPerSecond: 2, MaxBucketsPerStream: 3}, answers: 1,
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", gpt), usage("llm", gpt), usage("llm", gpt), usage("llm", gpt)}},
		{name: "reports beyond the rate", opts: rlqs.Options{MaxReportsPerSecond: 2, MaxBucketsPerStream: 3}, code: codes.ResourceExhausted,
			reports: []*rlqsv3.RateLimitQuotaUsageReports{usage("llm", gpt), usage("llm", gpt), usage("llm", gpt), usage("llm", gpt), usage("llm", gpt)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := rlqsv3.NewRateLimitQuotaServiceClient(h.cc).StreamRateLimitQuotas(ctx)
			require.NoError(t, err)
			var resp *rlqsv3.RateLimitQuotaResponse
			for _, r := range tc.reports {
				require.NoError(t, st.Send(r))
				resp, err = st.Recv()
				if err != nil {
					break
				}
			}
			if tc.code != codes.OK {
				require.Equal(t, tc.code, status.Code(err), "%v", err)
				return
			}
			require.NoError(t, err)
			require.Len(t, resp.GetBucketAction(), tc.answers)
			for reason, n := range tc.refused {
				require.Equal(t, n, metric(t, h.reg, "shepherd_sidecar_rlqs_usage_refused_total", "reason", reason), reason)
			}
		})
	}
}

func TestShutdownEndsStreamsUnavailable(t *testing.T) {
	h := newHarness(t, rlqs.Options{})
	c := h.dialEnvoy(t, "llm")
	c.request(gpt)
	h.svc.Shutdown()
	select {
	case <-c.recvd:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, codes.Unavailable, status.Code(c.recvErr), "%v", c.recvErr)
}

// metric is the sum of the samples of a metric whose labels include the
// name/value pairs given.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func usage(domain string, ids ...map[string]string) *rlqsv3.RateLimitQuotaUsageReports {
	m := &rlqsv3.RateLimitQuotaUsageReports{Domain: domain}
	for _, id := range ids {
		m.BucketQuotaUsages = append(m.BucketQuotaUsages, &rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
			BucketId: &rlqsv3.BucketId{Bucket: id}, NumRequestsAllowed: 1})
	}
	return m
}

// TestChangingDemandNeverExceedsTheLimit: with demand that swings every few
// intervals (so shares keep moving and Envoy keeps starting fresh token
// buckets), the admitted total stays under the limit plus the documented
// bound, and most of the limit is used while the total demand exceeds it.
func TestChangingDemandNeverExceedsTheLimit(t *testing.T) {
	h := newHarness(t, rlqs.Options{})
	a := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 200}
	b := &load{c: h.dialEnvoy(t, "llm"), id: gpt, perSecond: 60, offset: 400 * time.Millisecond}
	h.drive(5*time.Second, a, b)
	fresh := a.c.fresh + b.c.fresh
	total := 0
	for i := 0; i < 12; i++ {
		if i%2 == 0 {
			a.perSecond = 200
		} else {
			a.perSecond = 70
		}
		got := h.drive(5*time.Second, a, b)
		total += got[0] + got[1]
	}
	fresh = a.c.fresh + b.c.fresh - fresh
	t.Logf("admitted %d over 60s against a limit of 6000; token buckets started full: %.0f tokens", total, fresh)
	// The documented bound: the rates add up to the limit, and each
	// assignment that changed started a full bucket (half a second of the
	// client's rate).
	require.LessOrEqual(t, float64(total), 6000+fresh)
	require.LessOrEqual(t, total, 6000*110/100)
	require.GreaterOrEqual(t, total, 6000*90/100)
}
