package ratelimit_test

import (
	"context"
	"errors"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// t0 is midnight UTC of a day, so it starts a window of every unit up to a
// day; tests run at t0+10s unless a step says otherwise.
const t0 = 1_700_006_400

// fakeClock is a settable clock.
type fakeClock struct{ unix atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.Unix(c.unix.Load(), 0) }
func (c *fakeClock) set(sec int64)  { c.unix.Store(sec) }

// server runs a Service on a loopback listener and returns a client for it.
func server(t testing.TB, svc *ratelimit.Service) rlsv3.RateLimitServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	svc.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

func loadTestConfig(t testing.TB) *ratelimit.Config {
	t.Helper()
	cfg, err := ratelimit.LoadConfig(filepath.Join("testdata", "limits.yaml"))
	require.NoError(t, err)
	return cfg
}

// storeKinds builds a fresh store of each kind; Redis stores get a prefix of
// their own so that cases never share counters.
func storeKinds(t *testing.T) map[string]func() store.Store {
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.StartCluster(t)})
	t.Cleanup(func() { _ = cc.Close() })
	var n atomic.Int64
	prefix := func() string { return t.Name() + ":" + strconv.FormatInt(n.Add(1), 10) + ":" }
	return map[string]func() store.Store{
		"memory":        func() store.Store { return store.NewMemory(store.MemoryOptions{}) },
		"redis":         func() store.Store { return store.NewRedis(client, store.RedisOptions{Prefix: prefix()}) },
		"redis-cluster": func() store.Store { return store.NewRedis(cc, store.RedisOptions{Prefix: prefix()}) },
	}
}

// desc builds a descriptor from "key=value" entries.
func desc(kvs ...string) *commonrl.RateLimitDescriptor {
	d := &commonrl.RateLimitDescriptor{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	return d
}

func withHits(d *commonrl.RateLimitDescriptor, n uint64) *commonrl.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(n)
	return d
}

// want is the expected status of one descriptor.
type want struct {
	code      rlsv3.RateLimitResponse_Code
	limit     uint32 // requests per unit; 0 with unit UNKNOWN means no current limit
	unit      rlsv3.RateLimitResponse_RateLimit_Unit
	remaining uint32
	reset     int64
}

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT
	sec  = rlsv3.RateLimitResponse_RateLimit_SECOND
	min  = rlsv3.RateLimitResponse_RateLimit_MINUTE
	hour = rlsv3.RateLimitResponse_RateLimit_HOUR
	day  = rlsv3.RateLimitResponse_RateLimit_DAY
)

var (
	noLimit   = want{code: ok}
	unlimited = want{code: ok, remaining: math.MaxUint32}
)

type step struct {
	at      int64 // seconds after t0; 0 means 10
	hits    uint32
	descs   []*commonrl.RateLimitDescriptor
	overall rlsv3.RateLimitResponse_Code
	want    []want
}

func statusesOf(resp *rlsv3.RateLimitResponse) []want {
	var got []want
	for _, s := range resp.GetStatuses() {
		w := want{code: s.GetCode(), remaining: s.GetLimitRemaining()}
		if cl := s.GetCurrentLimit(); cl != nil {
			w.limit, w.unit = cl.GetRequestsPerUnit(), cl.GetUnit()
			w.reset = s.GetDurationUntilReset().AsDuration().Milliseconds() / 1000
		}
		got = append(got, w)
	}
	return got
}

