package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/mesh"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

// The mesh tests run two "pods" (two Envoy-faithful hosts, two worker VMs
// each, each with its own shared data) against one real shepherd-sidecar in
// this process, and fake providers.

const meshConfig = `{
  "models": {"gpt-4.1": {"input": 2.00, "output": 8.00}},
  "sidecar": {"cluster": "sidecar", "token": {"env": "SHEPHERD_FILTER_TOKEN"}, "timeoutMs": 1000, "policyPollMs": 200, "reportIntervalMs": 100},
  "providers": [
    {"name": "relay", "host": "relay.example.com", "cluster": "relay"},
    {"name": "backup", "host": "backup.example.com", "cluster": "backup"}
  ],
  "routes": [
    {"name": "strict", "match": {"pathPrefix": "/strict/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"failureMode": "closed"}},
    {"name": "limited", "match": {"pathPrefix": "/limited/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"failureMode": "closed"}},
    {"name": "tokens", "match": {"pathPrefix": "/tokens/"}, "provider": "relay",
     "globalLimits": {"tokens": true, "failureMode": "closed"}},
    {"name": "open", "match": {"pathPrefix": "/open/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"failureMode": "open", "timeoutMs": 300}},
    {"name": "chat", "match": {"pathPrefix": "/chat/"}, "streamUsage": false,
     "providers": [{"name": "backup", "weight": 100}, {"name": "relay", "weight": 0}],
     "canary": {"provider": "relay", "header": "x-canary", "stickyHeader": "x-user"}},
    {"name": "rollout", "match": {"pathPrefix": "/rollout/"}, "streamUsage": false,
     "providers": [{"name": "backup", "weight": 100}, {"name": "relay", "weight": 0}],
     "canary": {"provider": "relay"}},
    {"name": "budget", "match": {"pathPrefix": "/budget/"}, "provider": "relay", "streamUsage": false},
    {"name": "tenants", "match": {"pathPrefix": "/tenants/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"descriptors": ["route", "consumer"], "consumerHeader": "x-tenant"}},
    {"name": "crowd", "match": {"pathPrefix": "/crowd/"}, "provider": "relay", "streamUsage": false,
     "limits": {"requestsPerMinute": 1000, "consumerHeader": "x-tenant", "maxConsumers": 2},
     "globalLimits": {"descriptors": ["route", "consumer"], "failureMode": "closed"}},
    {"name": "workloads", "match": {"pathPrefix": "/workloads/"}, "provider": "relay", "streamUsage": false,
     "consumer": {"from": "workload"},
     "globalLimits": {"descriptors": ["route", "consumer"], "failureMode": "closed"}}
  ]
}`

// The sidecar's rate limits: 20 requests per minute on route limited (and on
// route open), 400 tokens per minute on route tokens.
const meshRateLimits = `
domain: shepherd
descriptors:
  - key: route
    value: limited
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: route
    value: open
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: route
    value: bench
    rate_limit: {unit: minute, requests_per_unit: 4000000000}
  - key: kind
    value: tokens
    descriptors:
      - key: route
        value: tokens
        rate_limit: {unit: minute, requests_per_unit: 400}
  - key: route
    value: crowd
    descriptors:
      - key: consumer
        rate_limit: {unit: minute, requests_per_unit: 1}
  - key: route
    value: workloads
    descriptors:
      - key: consumer
        rate_limit: {unit: minute, requests_per_unit: 3}
`

// chat is held at its first step (paused) for shepherdctl; rollout steps
// automatically with short intervals. The relay's credential comes from the
// sidecar; route budget and consumer team-broke have a budget of $1.
const meshSidecarConfig = `
providers:
  - name: backup
  - name: relay
    credential: {file: DIR/relay.key}
budgets:
  routes:
    - {route: budget, monthly_usd: 1}
  consumers:
    - {consumer: team-broke, monthly_usd: 1}
    - {consumer: "team-a/*", monthly_usd: 1}
canary:
  routes:
    - route: chat
      baseline: backup
      canary: relay
      steps: [10, 50, 100]
      paused: true
    - route: rollout
      baseline: backup
      canary: relay
      steps: [10, 50, 100]
      interval: 300ms
      min_requests: 5
      max_error_rate: 0.2
      max_p99_ratio: 0
health:
  min_requests: 1000
`

