package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shepherd-mesh/shepherd/internal/testutil"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

const (
	adminToken  = "adm1n-t0ken-value"
	filterToken = "f1lter-t0ken-0123456789"
)

type running struct {
	srv *server.Server
	cc  *grpc.ClientConn
	// client calls the policy API as the filter does: with the filter token
	// of opts.FilterTokenFile, when there is one. cc carries no token.
	client   policyv1.PolicyServiceClient
	filterCC *grpc.ClientConn
	logs     *testutil.SyncBuffer
	cancel   context.CancelFunc
	done     chan error
}

// start runs a server on loopback ports; opts' listen addresses and logger
// are filled in.
func start(t *testing.T, opts server.Options) *running {
	t.Helper()
	r := &running{logs: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	opts.GRPCListen = "127.0.0.1:0"
	opts.HTTPListen = "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.RateLimit == nil {
		opts.RateLimit = server.DefaultRateLimit
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = -1
	}
	srv, err := server.New(context.Background(), opts)
	require.NoError(t, err)
	r.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- srv.Serve(ctx) }()
	r.cc, err = grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if opts.FilterTokenFile != "" {
		path := opts.FilterTokenFile
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			path = filepath.Join(path, "SHEPHERD_FILTER_TOKEN") // a mounted Secret
		}
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		tok := strings.Fields(string(data))[0]
		dial = append(dial, withMetadata(server.FilterTokenMetadata, tok), withStreamMetadata(server.FilterTokenMetadata, tok))
	}
	r.filterCC, err = grpc.NewClient(srv.GRPCAddr(), dial...)
	require.NoError(t, err)
	r.client = policyv1.NewPolicyServiceClient(r.filterCC)
	t.Cleanup(func() { r.stop(t) })
	return r
}

// withMetadata adds key: value to every call of a connection.
func withMetadata(key, value string) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, key, value), method, req, reply, cc, opts...)
	})
}

// withStreamMetadata adds key: value to every stream of a connection.
func withStreamMetadata(key, value string) grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(metadata.AppendToOutgoingContext(ctx, key, value), desc, cc, method, opts...)
	})
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	require.NoError(t, testutil.Receive(t, r.done, time.Minute))
	r.cc.Close()
	r.filterCC.Close()
}

