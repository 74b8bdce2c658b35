package e2e_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

// The quota mode end to end: one Envoy-faithful host with two worker VMs
// against an RLQS server in this process (go-control-plane's generated
// types), which assigns each bucket a token bucket and counts what it is
// told. The server also serves ShouldRateLimit, to count that the filter
// never calls it in quota mode.

const quotaE2EConfig = `{
  "sidecar": {"cluster": "sidecar", "timeoutMs": 100, "policyPollMs": 0, "reportIntervalMs": 0, "quotaReportMs": 50},
  "providers": [{"name": "relay", "host": "relay.example.com", "cluster": "relay"}],
  "routes": [
    {"name": "limited", "match": {"pathPrefix": "/limited/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"mode": "quota", "failureMode": "closed"}},
    {"name": "open", "match": {"pathPrefix": "/open/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"mode": "quota", "failureMode": "open"}},
    {"name": "closed", "match": {"pathPrefix": "/closed/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"mode": "quota", "failureMode": "closed"}},
    {"name": "tokens", "match": {"pathPrefix": "/tokens/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"mode": "quota", "failureMode": "closed", "tokens": true}}
  ]}`

// quotaServer is a small RLQS server: every reported bucket gets a token
// bucket of limits[route] requests an hour (1000 when unlisted), valid for
// ttl; it sums the usage it is told per route. A token descriptor's bucket
// ({kind: tokens, route: r}) is "tokens:r" in limits and in the sums.
type quotaServer struct {
	rlqsv3.UnimplementedRateLimitQuotaServiceServer
	rlsv3.UnimplementedRateLimitServiceServer
	limits map[string]uint32
	ttl    time.Duration

	mu       sync.Mutex
	allowed  map[string]uint64
	denied   map[string]uint64
	reports  int
	assigned map[string]int // reports answered per route
	checks   atomic.Int64   // ShouldRateLimit calls

	addr string
	srv  *grpc.Server
	done chan struct{}
	t    testing.TB
}

func startQuotaServer(t testing.TB, limits map[string]uint32, ttl time.Duration) *quotaServer {
	q := &quotaServer{limits: limits, ttl: ttl, allowed: map[string]uint64{}, denied: map[string]uint64{}, assigned: map[string]int{}}
	q.start(t, "127.0.0.1:0")
	t.Cleanup(q.stop)
	return q
}

func (q *quotaServer) start(t testing.TB, addr string) {
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	q.addr, q.t = ln.Addr().String(), t
	q.srv = grpc.NewServer()
	rlqsv3.RegisterRateLimitQuotaServiceServer(q.srv, q)
	rlsv3.RegisterRateLimitServiceServer(q.srv, q)
	q.done = make(chan struct{})
	go func() {
		defer close(q.done)
		_ = q.srv.Serve(ln)
	}()
}

// stop ends the server and every stream; idempotent.
func (q *quotaServer) stop() {
	if q.srv == nil {
		return
	}
	q.srv.Stop()
	testutil.Receive(q.t, q.done, time.Minute)
	q.srv = nil
}

func (q *quotaServer) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	q.checks.Add(1)
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

func (q *quotaServer) StreamRateLimitQuotas(s rlqsv3.RateLimitQuotaService_StreamRateLimitQuotasServer) error {
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &rlqsv3.RateLimitQuotaResponse{}
		q.mu.Lock()
		q.reports++
		for _, u := range r.BucketQuotaUsages {
			route := u.BucketId.Bucket["route"]
			if kind := u.BucketId.Bucket["kind"]; kind != "" {
				route = kind + ":" + route
			}
			q.allowed[route] += u.NumRequestsAllowed
			q.denied[route] += u.NumRequestsDenied
			q.assigned[route]++
			n, ok := q.limits[route]
			if !ok {
				n = 1000
			}
			resp.BucketAction = append(resp.BucketAction, &rlqsv3.RateLimitQuotaResponse_BucketAction{
				BucketId: u.BucketId,
				BucketAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction_{
					QuotaAssignmentAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction{
						AssignmentTimeToLive: durationpb.New(q.ttl),
						RateLimitStrategy: &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_TokenBucket{TokenBucket: &typev3.TokenBucket{
							MaxTokens: n, TokensPerFill: wrapperspb.UInt32(n), FillInterval: durationpb.New(time.Hour)}}},
					}}})
		}
		q.mu.Unlock()
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