const (
	meshAdminToken  = "mesh-admin-token"
	meshRelayKey    = "sk-relay-from-the-sidecar"
	meshFilterToken = "mesh-filter-token-0123456789"
)

// filterEnv is a pod's proxy environment (Istio's vmConfig.env): the filter
// token its filter proves itself with.
func filterEnv(token string) map[string]string {
	return map[string]string{"SHEPHERD_FILTER_TOKEN": token}
}

// meshClock places every rate limit hit in one window, mid-minute, so no
// window boundary falls inside a test.
func meshClock() time.Time { return time.Date(2026, 11, 27, 10, 0, 30, 0, time.UTC) }

// sidecar is an in-process shepherd-sidecar that can be stopped and started
// again on the same address.
type sidecar struct {
	opts   server.Options
	srv    *server.Server
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startSidecar(t testing.TB) *sidecar { return startSidecarWith(t, nil) }

// startSidecarWith is startSidecar with options changed by edit; the sidecar
// accepts meshFilterToken from the file sc.opts.FilterTokenFile.
func startSidecarWith(t testing.TB, edit func(*server.Options)) *sidecar {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	write("relay.key", meshRelayKey)
	sc := &sidecar{opts: server.Options{
		GRPCListen:          "127.0.0.1:0",
		HTTPListen:          "127.0.0.1:0",
		ConfigPath:          write("sidecar.yaml", strings.ReplaceAll(meshSidecarConfig, "DIR", dir)),
		RateLimitConfigPath: write("ratelimit.yaml", meshRateLimits),
		AdminTokenFile:      write("token", meshAdminToken),
		FilterTokenFile:     write("filter-token", meshFilterToken),
		Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
		RateLimit:           server.RateLimitWith(ratelimit.Options{Clock: meshClock}),
		ReloadInterval:      -1,
		TickInterval:        50 * time.Millisecond,
		ShutdownTimeout:     200 * time.Millisecond,
	}}
	if edit != nil {
		edit(&sc.opts)
	}
	sc.start(t)
	sc.opts.GRPCListen = sc.addr // a restart comes back on the same address
	t.Cleanup(func() { sc.stop(t) })
	return sc
}

func (sc *sidecar) start(t testing.TB) {
	srv, err := server.New(context.Background(), sc.opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	sc.srv, sc.addr, sc.cancel, sc.done = srv, srv.GRPCAddr(), cancel, make(chan error, 1)
	go func() { sc.done <- srv.Serve(ctx) }()
}

func (sc *sidecar) stop(t testing.TB) {
	if sc.cancel == nil {
		return
	}
	sc.cancel()
	sc.cancel = nil
	require.NoError(t, testutil.Receive(t, sc.done, time.Minute))
}

func (sc *sidecar) client(t *testing.T) *grpc.ClientConn {
	cc, err := grpc.NewClient(sc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// pod is one Envoy with the filter: two worker VMs sharing their shared data.
type pod struct {
	host  *envoy.Host
	url   string
	close func() // idempotent
}

type meshEnv struct {
	sidecar         *sidecar
	pods            [2]*pod
	relay, backup   *fakeprovider.Provider
	relayN, backupN atomic.Int64
	clusters        map[string]string
}

func newMeshEnv(t *testing.T) *meshEnv { return newMeshEnvWith(t, nil) }

// newMeshEnvWith is newMeshEnv with the sidecar's options changed by edit.
func newMeshEnvWith(t *testing.T, edit func(*server.Options)) *meshEnv {
	m := &meshEnv{sidecar: startSidecarWith(t, edit)}
	m.relay = fakeprovider.New(fakeprovider.Options{Name: "relay"})
	m.backup = fakeprovider.New(fakeprovider.Options{Name: "backup"})
	m.clusters = map[string]string{
		"relay":   scenario.Upstream(t, m.relay),
		"backup":  scenario.Upstream(t, m.backup),
		"sidecar": m.sidecar.addr,
	}
	for i := range m.pods {
		m.pods[i] = m.newPod(t, meshFilterToken)
	}
	return m
}

// newPod starts one more pod whose proxy holds token.
func (m *meshEnv) newPod(t *testing.T, token string) *pod { return m.newPodAs(t, token, nil) }

// newPodAs starts one more pod whose proxy holds token and whose Envoy node
// has the metadata node (Istio's NAMESPACE, SERVICE_ACCOUNT ...).
func (m *meshEnv) newPodAs(t *testing.T, token string, node map[string]string) *pod {
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(meshConfig), Workers: 2, Env: filterEnv(token), NodeMetadata: nodeMetadata(t, node),
		Clusters: m.clusters, Routes: map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
		StatsTags: statsTags(), LogWriter: io.Discard, LogLevel: "trace", CompilationCache: compileCache,
	})
	require.NoError(t, err)
	front := httptest.NewServer(h)
	p := &pod{host: h, url: front.URL}
	var once sync.Once
	p.close = func() {
		once.Do(func() {
			front.Close()
			_ = h.Close(context.Background())
		})
	}
	t.Cleanup(p.close)
	return p
}

type meshResponse struct {
	status   int
	header   http.Header
	body     []byte
	provider string
	tokens   int64
}

// do sends a chat completion to path through pod i (mod 2).
func (m *meshEnv) do(t testing.TB, i int, path string, header ...string) meshResponse {
	req, err := http.NewRequest(http.MethodPost, m.pods[i%2].url+path,
		strings.NewReader(`{"model":"gpt-4.1","messages":[{"role":"user","content":"count the sheep of the mesh"}]}`))
	require.NoError(t, err)
	req.Host = "api.openai.com"
	req.Header.Set("content-type", "application/json")
	for k := 0; k+1 < len(header); k += 2 {
		req.Header.Set(header[k], header[k+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := meshResponse{status: resp.StatusCode, header: resp.Header, body: b, provider: resp.Header.Get("x-shepherd-provider")}
	if r.status == http.StatusOK {
		var out struct {
			Usage struct {
				Total int64 `json:"total_tokens"`
			} `json:"usage"`
		}
		require.NoError(t, json.Unmarshal(b, &out))
		r.tokens = out.Usage.Total
	}
	return r
}

// openAIError decodes an OpenAI error body.
func openAIError(t testing.TB, body []byte) (typ, code string) {
	var e struct {
		Error struct {
			Type string  `json:"type"`
			Code *string `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), "body %s", body)
	if e.Error.Code != nil {
		code = *e.Error.Code
	}
	return e.Error.Type, code
}

// until polls cond every 10 ms until it holds, failing after d.
func until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMeshGlobalRequestLimit: 20 requests per minute hold across two pods of
// two workers each: of 60 concurrent requests exactly 20 are admitted (the
// sidecar counts each check atomically), the rest get 429 in OpenAI's shape.
func TestMeshGlobalRequestLimit(t *testing.T) {
	m := newMeshEnv(t)
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				r := m.do(t, w+i, "/limited/v1/chat/completions")
				switch r.status {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
					typ, code := openAIError(t, r.body)
					require.Equal(t, "rate_limit_exceeded", typ)
					require.Equal(t, "rate_limit_exceeded", code)
					require.Equal(t, "20", r.header.Get("x-ratelimit-limit-requests"))
					require.Equal(t, "0", r.header.Get("x-ratelimit-remaining-requests"))
					require.Equal(t, "30", r.header.Get("retry-after"), "the end of the sidecar's window")
					require.Equal(t, "30000", r.header.Get("retry-after-ms"))
					require.Equal(t, "true", r.header.Get("x-should-retry"))
				default:
					t.Errorf("status %d: %s", r.status, r.body)
				}
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 20, ok.Load())
	require.EqualValues(t, 40, limited.Load())
	require.EqualValues(t, 20, m.relay.Requests(), "refused requests never reach the provider")
	var global uint64
	for _, p := range m.pods {
		global += counterOf(t, p.host, telemetry.Name(telemetry.RateLimited, telemetry.LabelRoute, "limited", telemetry.LabelKind, "global_requests"))
	}
	require.EqualValues(t, 40, global)
}

// TestMeshConsumersAreBounded (issue 15.6): the consumer descriptor goes
// through the route's bounded consumer set. With maxConsumers 2 and one
// request per consumer a minute in the sidecar, the first two tenants count
// on their own; every later tenant shares the overflow consumer's counter, so
// client header values cannot make new sidecar counters (and cannot escape a
// limit by inventing names).
func TestMeshConsumersAreBounded(t *testing.T) {
	m := newMeshEnv(t)
	for i, step := range []struct {
		tenant string
		status int
	}{
		{"a", http.StatusOK}, {"a", http.StatusTooManyRequests},
		{"b", http.StatusOK},
		{"c", http.StatusOK}, // the overflow's one request
		{"d", http.StatusTooManyRequests}, {"e", http.StatusTooManyRequests},
		{mesh.OverflowConsumer, http.StatusTooManyRequests},
		{"b", http.StatusTooManyRequests},
	} {
		r := m.do(t, 0, "/crowd/v1/chat/completions", "x-tenant", step.tenant)
		require.Equal(t, step.status, r.status, "step %d (%s): %s", i, step.tenant, r.body)
	}
}

// TestMeshGlobalTokenLimit: 400 tokens per minute hold across two pods through
// the usage each pod reports after its responses. Admission checks that the
// window is not over the limit; settlement charges the real usage. Requests
// go one at a time, each after the previous one's usage is settled, so the
// tolerance is one request's usage.
func TestMeshGlobalTokenLimit(t *testing.T) {
	m := newMeshEnv(t)
	rl := rlsv3.NewRateLimitServiceClient(m.sidecar.client(t))
	// settled reports whether the sidecar counted n tokens, asking without
	// counting: below the limit the remaining figure tells, above it the
	// over-limit code.
	settled := func(n int64) bool {
		resp, err := rl.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "shepherd",
			Descriptors: []*commonrl.RateLimitDescriptor{{
				Entries:    []*commonrl.RateLimitDescriptor_Entry{{Key: "kind", Value: "tokens"}, {Key: "route", Value: "tokens"}},
				HitsAddend: wrapperspb.UInt64(0),
			}}})
		require.NoError(t, err)
		if n > 400 {
			return resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT
		}
		return int64(400-resp.Statuses[0].LimitRemaining) >= n
	}
	var admitted, last int64
	for i := 0; ; i++ {
		require.Less(t, i, 100, "the token limit never refused")
		r := m.do(t, i, "/tokens/v1/chat/completions")
		if r.status == http.StatusTooManyRequests {
			typ, _ := openAIError(t, r.body)
			require.Equal(t, "rate_limit_exceeded", typ)
			require.Equal(t, "400", r.header.Get("x-ratelimit-limit-tokens"))
			require.Equal(t, "0", r.header.Get("x-ratelimit-remaining-tokens"))
			break
		}
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		require.Positive(t, r.tokens)
		admitted, last = admitted+r.tokens, r.tokens
		until(t, 5*time.Second, "settlement of request "+strconv.Itoa(i), func() bool { return settled(admitted) })
	}
	require.Greater(t, admitted, int64(400), "refused only once over the limit")
	require.LessOrEqual(t, admitted-last, int64(400), "admitted while under the limit only")
}

// TestMeshCanarySplit: `shepherdctl canary set` moves the observed split within
// 2 s on both pods, the override header sends a request to the canary, and a
// sticky client keeps its provider.
func TestMeshCanarySplit(t *testing.T) {
	m := newMeshEnv(t)
	ctl := buildShepherdctl(t)

	// The plan holds chat at its first step: 10% on the canary (relay). A
	// sticky user whose pick falls in the canary's tenth goes to the relay on
	// the VMs that have the policy, and to the backup (the config's 100%) on
	// those that do not yet: wait until every VM of both pods has it.
	canaryUser := ""
	for u := 0; canaryUser == ""; u++ {
		if mesh.StickyPick("user-"+strconv.Itoa(u))%10000 >= 9000 {
			canaryUser = "user-" + strconv.Itoa(u)
		}
	}
	until(t, 10*time.Second, "the policy's 10% canary weight on every VM", func() bool {
		for i := 0; i < 8; i++ { // every worker of both pods, round robin
			if m.do(t, i, "/chat/v1/chat/completions", "x-user", canaryUser).provider != "relay" {
				return false
			}
		}
		return true
	})
	counts := map[string]int{}
	for i := 0; i < 40; i++ {
		counts[m.do(t, i, "/chat/v1/chat/completions").provider]++
	}
	require.Greater(t, counts["backup"], 25, "10%% canary: %v", counts)

	// A sticky client stays on one provider on every worker of both pods, and
	// sticky clients spread over both providers.
	seen := map[string]bool{}
	for u := 0; u < 40; u++ {
		user := "user-" + strconv.Itoa(u)
		first := m.do(t, 0, "/chat/v1/chat/completions", "x-user", user).provider
		seen[first] = true
		for i := 1; i < 4; i++ {
			require.Equal(t, first, m.do(t, i, "/chat/v1/chat/completions", "x-user", user).provider, "user %s", user)
		}
	}
	require.Len(t, seen, 2, "40 users all on one provider at 10%%")

	r := m.do(t, 0, "/chat/v1/chat/completions", "x-canary", "true")
	require.Equal(t, "relay", r.provider, "the override header routes to the canary")
	require.Empty(t, m.relay.Last().Header.Get("x-canary"), "the override header is not forwarded")

	cmd := exec.Command(ctl, "canary", "set", "chat", "100%", "--addr", m.sidecar.addr)
	cmd.Env = append(os.Environ(), "SHEPHERDCTL_TOKEN="+meshAdminToken)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	set := time.Now()
	// Eight requests to each worker of both pods: a worker that still splits
	// 90/10 sends all eight to the canary once in 10^8, where two requests
	// each would let it pass once in a hundred polls, and the check below
	// would then fail.
	until(t, 2*time.Second, "all of chat on the canary after canary set", func() bool {
		for i := 0; i < 32; i++ {
			if m.do(t, i, "/chat/v1/chat/completions").provider != "relay" {
				return false
			}
		}
		return true
	})
	t.Logf("split changed on both pods %s after shepherdctl returned", time.Since(set).Round(time.Millisecond))
	for i := 0; i < 20; i++ {
		if p := m.do(t, i, "/chat/v1/chat/completions").provider; p != "relay" {
			pc := policyv1.NewPolicyServiceClient(m.sidecar.client(t))
			pol, _ := pc.GetPolicy(meshFilterCtx(meshFilterToken), &policyv1.GetPolicyRequest{})
			st, _ := pc.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
			t.Fatalf("request %d went to %s; policy %v; status %v", i, p, pol, st)
		}
	}
}

// TestMeshRollout: an automatic rollout advances on healthy canary traffic
// reported by both pods, and rolls back once the canary provider fails; the
// rollback reaches traffic.
func TestMeshRollout(t *testing.T) {
	m := newMeshEnv(t)
	pc := policyv1.NewPolicyServiceClient(m.sidecar.client(t))
	status := func() *policyv1.CanaryStatus {
		st, err := pc.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "rollout"})
		require.NoError(t, err)
		return st.Routes[0]
	}
	require.EqualValues(t, 1000, status().WeightBp)
	i := 0
	until(t, 20*time.Second, "the rollout advancing past its first step", func() bool {
		for k := 0; k < 10; k++ {
			r := m.do(t, i, "/rollout/v1/chat/completions")
			require.Equal(t, http.StatusOK, r.status)
			i++
		}
		return status().WeightBp >= 5000
	})
	st := status()
	require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_PROGRESSING, st.State)
	// The weight moving up is the advance; by the time it is read the next
	// analysis tick (50 ms) may already have judged the new step "wait".
	require.Contains(t, []string{"advance", "wait"}, st.LastVerdict)

	// The canary starts failing: every request it gets answers 503.
	faults := make([]fakeprovider.Fault, 1000)
	for k := range faults {
		faults[k].Status = http.StatusServiceUnavailable
	}
	m.relay.Script(faults...)
	until(t, 20*time.Second, "the rollout rolling back", func() bool {
		for k := 0; k < 10; k++ {
			m.do(t, i, "/rollout/v1/chat/completions")
			i++
		}
		return status().State == policyv1.RolloutState_ROLLOUT_STATE_ROLLED_BACK
	})
	require.EqualValues(t, 0, status().WeightBp)
	require.Equal(t, "rollback", status().LastVerdict)
	until(t, 5*time.Second, "traffic back on the baseline", func() bool {
		for k := 0; k < 8; k++ {
			if m.do(t, i+k, "/rollout/v1/chat/completions").provider != "backup" {
				return false
			}
		}
		return true
	})
}

// TestMeshSidecarDown: with the sidecar gone, fail-open routes serve every
// request under their local limits (counted) and fail-closed routes answer 503
// in OpenAI's shape; once it is back, global limits hold again without
// restarting anything.
func TestMeshSidecarDown(t *testing.T) {
	m := newMeshEnv(t)
	for i := 0; i < 4; i++ {
		require.Equal(t, http.StatusOK, m.do(t, i, "/limited/v1/chat/completions").status)
	}
	m.sidecar.stop(t)
	for i := 0; i < 40; i++ {
		r := m.do(t, i, "/open/v1/chat/completions")
		require.Equal(t, http.StatusOK, r.status, "fail open: %s", r.body)
		r = m.do(t, i, "/limited/v1/chat/completions")
		require.Equal(t, http.StatusServiceUnavailable, r.status, "fail closed")
		typ, code := openAIError(t, r.body)
		require.Equal(t, "server_error", typ)
		require.Equal(t, "ratelimit_unavailable", code)
		require.Equal(t, "false", r.header.Get("x-should-retry"), "an SDK does not retry it")
	}
	var failedOpen, failedClosed uint64
	for _, p := range m.pods {
		failedOpen += counterOf(t, p.host, telemetry.Name(telemetry.GlobalLimitFailures, telemetry.LabelRoute, "open", telemetry.LabelKind, "open"))
		failedClosed += counterOf(t, p.host, telemetry.Name(telemetry.GlobalLimitFailures, telemetry.LabelRoute, "limited", telemetry.LabelKind, "closed"))
	}
	require.EqualValues(t, 40, failedOpen)
	require.EqualValues(t, 40, failedClosed)

	m.sidecar.start(t)
	// The restarted sidecar counts from zero: the limit holds again once the
	// pods' connections are back.
	statuses := map[int]int{}
	until(t, 25*time.Second, "global limits enforced after the restart", func() bool {
		r := m.do(t, len(statuses), "/limited/v1/chat/completions")
		statuses[r.status]++
		return r.status == http.StatusTooManyRequests
	})
	require.Equal(t, 20, statuses[http.StatusOK], "20 admitted by the new sidecar, then refused: %v", statuses)
	for i := 0; i < 10; i++ {
		require.Equal(t, http.StatusTooManyRequests, m.do(t, i, "/limited/v1/chat/completions").status)
		require.Equal(t, http.StatusOK, m.do(t, i, "/open/v1/chat/completions").status)
	}
}

// TestMeshPolicy: what the sidecar's policy says reaches traffic on both pods:
// the relay's credential, a spent route or consumer budget (429
// insufficient_quota), and a provider's cooldown (its traffic moves to the
// route's other provider).
func TestMeshPolicy(t *testing.T) {
	m := newMeshEnv(t)
	pc := policyv1.NewPolicyServiceClient(m.sidecar.client(t))

	until(t, 10*time.Second, "the sidecar's credential on both pods", func() bool {
		for i := 0; i < 4; i++ {
			require.Equal(t, http.StatusOK, m.do(t, i, "/budget/v1/chat/completions").status)
			if m.relay.Last().Header.Get("Authorization") != "Bearer "+meshRelayKey {
				return false
			}
		}
		return true
	})

	require.Equal(t, http.StatusOK, m.do(t, 0, "/tenants/v1/chat/completions", "x-tenant", "team-broke").status)
	_, err := pc.ReportOutcomes(meshFilterCtx(meshFilterToken), &policyv1.ReportOutcomesRequest{Outcomes: []*policyv1.Outcome{
		{Route: "budget", Provider: "relay", StatusCode: 200, CostMicroUsd: 1_000_000},
		{Route: "tenants", Provider: "relay", Consumer: "team-broke", StatusCode: 200, CostMicroUsd: 1_000_000},
		{Route: "chat", Provider: "backup", StatusCode: 429, HasRatelimitRemaining: true, RatelimitRemaining: 0, RetryAfterMs: 60_000},
	}})
	require.NoError(t, err)
	refused := func(i int, path string, header ...string) bool {
		r := m.do(t, i, path, header...)
		if r.status != http.StatusTooManyRequests {
			return false
		}
		typ, code := openAIError(t, r.body)
		require.Equal(t, "insufficient_quota", typ)
		require.Equal(t, "insufficient_quota", code)
		require.Empty(t, r.header.Get("retry-after"), "waiting does not help")
		require.Equal(t, "false", r.header.Get("x-should-retry"), "an SDK does not retry it")
		return true
	}
	until(t, 5*time.Second, "spent budgets refused on both pods", func() bool {
		for i := 0; i < 4; i++ {
			if !refused(i, "/budget/v1/chat/completions") || !refused(i, "/tenants/v1/chat/completions", "x-tenant", "team-broke") {
				return false
			}
		}
		return true
	})
	require.Equal(t, http.StatusOK, m.do(t, 0, "/tenants/v1/chat/completions", "x-tenant", "team-ok").status,
		"other consumers go on")
	until(t, 5*time.Second, "the cooling baseline skipped on both pods", func() bool {
		for i := 0; i < 8; i++ {
			if m.do(t, i, "/chat/v1/chat/completions").provider != "relay" {
				return false
			}
		}
		return true
	})
	for _, p := range m.pods {
		for _, line := range p.host.Logs() {
			require.NotContains(t, line.Text, meshRelayKey)
		}
		var buf strings.Builder
		p.host.WritePrometheus(&buf)
		require.NotContains(t, buf.String(), meshRelayKey)
	}
}

// TestMeshWorkloadIdentity (issue 23): two workloads of different mesh
// identity share one sidecar; one sends the other's x-tenant value. Each
// still gets its own per-minute quota and budget: the consumer is the
// workload from its Envoy's node metadata, not the header.
func TestMeshWorkloadIdentity(t *testing.T) {
	m := newMeshEnv(t)
	m.pods[0] = m.newPodAs(t, meshFilterToken, map[string]string{"NAMESPACE": "team-a", "SERVICE_ACCOUNT": "chat", "WORKLOAD_NAME": "chat"})
	m.pods[1] = m.newPodAs(t, meshFilterToken, map[string]string{"NAMESPACE": "team-b", "SERVICE_ACCOUNT": "batch", "WORKLOAD_NAME": "batch"})
	const path = "/workloads/v1/chat/completions"
	forged := []string{"x-tenant", "team-b/batch"}

	// team-a's quota is 3 a minute in the sidecar, whatever it claims to be.
	for i := 0; i < 3; i++ {
		require.Equal(t, http.StatusOK, m.do(t, 0, path, forged...).status)
		require.Empty(t, m.relay.Last().Header.Get("x-tenant"), "the forged header does not reach the provider")
	}
	r := m.do(t, 0, path, forged...)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	typ, _ := openAIError(t, r.body)
	require.Equal(t, "rate_limit_exceeded", typ)
	// team-b's own quota is untouched by team-a's requests in its name.
	for i := 0; i < 2; i++ {
		require.Equal(t, http.StatusOK, m.do(t, 1, path).status)
	}

	// team-a's namespace budget spent: team-a is refused, team-b goes on.
	pc := policyv1.NewPolicyServiceClient(m.sidecar.client(t))
	_, err := pc.ReportOutcomes(meshFilterCtx(meshFilterToken), &policyv1.ReportOutcomesRequest{Outcomes: []*policyv1.Outcome{
		{Route: "workloads", Provider: "relay", Consumer: "team-a/chat", StatusCode: 200, CostMicroUsd: 1_000_000},
	}})
	require.NoError(t, err)
	until(t, 5*time.Second, "team-a's spent budget refused", func() bool {
		r := m.do(t, 0, path, "x-tenant", "team-b/batch")
		if r.status != http.StatusTooManyRequests {
			return false
		}
		typ, _ := openAIError(t, r.body)
		return typ == "insufficient_quota"
	})
	require.Equal(t, http.StatusOK, m.do(t, 1, path, "x-tenant", "team-a/chat").status, "team-b's budget and third request are its own")
	r = m.do(t, 1, path)
	require.Equal(t, http.StatusTooManyRequests, r.status)
	typ, _ = openAIError(t, r.body)
	require.Equal(t, "rate_limit_exceeded", typ, "team-b's quota, not team-a's budget")
}

func counterOf(t testing.TB, h *envoy.Host, name string) uint64 {
	m := &wasmMesh{host: h}
	return m.Counter(t, name)
}

// buildShepherdctl builds the operator CLI into the test's temporary directory.
func buildShepherdctl(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "shepherdctl")
	out, err := exec.Command("go", "build", "-o", path, "github.com/shepherd-mesh/shepherd/sidecar/cmd/shepherdctl").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return path
}

// rawCodec passes gRPC messages as bytes, for a sidecar that answers garbage.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestMeshSidecarSlowOrGarbage: a sidecar that answers past the check's
// deadline, or answers bytes that are no RateLimitResponse, is a failure like
// one that is down: 503 on fail-closed routes, the request served on
// fail-open ones.
func TestMeshSidecarSlowOrGarbage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(grpc.ServerStream) error
	}{
		{"slow", func(s grpc.ServerStream) error {
			select { // past every deadline the filter sets, until the call is cancelled
			case <-s.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return s.Context().Err()
		}},
		{"garbage", func(s grpc.ServerStream) error {
			msg := []byte{0xff, 0xff, 0xff, 0xff}
			return s.SendMsg(&msg)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, s grpc.ServerStream) error {
				var in []byte
				if err := s.RecvMsg(&in); err != nil {
					return err
				}
				return tc.answer(s)
			}))
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)

			relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
			h, err := envoy.New(context.Background(), envoy.Config{
				Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
				PluginConfig: []byte(meshConfig), Workers: 2, Env: filterEnv(meshFilterToken),
				Clusters:  map[string]string{"relay": scenario.Upstream(t, relay), "backup": scenario.Upstream(t, relay), "sidecar": lis.Addr().String()},
				Routes:    map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
				StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
			})
			require.NoError(t, err)
			front := serveHost(t, h)
			m := &meshEnv{pods: [2]*pod{{host: h, url: front.URL}, {host: h, url: front.URL}}}
			for i := 0; i < 2; i++ { // one request per worker VM
				r := m.do(t, i, "/open/v1/chat/completions")
				require.Equal(t, http.StatusOK, r.status, "fail open: %s", r.body)
				r = m.do(t, i, "/limited/v1/chat/completions")
				require.Equal(t, http.StatusServiceUnavailable, r.status, "fail closed: %s", r.body)
				typ, code := openAIError(t, r.body)
				require.Equal(t, "server_error", typ)
				require.Equal(t, "ratelimit_unavailable", code)
			}
			require.EqualValues(t, 2, counterOf(t, h, telemetry.Name(telemetry.GlobalLimitFailures, telemetry.LabelRoute, "open", telemetry.LabelKind, "open")))
		})
	}
}

// BenchmarkGlobalLimitRoundTrip measures what a global limit check adds to a
// request: each iteration sends the same request through a host whose route
// asks the sidecar (in this process, memory store, a limit that is never
// reached) and through one whose otherwise identical route does not, against
// the same loopback upstream, and reports the difference of their medians.
func BenchmarkGlobalLimitRoundTrip(b *testing.B) {
	sc := startSidecar(b)
	up := scenario.Upstream(b, okUpstream{})
	const cfg = `{
  "sidecar": {"cluster": "sidecar", "policyPollMs": 0, "reportIntervalMs": 0},
  "providers": [{"name": "p", "host": "p.example.com", "cluster": "p"}],
  "routes": [{"name": "bench", "match": {"pathPrefix": "/v1/"}, "provider": "p", "streamUsage": false GLOBAL}]
}`
	host := func(config string) *envoy.Host {
		h, err := envoy.New(context.Background(), envoy.Config{
			Module: module(b), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
			PluginConfig: []byte(config), Workers: 1,
			Clusters: map[string]string{"p": up, "sidecar": sc.addr}, DefaultCluster: "p",
			StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
		})
		require.NoError(b, err)
		b.Cleanup(func() { h.Close(context.Background()) })
		return h
	}
	global := host(strings.Replace(cfg, "GLOBAL", `, "globalLimits": {"failureMode": "closed"}`, 1))
	local := host(strings.Replace(cfg, "GLOBAL", "", 1))
	do := func(h *envoy.Host) time.Duration {
		r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		r.Host = "api.openai.com"
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(start)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
		return d
	}
	pairedMedians(b, "global", "local", func() time.Duration { return do(global) }, func() time.Duration { return do(local) })
}