func TestShouldRateLimitDecisions(t *testing.T) {
	cases := []struct {
		name  string
		steps []step
	}{
		{
			name: "per-minute default limit, then a new window",
			steps: []step{
				{descs: descs(desc("user=alice")), overall: ok, want: []want{{ok, 3, min, 2, 50}}},
				{at: 20, descs: descs(desc("user=alice")), overall: ok, want: []want{{ok, 3, min, 1, 40}}},
				{at: 59, descs: descs(desc("user=alice")), overall: ok, want: []want{{ok, 3, min, 0, 1}}},
				{at: 59, descs: descs(desc("user=alice")), overall: over, want: []want{{over, 3, min, 0, 1}}},
				{at: 60, descs: descs(desc("user=alice")), overall: ok, want: []want{{ok, 3, min, 2, 60}}},
			},
		},
		{
			name: "values count separately under one default",
			steps: []step{
				{hits: 3, descs: descs(desc("user=alice")), overall: ok, want: []want{{ok, 3, min, 0, 50}}},
				{descs: descs(desc("user=bob")), overall: ok, want: []want{{ok, 3, min, 2, 50}}},
				{descs: descs(desc("user=alice")), overall: over, want: []want{{over, 3, min, 0, 50}}},
			},
		},
		{
			name: "value-specific limit wins over the default",
			steps: []step{
				{descs: descs(desc("user=vip")), overall: ok, want: []want{{ok, 10, min, 9, 50}}},
				{descs: descs(desc("user=banned")), overall: over, want: []want{{over, 0, sec, 0, 1}}},
			},
		},
		{
			name: "unlimited and unmatched descriptors",
			steps: []step{
				{hits: 1000, descs: descs(desc("user=free"), desc("team=x"), desc("route=chat")), overall: ok, want: []want{unlimited, noLimit, noLimit}},
			},
		},
		{
			name: "nested descriptors",
			steps: []step{
				{descs: descs(desc("route=chat", "model=llama")), overall: ok, want: []want{{ok, 2, hour, 1, 3590}}},
				{descs: descs(desc("route=chat", "model=llama")), overall: ok, want: []want{{ok, 2, hour, 0, 3590}}},
				{descs: descs(desc("route=chat", "model=llama")), overall: over, want: []want{{over, 2, hour, 0, 3590}}},
				{descs: descs(desc("route=chat", "model=mistral")), overall: ok, want: []want{{ok, 2, hour, 1, 3590}}},
				{descs: descs(desc("route=chat", "model=gpt-4")), overall: ok, want: []want{{ok, 1, day, 0, 86390}}},
				{at: 3600, descs: descs(desc("route=chat", "model=gpt-4")), overall: over, want: []want{{over, 1, day, 0, 82800}}},
				{at: 3600, descs: descs(desc("route=chat", "model=llama")), overall: ok, want: []want{{ok, 2, hour, 1, 3600}}},
			},
		},
		{
			name: "request-level hits_addend",
			steps: []step{
				{hits: 60, descs: descs(desc("tokens=t")), overall: ok, want: []want{{ok, 100, min, 40, 50}}},
				{hits: 40, descs: descs(desc("tokens=t")), overall: ok, want: []want{{ok, 100, min, 0, 50}}},
				{hits: 1, descs: descs(desc("tokens=t")), overall: over, want: []want{{over, 100, min, 0, 50}}},
			},
		},
		{
			name: "per-descriptor hits_addend wins, zero only checks",
			steps: []step{
				{hits: 50, descs: descs(withHits(desc("tokens=t"), 99), desc("user=carol")), overall: over, want: []want{{ok, 100, min, 1, 50}, {over, 3, min, 0, 50}}},
				{hits: 7, descs: descs(withHits(desc("tokens=t"), 0)), overall: ok, want: []want{{ok, 100, min, 1, 50}}},
				{descs: descs(withHits(desc("tokens=t"), 2)), overall: over, want: []want{{over, 100, min, 0, 50}}},
			},
		},
		{
			name: "a rejected hit still counts, and one over descriptor rejects the request",
			steps: []step{
				{descs: descs(desc("user=dave"), desc("tokens=t")), overall: ok, want: []want{{ok, 3, min, 2, 50}, {ok, 100, min, 99, 50}}},
				{hits: 2, descs: descs(desc("user=dave"), desc("tokens=t")), overall: ok, want: []want{{ok, 3, min, 0, 50}, {ok, 100, min, 97, 50}}},
				{descs: descs(desc("user=dave"), desc("tokens=t")), overall: over, want: []want{{over, 3, min, 0, 50}, {ok, 100, min, 96, 50}}},
			},
		},
		{
			name: "shadow mode counts and reports but answers OK",
			steps: []step{
				{descs: descs(desc("shadowed=s")), overall: ok, want: []want{{ok, 1, sec, 0, 1}}},
				{descs: descs(desc("shadowed=s")), overall: ok, want: []want{{ok, 1, sec, 0, 1}}},
				{descs: descs(desc("shadowed=s"), desc("user=banned")), overall: over, want: []want{{ok, 1, sec, 0, 1}, {over, 0, sec, 0, 1}}},
			},
		},
		{
			name: "replaces drops the named limit",
			steps: []step{
				{descs: descs(desc("tier=read")), overall: ok, want: []want{{ok, 1, sec, 0, 1}}},
				{descs: descs(desc("tier=read")), overall: over, want: []want{{over, 1, sec, 0, 1}}},
				{descs: descs(desc("tier=read"), desc("endpoint=special")), overall: ok, want: []want{noLimit, {ok, 5, sec, 4, 1}}},
			},
		},
		{
			name: "more descriptors than fit the small response",
			steps: []step{
				{
					descs:   descs(desc("user=a"), desc("user=b"), desc("user=free"), desc("team=x"), desc("user=a"), desc("user=banned")),
					overall: over,
					want:    []want{{ok, 3, min, 2, 50}, {ok, 3, min, 2, 50}, unlimited, noLimit, {ok, 3, min, 1, 50}, {over, 0, sec, 0, 1}},
				},
			},
		},
		{
			name: "separators inside values do not merge counters",
			steps: []step{
				{descs: descs(desc("esc=x|b=y")), overall: ok, want: []want{{ok, 1, min, 0, 50}}},
				{descs: descs(desc("esc=x", "b=y")), overall: ok, want: []want{{ok, 1, min, 0, 50}}},
				{descs: descs(desc("esc=x%7Cb%3Dy")), overall: ok, want: []want{{ok, 1, min, 0, 50}}},
				{descs: descs(desc("esc=x|b=y")), overall: over, want: []want{{over, 1, min, 0, 50}}},
			},
		},
		{
			name: "quota_mode: over only when every quota of the request is over",
			steps: []step{
				{descs: descs(desc("service=s1"), desc("service=s2")), overall: ok, want: []want{{ok, 1, min, 0, 50}, {ok, 2, min, 1, 50}}},
				{descs: descs(desc("service=s1"), desc("service=s2")), overall: ok, want: []want{{over, 1, min, 0, 50}, {ok, 2, min, 0, 50}}},
				{descs: descs(desc("service=s1"), desc("service=s2")), overall: over, want: []want{{over, 1, min, 0, 50}, {over, 2, min, 0, 50}}},
				{descs: descs(desc("service=s1")), overall: over, want: []want{{over, 1, min, 0, 50}}},
				{descs: descs(desc("service=s1"), desc("user=erin")), overall: over, want: []want{{over, 1, min, 0, 50}, {ok, 3, min, 2, 50}}},
				{descs: descs(desc("service=s1"), desc("user=banned")), overall: over, want: []want{{over, 1, min, 0, 50}, {over, 0, sec, 0, 1}}},
			},
		},
		{
			name: "share_threshold: the values a wildcard matches share one counter",
			steps: []step{
				{descs: descs(desc("files=files/a")), overall: ok, want: []want{{ok, 2, hour, 1, 3590}}},
				{descs: descs(desc("files=files/b")), overall: ok, want: []want{{ok, 2, hour, 0, 3590}}},
				{descs: descs(desc("files=files/c")), overall: over, want: []want{{over, 2, hour, 0, 3590}}},
				{descs: descs(desc("files_no_share=files_no_share/a"), desc("files_no_share=files_no_share/b")), overall: ok, want: []want{{ok, 1, hour, 0, 3590}, {ok, 1, hour, 0, 3590}}},
				{descs: descs(desc("tenant=t-1", "model=m")), overall: ok, want: []want{{ok, 1, hour, 0, 3590}}},
				{descs: descs(desc("tenant=t-2", "model=m")), overall: over, want: []want{{over, 1, hour, 0, 3590}}},
				{descs: descs(desc("tenant=t-2", "model=other")), overall: ok, want: []want{{ok, 1, hour, 0, 3590}}},
			},
		},
		{
			name: "unknown domain is OK without limits",
			steps: []step{
				{descs: descs(desc("user=alice")), overall: ok, want: []want{noLimit}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for kind, newStore := range storeKinds(t) {
				clock := &fakeClock{}
				svc := ratelimit.NewService(loadTestConfig(t), newStore(), ratelimit.Options{Clock: clock.now})
				client := server(t, svc)
				domain := "llm"
				if strings.HasPrefix(tc.name, "unknown domain") {
					domain = "other"
				}
				for i, s := range tc.steps {
					at := s.at
					if at == 0 {
						at = 10
					}
					clock.set(t0 + at)
					resp, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: s.descs, HitsAddend: s.hits})
					require.NoError(t, err, "%s step %d", kind, i)
					require.Equal(t, s.overall, resp.GetOverallCode(), "%s step %d", kind, i)
					require.Equal(t, s.want, statusesOf(resp), "%s step %d", kind, i)
				}
			}
		})
	}
}