func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.srv.HTTPAddr() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func admin(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

const sidecarConfig = `
providers:
  - name: openai
    credential: {file: DIR/openai.key}
  - name: relay
canary:
  routes:
    - route: chat
      baseline: openai
      canary: relay
      steps: [10, 50, 100]
      interval: 1m
      min_requests: 5
`

// withConfig writes a config, a credential and a token into a temp dir.
func withConfig(t *testing.T) (server.Options, string) {
	dir := t.TempDir()
	writeFile(t, dir, "openai.key", "sk-live-abcdef123456")
	return server.Options{
		ConfigPath:      writeFile(t, dir, "sidecar.yaml", strings.ReplaceAll(sidecarConfig, "DIR", dir)),
		AdminTokenFile:  writeFile(t, dir, "token", adminToken+"\n"),
		FilterTokenFile: writeFile(t, dir, "filter-token", filterToken+"\n"),
	}, dir
}

func TestStartsWithNoConfig(t *testing.T) {
	r := start(t, server.Options{})

	code, body := r.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, _ = r.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code)
	code, body = r.get(t, "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "shepherd_sidecar_policy_version")
	require.Contains(t, body, "go_goroutines")

	h, err := healthpb.NewHealthClient(r.cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "shepherd.policy.v1.PolicyService"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.Status)
	h, err = healthpb.NewHealthClient(r.cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.ratelimit.v3.RateLimitService"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.Status)

	resp, err := rlsv3.NewRateLimitServiceClient(r.cc).ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
		Domain:      "any",
		Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
	})
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OK, resp.OverallCode)

	p, err := r.client.GetPolicy(context.Background(), &policyv1.GetPolicyRequest{})
	require.NoError(t, err)
	require.False(t, p.NotModified)
	require.Empty(t, p.Policy.Weights)

	st, err := r.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{})
	require.NoError(t, err)
	require.Empty(t, st.Routes)

	// Without a token file, admin calls are refused.
	_, err = r.client.PromoteCanary(admin("anything"), &policyv1.RouteRequest{Route: "chat"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	r.stop(t)
	require.Contains(t, r.logs.String(), "sidecar stopped")
}

// TestAdminTokenIsOptional: a token file that is missing (an optional
// Secret that does not exist) or empty lets the sidecar start and serve with
// admin calls refused; a token written later is picked up on reload.
func TestAdminTokenIsOptional(t *testing.T) {
	tests := []struct {
		name  string
		write func(path string)
	}{
		{"missing", func(string) {}},
		{"empty", func(p string) { require.NoError(t, os.WriteFile(p, nil, 0o600)) }},
		{"blank", func(p string) { require.NoError(t, os.WriteFile(p, []byte(" \n"), 0o600)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tokenFile := filepath.Join(dir, "admin", "token")
			require.NoError(t, os.MkdirAll(filepath.Dir(tokenFile), 0o700))
			tt.write(tokenFile)
			r := start(t, server.Options{AdminTokenFile: tokenFile})
			code, _ := r.get(t, "/readyz")
			require.Equal(t, http.StatusOK, code)
			_, err := r.client.GetPolicy(context.Background(), &policyv1.GetPolicyRequest{})
			require.NoError(t, err)
			_, err = r.client.PromoteCanary(admin("anything"), &policyv1.RouteRequest{Route: "chat"})
			require.Equal(t, codes.PermissionDenied, status.Code(err))
			require.Contains(t, err.Error(), "admin calls are disabled")
			require.Contains(t, r.logs.String(), "no admin token: admin calls are refused")

			writeFile(t, filepath.Dir(tokenFile), "token", "l8r-token")
			require.NoError(t, r.srv.Reload())
			_, err = r.client.PromoteCanary(admin("l8r-token"), &policyv1.RouteRequest{Route: "chat"})
			require.NotEqual(t, codes.PermissionDenied, status.Code(err))
			require.NotEqual(t, codes.Unauthenticated, status.Code(err))

			// Once a token is in force, a vanished file keeps it.
			require.NoError(t, os.Remove(tokenFile))
			require.ErrorContains(t, r.srv.Reload(), "is missing or empty")
			_, err = r.client.PromoteCanary(admin("anything"), &policyv1.RouteRequest{Route: "chat"})
			require.Equal(t, codes.PermissionDenied, status.Code(err))
			require.Contains(t, err.Error(), "admin token not accepted")
			require.NotContains(t, r.logs.String(), "l8r-token")
			r.stop(t)
		})
	}
}

func TestRateLimitFromConfig(t *testing.T) {
	r := start(t, server.Options{RateLimitConfigPath: "testdata/ratelimit.yaml"})
	rls := rlsv3.NewRateLimitServiceClient(r.cc)
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}}}}
	var codesSeen []rlsv3.RateLimitResponse_Code
	for i := 0; i < 3; i++ {
		resp, err := rls.ShouldRateLimit(context.Background(), req)
		require.NoError(t, err)
		codesSeen = append(codesSeen, resp.OverallCode)
	}
	require.Equal(t, []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}, codesSeen)

	// The rate limit service's metrics share the sidecar's registry.
	_, body := r.get(t, "/metrics")
	require.Contains(t, body, "shepherd_ratelimit_decisions_total")
	require.Contains(t, body, "shepherd_sidecar_policy_version")
}

func TestAdminTokenRequired(t *testing.T) {
	opts, _ := withConfig(t)
	r := start(t, opts)
	tests := []struct {
		name string
		ctx  context.Context
		code codes.Code
	}{
		{"missing", context.Background(), codes.Unauthenticated},
		{"not bearer", metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic eA=="), codes.Unauthenticated},
		{"wrong", admin("guess-0f-the-caller"), codes.PermissionDenied},
		{"right", admin(adminToken), codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := map[string]func() error{
				"set": func() error {
					_, err := r.client.SetCanaryWeight(tt.ctx, &policyv1.SetCanaryWeightRequest{Route: "chat", WeightBp: 100})
					return err
				},
				"pause": func() error {
					_, err := r.client.PauseRollout(tt.ctx, &policyv1.RouteRequest{Route: "chat"})
					if status.Code(err) == codes.FailedPrecondition {
						return nil // authorized; a manual weight cannot be paused
					}
					return err
				},
				"resume": func() error {
					_, err := r.client.ResumeRollout(tt.ctx, &policyv1.RouteRequest{Route: "chat"})
					return err
				},
				"promote": func() error {
					_, err := r.client.PromoteCanary(tt.ctx, &policyv1.RouteRequest{Route: "chat"})
					return err
				},
				"rollback": func() error {
					_, err := r.client.RollbackCanary(tt.ctx, &policyv1.RouteRequest{Route: "chat"})
					return err
				},
			}
			for name, call := range calls {
				err := call()
				require.Equal(t, tt.code, status.Code(err), "%s: %v", name, err)
				if err != nil {
					require.NotContains(t, err.Error(), "guess-0f-the-caller")
					require.NotContains(t, err.Error(), adminToken)
				}
			}
		})
	}
	// Status is read-only and open.
	_, err := r.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
	require.NoError(t, err)
	_, err = r.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "nope"})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = r.client.SetCanaryWeight(admin(adminToken), &policyv1.SetCanaryWeightRequest{Route: "chat", WeightBp: 10001})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.NotContains(t, r.logs.String(), adminToken)
}