// usage is the usage reported for route so far and how many reports
// answered it.
func (q *quotaServer) usage(route string) (allowed, denied uint64, answered int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.allowed[route], q.denied[route], q.assigned[route]
}

type quotaEnv struct {
	server *quotaServer
	relay  *fakeprovider.Provider
	host   *envoy.Host
	url    string
}

func newQuotaEnv(t *testing.T, limits map[string]uint32, ttl time.Duration) *quotaEnv {
	e := &quotaEnv{server: startQuotaServer(t, limits, ttl), relay: fakeprovider.New(fakeprovider.Options{Name: "relay"})}
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(quotaE2EConfig), Workers: 2,
		Clusters:  map[string]string{"relay": scenario.Upstream(t, e.relay), "sidecar": e.server.addr},
		Routes:    map[string]string{"relay.example.com": "relay"},
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	front := serveHost(t, h)
	e.host, e.url = h, front.URL
	return e
}

func (e *quotaEnv) do(t testing.TB, path string) int {
	req, err := http.NewRequest(http.MethodPost, e.url+path,
		strings.NewReader(`{"model":"gpt-4.1","messages":[{"role":"user","content":"hello"}]}`))
	require.NoError(t, err)
	req.Host = "api.openai.com"
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// assigned waits until the server has answered two reports of route after
// now: the first carried the assignment, the second came a report period
// after it was delivered.
func (e *quotaEnv) assigned(t *testing.T, route string) {
	_, _, before := e.server.usage(route)
	until(t, 5*time.Second, "assignment of "+route, func() bool {
		_, _, n := e.server.usage(route)
		return n >= before+2
	})
}

// TestQuotaGlobalRequestLimit: with an assignment of 20 requests, 60
// concurrent requests spread over two worker VMs admit exactly 20 (the VMs
// draw from one record in shared data with compare-and-swap), the rest get
// 429, no request calls ShouldRateLimit, and the server hears of every
// decision in the usage reports. The bucket's first request, made before
// any assignment, is admitted: that is the documented bound.
func TestQuotaGlobalRequestLimit(t *testing.T) {
	e := newQuotaEnv(t, map[string]uint32{"limited": 20}, time.Minute)
	require.Equal(t, http.StatusOK, e.do(t, "/limited/v1/chat/completions"), "a new bucket is admitted")
	e.assigned(t, "limited")

	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				switch st := e.do(t, "/limited/v1/chat/completions"); st {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					t.Errorf("status %d", st)
				}
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 20, ok.Load())
	require.EqualValues(t, 40, limited.Load())
	require.EqualValues(t, 21, e.relay.Requests())
	require.Zero(t, e.server.checks.Load(), "quota mode never calls ShouldRateLimit")
	until(t, 5*time.Second, "the usage reported", func() bool {
		a, d, _ := e.server.usage("limited")
		return a == 21 && d == 40
	})
	require.EqualValues(t, 40, counterOf(t, e.host, telemetry.Name(telemetry.RateLimited, telemetry.LabelRoute, "limited", telemetry.LabelKind, "global_requests")))
}