func descs(d ...*commonrl.RateLimitDescriptor) []*commonrl.RateLimitDescriptor { return d }

func TestShouldRateLimitDescriptorOverride(t *testing.T) {
	clock := &fakeClock{}
	clock.set(t0 + 10)
	svc := ratelimit.NewService(loadTestConfig(t), store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Clock: clock.now})
	client := server(t, svc)
	d := desc("user=alice")
	d.Limit = &commonrl.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_HOUR}
	for i, w := range []want{{ok, 1, hour, 0, 3590}, {over, 1, hour, 0, 3590}} {
		resp, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(d)})
		require.NoError(t, err)
		require.Equal(t, []want{w}, statusesOf(resp), "step %d", i)
	}
	// On a domain with no config the override is ignored too, as in
	// envoyproxy/ratelimit: nothing is counted, the answer is OK.
	for i := range 3 {
		resp, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "other", Descriptors: descs(d)})
		require.NoError(t, err)
		require.Equal(t, ok, resp.GetOverallCode(), "step %d", i)
		require.Equal(t, []want{noLimit}, statusesOf(resp), "step %d", i)
	}
}

func TestShouldRateLimitResponseHeaders(t *testing.T) {
	headers := func(resp *rlsv3.RateLimitResponse) map[string]string {
		out := map[string]string{}
		for _, h := range resp.GetResponseHeadersToAdd() {
			out[h.GetKey()] = h.GetValue()
		}
		return out
	}
	clock := &fakeClock{}
	clock.set(t0 + 10)
	ctx := context.Background()

	svc := ratelimit.NewService(loadTestConfig(t), store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Clock: clock.now})
	client := server(t, svc)
	// The descriptor with the least remaining is reported.
	resp, err := client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("user=vip"), desc("user=erin"))})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"RateLimit-Limit": "3", "RateLimit-Remaining": "2", "RateLimit-Reset": "50"}, headers(resp))
	// An over-limit descriptor is reported even if listed first.
	resp, err = client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("user=banned"), desc("tokens=t"))})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"RateLimit-Limit": "0", "RateLimit-Remaining": "0", "RateLimit-Reset": "1"}, headers(resp))
	// No limit, no headers.
	resp, err = client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("user=free"))})
	require.NoError(t, err)
	require.Empty(t, resp.GetResponseHeadersToAdd())

	named := ratelimit.NewService(loadTestConfig(t), store.NewMemory(store.MemoryOptions{}), ratelimit.Options{
		Clock:   clock.now,
		Headers: ratelimit.HeaderNames{Limit: "x-ratelimit-limit", Remaining: "x-ratelimit-remaining", Reset: "x-ratelimit-reset"},
	})
	resp, err = server(t, named).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("tokens=t"))})
	require.NoError(t, err)
	require.Equal(t, []*corev3.HeaderValue{
		{Key: "x-ratelimit-limit", Value: "100"},
		{Key: "x-ratelimit-remaining", Value: "99"},
		{Key: "x-ratelimit-reset", Value: "50"},
	}, resp.GetResponseHeadersToAdd())

	off := ratelimit.NewService(loadTestConfig(t), store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Clock: clock.now, DisableHeaders: true})
	resp, err = server(t, off).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("tokens=t"))})
	require.NoError(t, err)
	require.Empty(t, resp.GetResponseHeadersToAdd())
}