func TestGetPolicyNotModifiedAndWatch(t *testing.T) {
	opts, _ := withConfig(t)
	r := start(t, opts)
	ctx := context.Background()
	first, err := r.client.GetPolicy(ctx, &policyv1.GetPolicyRequest{})
	require.NoError(t, err)
	require.NotNil(t, first.Policy)
	require.Equal(t, first.Version, first.Policy.Version)
	require.Equal(t, "Bearer sk-live-abcdef123456", first.Policy.Credentials[0].Value)

	again, err := r.client.GetPolicy(ctx, &policyv1.GetPolicyRequest{KnownVersion: first.Version})
	require.NoError(t, err)
	require.True(t, again.NotModified)
	require.Nil(t, again.Policy)
	require.Equal(t, first.Version, again.Version)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.client.WatchPolicy(wctx, &policyv1.WatchPolicyRequest{KnownVersion: first.Version})
	require.NoError(t, err)
	got := make(chan *policyv1.Policy, 1)
	go func() {
		p, err := stream.Recv()
		if err == nil {
			got <- p
		}
		close(got)
	}()
	_, err = r.client.SetCanaryWeight(admin(adminToken), &policyv1.SetCanaryWeightRequest{Route: "chat", WeightBp: 2500})
	require.NoError(t, err)
	var p *policyv1.Policy
	var ok bool
	select {
	case p, ok = <-got:
	case <-time.After(time.Minute):
		t.Fatal("the stream delivered nothing within a minute")
	}
	require.True(t, ok, "the stream delivers the change")
	require.Greater(t, p.Version, first.Version)
	require.Equal(t, uint32(2500), p.Weights[1].WeightBp)
	require.Equal(t, "relay", p.Weights[1].Provider)

	changed, err := r.client.GetPolicy(ctx, &policyv1.GetPolicyRequest{KnownVersion: first.Version})
	require.NoError(t, err)
	require.False(t, changed.NotModified)
	require.Equal(t, p.Version, changed.Version)
}