// TestQuotaTokenLimit: a token limit in quota mode, as docs/CONFIG.md
// (globalLimits, quota mode, tokens: true) describes it. The token
// descriptor is a bucket of its own whose "requests" are tokens; a request
// starts while its assignment has a token left and takes nothing then; its
// real usage is charged when the response ends, into debt if need be, and
// reported as the bucket's allowed count. Each answer here uses 14 tokens
// (2 prompt, 12 completion) against an assignment of 50: four start, the
// fourth takes the bucket to -6, the fifth is refused with 429 for tokens.
func TestQuotaTokenLimit(t *testing.T) {
	e := newQuotaEnv(t, map[string]uint32{"tokens:tokens": 50}, time.Minute)
	const path = "/tokens/v1/chat/completions"
	require.Equal(t, http.StatusOK, e.do(t, path), "a new bucket is admitted")
	e.assigned(t, "tokens:tokens")

	var statuses []int
	for range 5 {
		statuses = append(statuses, e.do(t, path))
	}
	require.Equal(t, []int{200, 200, 200, 200, 429}, statuses)
	req, err := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(`{"model":"gpt-4.1","messages":[{"role":"user","content":"hello"}]}`))
	require.NoError(t, err)
	req.Host = "api.openai.com"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "50", resp.Header.Get("x-ratelimit-limit-tokens"), "the assignment's size")
	// 7 tokens (from -6 to 1) at 50 an hour: 504 s.
	require.Equal(t, "504", resp.Header.Get("retry-after"))
	require.Contains(t, string(body), `"code":"rate_limit_exceeded"`)

	require.EqualValues(t, 5, e.relay.Requests(), "refused requests never reach the provider")
	require.Zero(t, e.server.checks.Load(), "no ShouldRateLimit, not even to settle")
	until(t, 5*time.Second, "the usage reported", func() bool {
		tokens, refused, _ := e.server.usage("tokens:tokens")
		requests, _, _ := e.server.usage("tokens")
		// Five answers of 14 tokens (the first one's too, charged before
		// the assignment); the request bucket counts the five requests
		// that started.
		return tokens == 5*14 && refused == 2 && requests == 5
	})
	require.EqualValues(t, 2, counterOf(t, e.host, telemetry.Name(telemetry.RateLimited, telemetry.LabelRoute, "tokens", telemetry.LabelKind, "global_tokens")))
}

// TestQuotaSidecarDown: a sidecar restart shorter than the assignments'
// time to live changes nothing for clients; a longer outage honours the
// assignments until they expire, and then each route's failure mode
// applies (closed: 503; open: admitted under local limits, counted).
func TestQuotaSidecarDown(t *testing.T) {
	const ttl = 3 * time.Second
	e := newQuotaEnv(t, nil, ttl)
	for _, p := range []string{"/open/v1/chat/completions", "/closed/v1/chat/completions"} {
		require.Equal(t, http.StatusOK, e.do(t, p))
	}
	e.assigned(t, "closed")

	// A short restart.
	addr := e.server.addr
	e.server.stop()
	for range 5 {
		require.Equal(t, http.StatusOK, e.do(t, "/closed/v1/chat/completions"))
		require.Equal(t, http.StatusOK, e.do(t, "/open/v1/chat/completions"))
	}
	e.server.start(t, addr)
	e.assigned(t, "closed") // the stream is back, with fresh assignments
	for range 5 {
		require.Equal(t, http.StatusOK, e.do(t, "/closed/v1/chat/completions"))
	}
	failures := func(mode string) uint64 { // 0 while never counted (not yet defined)
		m := &wasmMesh{host: e.host}
		name := telemetry.Name(telemetry.GlobalLimitFailures, telemetry.LabelRoute, mode, telemetry.LabelKind, mode)
		if !m.Defined(t, name) {
			return 0
		}
		return m.Counter(t, name)
	}
	require.Zero(t, failures("closed"))
	require.Zero(t, failures("open"))

	// A long outage: honoured until the expiry, then the failure mode.
	e.server.stop()
	require.Equal(t, http.StatusOK, e.do(t, "/closed/v1/chat/completions"), "the assignment is honoured")
	until(t, ttl+2*time.Second, "the assignment expires", func() bool {
		st := e.do(t, "/closed/v1/chat/completions")
		if st == http.StatusOK {
			return false
		}
		require.Equal(t, http.StatusServiceUnavailable, st)
		return true
	})
	require.Equal(t, http.StatusOK, e.do(t, "/open/v1/chat/completions"))
	require.EqualValues(t, 1, failures("closed"))
	require.EqualValues(t, 1, failures("open"))
	require.Zero(t, e.server.checks.Load())
}

// The quota mode against the real shepherd-sidecar (in this process): two
// pods of two worker VMs each, one RLQS stream per pod, the sidecar dividing
// the limit between them by their demand.

const quotaMeshConfig = `{
  "sidecar": {"cluster": "sidecar", "token": {"env": "SHEPHERD_FILTER_TOKEN"}, "timeoutMs": 200, "policyPollMs": 0, "reportIntervalMs": 0, "quotaReportMs": 100},
  "providers": [{"name": "relay", "host": "relay.example.com", "cluster": "relay"}],
  "routes": [
    {"name": "quota", "match": {"pathPrefix": "/quota/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"mode": "quota", "failureMode": "closed"}}
  ]}`