func TestShouldRateLimitInvalidRequests(t *testing.T) {
	client := server(t, ratelimit.NewService(nil, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{}))
	_, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Descriptors: descs(desc("a=b"))})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorContains(t, err, "rate limit domain must not be empty")
	_, err = client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "llm"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorContains(t, err, "rate limit descriptor list must not be empty")
}

func TestShouldRateLimitEmptyConfigAllowsEverything(t *testing.T) {
	svc := ratelimit.NewService(nil, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{})
	require.Empty(t, svc.Config().Domains())
	client := server(t, svc)
	for i := 0; i < 3; i++ {
		resp, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "llm", HitsAddend: 1 << 30, Descriptors: descs(desc("user=alice"))})
		require.NoError(t, err)
		require.Equal(t, ok, resp.GetOverallCode())
		require.Equal(t, []want{noLimit}, statusesOf(resp))
	}
}

func TestSetConfigSwapsLimits(t *testing.T) {
	clock := &fakeClock{}
	clock.set(t0 + 10)
	svc := ratelimit.NewService(nil, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Clock: clock.now})
	client := server(t, svc)
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("user=banned"))}
	resp, err := client.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, ok, resp.GetOverallCode())

	cfg := loadTestConfig(t)
	svc.SetConfig(cfg)
	require.Same(t, cfg, svc.Config())
	resp, err = client.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, over, resp.GetOverallCode())

	svc.SetConfig(nil)
	resp, err = client.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, ok, resp.GetOverallCode())
}