func TestWatchEndsOnShutdown(t *testing.T) {
	r := start(t, server.Options{ShutdownTimeout: time.Minute})
	stream, err := r.client.WatchPolicy(context.Background(), &policyv1.WatchPolicyRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.NoError(t, err, "the current policy first")
	r.stop(t) // returns only once the stream has ended
	_, err = stream.Recv()
	require.Equal(t, codes.Unavailable, status.Code(err))
}

func TestReportOutcomesDrivesCanary(t *testing.T) {
	opts, _ := withConfig(t)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	opts.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	opts.TickInterval = time.Hour // the test ticks by hand
	r := start(t, opts)
	var batch []*policyv1.Outcome
	for i := 0; i < 5; i++ {
		batch = append(batch, &policyv1.Outcome{Route: "chat", Provider: "relay", StatusCode: 200, LatencyMs: 80},
			&policyv1.Outcome{Route: "chat", Provider: "openai", StatusCode: 200, LatencyMs: 100})
	}
	resp, err := r.client.ReportOutcomes(context.Background(), &policyv1.ReportOutcomesRequest{Outcomes: batch})
	require.NoError(t, err)
	require.Equal(t, uint32(10), resp.Accepted)
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	r.srv.Engine().Tick()
	st, err := r.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
	require.NoError(t, err)
	require.Equal(t, uint32(5000), st.Routes[0].WeightBp)
	require.Equal(t, "advance", st.Routes[0].LastVerdict)

	_, body := r.get(t, "/metrics")
	require.Contains(t, body, `shepherd_sidecar_canary_weight_percent{canary="relay",route="chat"} 50`)
	require.Contains(t, body, `shepherd_sidecar_canary_verdicts_total{route="chat",verdict="advance"} 1`)
	require.NotContains(t, body, "sk-live")

	var big []*policyv1.Outcome
	for i := 0; i < 10001; i++ {
		big = append(big, &policyv1.Outcome{})
	}
	_, err = r.client.ReportOutcomes(context.Background(), &policyv1.ReportOutcomesRequest{Outcomes: big})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestReloadKeepsLastGood(t *testing.T) {
	opts, dir := withConfig(t)
	r := start(t, opts)
	good, err := os.ReadFile(opts.ConfigPath)
	require.NoError(t, err)

	writeFile(t, dir, "sidecar.yaml", strings.Replace(string(good), "steps: [10, 50, 100]", "steps: [50, 10]", 1))
	err = r.srv.Reload()
	require.Error(t, err)
	require.Contains(t, err.Error(), "canary.routes[0].steps[1]: must be greater than the previous step")
	require.Contains(t, r.logs.String(), "reload failed; keeping the last good config")
	st, err := r.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
	require.NoError(t, err)
	require.Equal(t, uint32(1000), st.Routes[0].WeightBp, "the old plan is in force")

	writeFile(t, dir, "sidecar.yaml", strings.Replace(string(good), "steps: [10, 50, 100]", "steps: [30, 100]", 1))
	require.NoError(t, r.srv.Reload())
	st, err = r.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
	require.NoError(t, err)
	require.Equal(t, uint32(3000), st.Routes[0].WeightBp)

	// A rotated admin token is picked up; the old one stops working.
	writeFile(t, dir, "token", "n3w-token")
	require.NoError(t, r.srv.Reload())
	_, err = r.client.PromoteCanary(admin(adminToken), &policyv1.RouteRequest{Route: "chat"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = r.client.PromoteCanary(admin("n3w-token"), &policyv1.RouteRequest{Route: "chat"})
	require.NoError(t, err)
	// An emptied token file keeps the last good token.
	writeFile(t, dir, "token", "")
	require.Error(t, r.srv.Reload())
	_, err = r.client.PromoteCanary(admin("n3w-token"), &policyv1.RouteRequest{Route: "chat"})
	require.NoError(t, err)
	require.NotContains(t, r.logs.String(), "n3w-token")
}

func TestReloadByPolling(t *testing.T) {
	opts, dir := withConfig(t)
	opts.RateLimitConfigPath = writeFile(t, dir, "rl.yaml", "domain: a\ndescriptors: []\n")
	opts.ReloadInterval = 10 * time.Millisecond
	r := start(t, opts)
	writeFile(t, dir, "rl.yaml", "domain: a\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 0}\n")
	rls := rlsv3.NewRateLimitServiceClient(r.cc)
	req := &rlsv3.RateLimitRequest{Domain: "a", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "x"}}}}}
	require.Eventually(t, func() bool {
		resp, err := rls.ShouldRateLimit(context.Background(), req)
		return err == nil && resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT
	}, 10*time.Second, 10*time.Millisecond)

	writeFile(t, dir, "rl.yaml", "domain: [broken\n")
	require.Eventually(t, func() bool {
		return strings.Contains(r.logs.String(), "reload failed; keeping the last good config")
	}, 10*time.Second, 10*time.Millisecond)
	resp, err := rls.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OVER_LIMIT, resp.OverallCode, "the last good rate limit config stays")
}

func TestInvalidConfigAtStartIsAnError(t *testing.T) {
	dir := t.TempDir()
	_, err := server.New(context.Background(), server.Options{
		GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		ConfigPath: writeFile(t, dir, "bad.yaml", "canary: {routes: [{route: x}]}\n"),
	})
	require.ErrorContains(t, err, "canary.routes[0].baseline: must not be empty")
}

func TestRestartKeepsWeights(t *testing.T) {
	opts, dir := withConfig(t)
	opts.StateFile = filepath.Join(dir, "state.json")
	r := start(t, opts)
	_, err := r.client.SetCanaryWeight(admin(adminToken), &policyv1.SetCanaryWeightRequest{Route: "chat", WeightBp: 4200})
	require.NoError(t, err)
	r.stop(t)

	r2 := start(t, opts)
	st, err := r2.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
	require.NoError(t, err)
	require.Equal(t, uint32(4200), st.Routes[0].WeightBp)
	require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_MANUAL, st.Routes[0].State)
	data, err := os.ReadFile(opts.StateFile)
	require.NoError(t, err)
	require.NotContains(t, string(data), "sk-live", "credentials are never saved")
}