// quotaMeshRateLimits: route quota admits 40 requests a second.
const quotaMeshRateLimits = `
domain: shepherd
descriptors:
  - key: route
    value: quota
    rate_limit: {unit: second, requests_per_unit: 40}
`

// TestQuotaMeshAccuracy: under uneven load (three clients on one pod, one on
// the other) the two pods together admit what the limit allows over the
// window, within the documented bound (half a second of each pod's share
// and the sidecar's 2% hysteresis), and the busy pod gets the larger share.
func TestQuotaMeshAccuracy(t *testing.T) {
	pods := newQuotaMesh(t)
	const path = "/quota/v1/chat/completions"
	// Both pods learn of the bucket and get their first shares.
	for _, p := range pods {
		require.Equal(t, http.StatusOK, p.do(t, path))
	}
	unevenLoad(t, pods, 1500*time.Millisecond) // shares settle on the demand
	admitted, elapsed := unevenLoad(t, pods, 3*time.Second)
	total := admitted[0] + admitted[1]
	allowed := 40 * elapsed.Seconds()
	t.Logf("admitted %v over %s: %d, %.1f%% of the limit's %.0f", admitted, elapsed, total, 100*float64(total)/allowed, allowed)
	// The bound: the pods' buckets hold half a second of their shares (the
	// two together half a second of the limit, full when the window opens),
	// and the shares may exceed the limit by the sidecar's 2% hysteresis.
	require.LessOrEqual(t, float64(total), allowed*1.02+20, "within the limit plus the bound")
	require.Greater(t, admitted[0], admitted[1], "the busy pod gets the larger share")
}

// unevenLoad runs four closed-loop clients for d, three on pod 0 and one on
// pod 1, on the quota route, and returns what each pod admitted.
func unevenLoad(t *testing.T, pods [2]*quotaEnv, d time.Duration) (admitted [2]int64, elapsed time.Duration) {
	return quotaLoad(t, pods, d, [2]int{3, 1}, nil)
}