// brokenStore fails every Apply.
type brokenStore struct{}

func (brokenStore) Apply(context.Context, []store.Hit) ([]store.Result, error) {
	return nil, errors.New("connection refused")
}
func (brokenStore) Close() error { return nil }

func TestStoreFailureModes(t *testing.T) {
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("user=alice"), desc("user=free"), desc("shadowed=x"))}
	cases := []struct {
		mode    ratelimit.FailureMode
		code    codes.Code
		overall rlsv3.RateLimitResponse_Code
		want    []rlsv3.RateLimitResponse_Code
	}{
		{ratelimit.FailError, codes.Unavailable, 0, nil},
		{ratelimit.FailOpen, codes.OK, ok, []rlsv3.RateLimitResponse_Code{ok, ok, ok}},
		{ratelimit.FailClosed, codes.OK, over, []rlsv3.RateLimitResponse_Code{over, ok, ok}},
	}
	for _, tc := range cases {
		t.Run(tc.mode.String(), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			svc := ratelimit.NewService(loadTestConfig(t), brokenStore{}, ratelimit.Options{FailureMode: tc.mode, Registerer: reg})
			resp, err := server(t, svc).ShouldRateLimit(context.Background(), req)
			require.Equal(t, tc.code, status.Code(err))
			if tc.code != codes.OK {
				require.NotContains(t, err.Error(), "alice")
				return
			}
			require.Equal(t, tc.overall, resp.GetOverallCode())
			var got []rlsv3.RateLimitResponse_Code
			for _, s := range resp.GetStatuses() {
				got = append(got, s.GetCode())
			}
			require.Equal(t, tc.want, got)
			require.Equal(t, 1.0, gather(t, reg)["shepherd_ratelimit_store_errors_total"])
		})
	}
}