// quotaLoad runs clients[i] closed-loop clients on pod i for d, on the
// quota route, and returns what each pod admitted; admittedAt, when set,
// is told of each admission (pod, time since the start).
func quotaLoad(t *testing.T, pods [2]*quotaEnv, d time.Duration, clients [2]int, admittedAt func(pod int, at time.Duration)) (admitted [2]int64, elapsed time.Duration) {
	const path = "/quota/v1/chat/completions"
	var ok [2]atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for pod, n := range clients {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < d {
					switch st := pods[pod].do(t, path); st {
					case http.StatusOK:
						ok[pod].Add(1)
						if admittedAt != nil {
							admittedAt(pod, time.Since(start))
						}
					case http.StatusTooManyRequests:
					default:
						t.Errorf("status %d", st)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	return [2]int64{ok[0].Load(), ok[1].Load()}, time.Since(start)
}

// quotaSidecar starts the real sidecar with quotaMeshRateLimits.
func quotaSidecar(t *testing.T, edit func(*server.Options)) *sidecar {
	return startSidecarWith(t, func(o *server.Options) {
		p := filepath.Join(t.TempDir(), "ratelimit.yaml")
		require.NoError(t, os.WriteFile(p, []byte(quotaMeshRateLimits), 0o600))
		o.RateLimitConfigPath = p
		if edit != nil {
			edit(o)
		}
	})
}

// newQuotaMesh starts the real sidecar with quotaMeshRateLimits and two pods
// of two worker VMs each (quotaMeshConfig).
func newQuotaMesh(t *testing.T) [2]*quotaEnv {
	sc := quotaSidecar(t, nil)
	return newQuotaMeshOn(t, [2]string{sc.addr, sc.addr})
}

// newQuotaMeshOn starts two pods of two worker VMs each (quotaMeshConfig),
// pod i's sidecar cluster pointing at sidecars[i].
func newQuotaMeshOn(t *testing.T, sidecars [2]string) [2]*quotaEnv {
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
	upstream := scenario.Upstream(t, relay)
	var pods [2]*quotaEnv
	for i := range pods {
		h, err := envoy.New(context.Background(), envoy.Config{
			Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
			PluginConfig: []byte(quotaMeshConfig), Workers: 2, Env: filterEnv(meshFilterToken),
			Clusters: map[string]string{"relay": upstream, "sidecar": sidecars[i]}, Routes: map[string]string{"relay.example.com": "relay"},
			StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
		})
		require.NoError(t, err)
		front := serveHost(t, h)
		pods[i] = &quotaEnv{host: h, url: front.URL}
	}
	return pods
}

// TestQuotaIdleShareMoves: two pods, one busy client each, share the limit
// about evenly; when one pod's client stops, its share moves to the other
// pod (its reports show no demand), which then admits nearly the whole
// limit. The admissions of the busy pod are counted per reporting interval
// (100 ms) after the other went idle, and logged.
func TestQuotaIdleShareMoves(t *testing.T) {
	pods := newQuotaMesh(t)
	const path = "/quota/v1/chat/completions"
	for _, p := range pods {
		require.Equal(t, http.StatusOK, p.do(t, path))
	}
	const interval = 100 * time.Millisecond // quotaMeshConfig's quotaReportMs
	// drive runs closed-loop clients on the busy pods for d and returns
	// what each admitted, and pod 0's admissions per reporting interval.
	// Three clients a pod keep its demand above the limit even when the
	// machine is loaded, so what a pod admits is bounded by its share, not
	// by how fast one client can ask.
	drive := func(d time.Duration, busy ...int) (admitted [2]int64, perInterval []int64, elapsed time.Duration) {
		var clients [2]int
		for _, pod := range busy {
			clients[pod] = 3
		}
		slots := make([]atomic.Int64, d/interval+1)
		admitted, elapsed = quotaLoad(t, pods, d, clients, func(pod int, at time.Duration) {
			if pod == 0 {
				slots[min(int(at/interval), len(slots)-1)].Add(1)
			}
		})
		for i := range slots {
			perInterval = append(perInterval, slots[i].Load())
		}
		return admitted, perInterval, elapsed
	}
	drive(time.Second, 0, 1) // shares settle on the demand
	both, _, el := drive(time.Second, 0, 1)
	t.Logf("both busy: admitted %v over %s", both, el)
	require.LessOrEqual(t, float64(both[0]), 0.6*40*el.Seconds()+2, "pod 0 holds about half the limit while pod 1 is busy")

	_, moving, _ := drive(time.Second, 0)
	t.Logf("pod 1 idle: pod 0's admissions per %s: %v", interval, moving)
	alone, _, el := drive(1500*time.Millisecond, 0)
	t.Logf("pod 1 idle, a second later: pod 0 admitted %d over %s, %.1f%% of the limit", alone[0], el, 100*float64(alone[0])/(40*el.Seconds()))
	require.GreaterOrEqual(t, float64(alone[0]), 0.75*40*el.Seconds(), "pod 1's idle share moved to pod 0 (it held about half)")
	require.LessOrEqual(t, float64(alone[0]), 1.02*40*el.Seconds()+20, "within the limit plus the bound")
}

// TestQuotaReplicasAccuracy: the uneven load of TestQuotaMeshAccuracy with
// each pod on its own sidecar replica, the two sharing a Redis: together
// they admit the limit, not the limit each, within the same bound.
func TestQuotaReplicasAccuracy(t *testing.T) {
	redisAddr := startRedis(t)
	var addrs [2]string
	for i := range addrs {
		addrs[i] = quotaSidecar(t, func(o *server.Options) {
			o.RedisAddr = redisAddr
			o.Quota = rlqs.Options{ShareInterval: 200 * time.Millisecond}
		}).addr
	}
	pods := newQuotaMeshOn(t, addrs)
	for _, p := range pods {
		require.Equal(t, http.StatusOK, p.do(t, "/quota/v1/chat/completions"))
	}
	unevenLoad(t, pods, 1500*time.Millisecond) // claims and shares settle on the demand
	admitted, elapsed := unevenLoad(t, pods, 3*time.Second)
	total := admitted[0] + admitted[1]
	allowed := 40 * elapsed.Seconds()
	t.Logf("admitted %v over %s: %d, %.1f%% of the limit's %.0f", admitted, elapsed, total, 100*float64(total)/allowed, allowed)
	require.LessOrEqual(t, float64(total), allowed*1.02+20, "within the limit plus the bound, across replicas")
	require.GreaterOrEqual(t, float64(total), 0.8*allowed, "most of the limit is used")
	require.Greater(t, admitted[0], admitted[1], "the busy pod gets the larger share")
}