func TestParseFailureMode(t *testing.T) {
	for _, m := range []ratelimit.FailureMode{ratelimit.FailError, ratelimit.FailOpen, ratelimit.FailClosed} {
		got, err := ratelimit.ParseFailureMode(m.String())
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	got, err := ratelimit.ParseFailureMode("")
	require.NoError(t, err)
	require.Equal(t, ratelimit.FailError, got)
	_, err = ratelimit.ParseFailureMode("deny")
	require.EqualError(t, err, `unknown failure mode "deny" (error, open or closed)`)
}

// stuckStore never answers before its context ends.
type stuckStore struct{}

func (stuckStore) Apply(ctx context.Context, _ []store.Hit) ([]store.Result, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stuckStore) Close() error { return nil }

func TestStoreTimeoutAppliesTheFailureMode(t *testing.T) {
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: descs(desc("user=alice"))}
	svc := ratelimit.NewService(loadTestConfig(t), stuckStore{}, ratelimit.Options{StoreTimeout: time.Millisecond})
	_, err := server(t, svc).ShouldRateLimit(context.Background(), req)
	require.Equal(t, codes.Unavailable, status.Code(err))

	open := ratelimit.NewService(loadTestConfig(t), stuckStore{}, ratelimit.Options{StoreTimeout: time.Millisecond, FailureMode: ratelimit.FailOpen})
	resp, err := server(t, open).ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, ok, resp.GetOverallCode())
}

func TestMetrics(t *testing.T) {
	clock := &fakeClock{}
	clock.set(t0 + 10)
	reg := prometheus.NewRegistry()
	svc := ratelimit.NewService(loadTestConfig(t), store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Clock: clock.now, Registerer: reg, MaxDetailedKeys: 2})
	client := server(t, svc)
	call := func(domain string, ds ...*commonrl.RateLimitDescriptor) {
		_, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds})
		require.NoError(t, err)
	}
	call("llm", desc("user=alice"))
	call("llm", desc("user=banned"))
	call("llm", desc("shadowed=s"))
	call("llm", desc("shadowed=s"))
	call("someone-elses-domain", desc("user=alice"))
	call("yet-another", desc("user=alice"))
	for _, v := range []string{"a", "b", "c", "d", "a"} {
		call("llm", desc("detailed="+v))
	}

	got := gather(t, reg)
	for name, v := range map[string]float64{
		`shepherd_ratelimit_decisions_total{code="ok",domain="_unknown"}`:                            2,
		`shepherd_ratelimit_decisions_total{code="ok",domain="llm"}`:                                 6,
		`shepherd_ratelimit_decisions_total{code="over_limit",domain="_unknown"}`:                    0,
		`shepherd_ratelimit_decisions_total{code="over_limit",domain="llm"}`:                         2,
		`shepherd_ratelimit_decisions_total{code="shadow",domain="llm"}`:                             1,
		`shepherd_ratelimit_detailed_decisions_total{code="ok",descriptor="_overflow"}`:              2,
		`shepherd_ratelimit_detailed_decisions_total{code="ok",descriptor="llm.detailed_a"}`:         1,
		`shepherd_ratelimit_detailed_decisions_total{code="ok",descriptor="llm.detailed_b"}`:         1,
		`shepherd_ratelimit_detailed_decisions_total{code="over_limit",descriptor="llm.detailed_a"}`: 1,
		`shepherd_ratelimit_limit_decisions_total{code="shadow",limit="llm.shadowed"}`:               1,
		`shepherd_ratelimit_limit_decisions_total{code="ok",limit="llm.shadowed"}`:                   1,
		`shepherd_ratelimit_limit_decisions_total{code="over_limit",limit="llm.user_banned"}`:        1,
		`shepherd_ratelimit_limit_decisions_total{code="ok",limit="llm.user"}`:                       1,
		`shepherd_ratelimit_store_duration_seconds_count`:                                            9,
		`shepherd_ratelimit_store_errors_total`:                                                      0,
	} {
		require.Equal(t, v, got[name], name)
	}
	var detailed int
	for name := range got {
		if strings.HasPrefix(name, "shepherd_ratelimit_detailed_decisions_total{") {
			detailed++
		}
	}
	require.Equal(t, 4, detailed, "only the two admitted descriptors and the overflow label, with the codes seen")

	// A second service on the same registry shares the metrics.
	require.NotPanics(t, func() {
		ratelimit.NewService(nil, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Registerer: reg})
	})
}

// gather returns every sample of reg by its name and sorted labels, as in
// the text format; histograms give their _count.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[mf.GetName()+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
