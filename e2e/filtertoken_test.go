package e2e_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shepherd-mesh/shepherd/internal/promtext"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

// These tests hold issue 14's promise in the local mesh: only the filter,
// which proves itself with a token from its proxy's environment, reads the
// sidecar's credentials and moves its budgets, cooldowns and rollouts.

func meshFilterCtx(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), server.FilterTokenMetadata, token)
}

// sidecarMetrics is the sidecar's /metrics text.
func (sc *sidecar) metrics(t *testing.T) string {
	resp, err := http.Get("http://" + sc.srv.HTTPAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestMeshFilterToken: the filters (their token in the proxy's environment)
// get the sidecar's credential and budgets as before; a plain gRPC client in
// the mesh without the token gets PERMISSION_DENIED and not one byte of a
// credential, and its forged outcome reports — the issue's $40,000 against a
// $1 budget and a cooldown of the healthy baseline — change nothing.
func TestMeshFilterToken(t *testing.T) {
	m := newMeshEnv(t)
	until(t, 10*time.Second, "the sidecar's credential on both pods", func() bool {
		for i := 0; i < 4; i++ {
			require.Equal(t, http.StatusOK, m.do(t, i, "/budget/v1/chat/completions").status)
			if m.relay.Last().Header.Get("Authorization") != "Bearer "+meshRelayKey {
				return false
			}
		}
		return true
	})

	cc := m.sidecar.client(t)
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"no token", context.Background()},
		{"a guessed token", meshFilterCtx("mesh-filter-token-0123456788")},
		{"the admin token as the filter token", meshFilterCtx(meshAdminToken)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Raw bytes: whatever the sidecar answers, nothing holds the key.
			req, err := proto.Marshal(&policyv1.GetPolicyRequest{})
			require.NoError(t, err)
			var raw []byte
			err = cc.Invoke(tc.ctx, "/shepherd.policy.v1.PolicyService/GetPolicy", &req, &raw, grpc.ForceCodec(rawCodec{}))
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			require.Empty(t, raw)
			require.NotContains(t, err.Error(), meshRelayKey)

			wctx, cancel := context.WithTimeout(tc.ctx, 5*time.Second)
			defer cancel()
			stream, err := cc.NewStream(wctx, &grpc.StreamDesc{ServerStreams: true}, "/shepherd.policy.v1.PolicyService/WatchPolicy",
				grpc.ForceCodec(rawCodec{}))
			require.NoError(t, err)
			require.NoError(t, stream.SendMsg(&req))
			require.NoError(t, stream.CloseSend())
			err = stream.RecvMsg(&raw)
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
			require.Empty(t, raw)

			forged := make([]*policyv1.Outcome, 0, 410)
			for i := 0; i < 400; i++ {
				forged = append(forged, &policyv1.Outcome{Route: "budget", Provider: "relay", StatusCode: 200, CostMicroUsd: 100_000_000})
			}
			for i := 0; i < 10; i++ {
				forged = append(forged, &policyv1.Outcome{Route: "chat", Provider: "backup", StatusCode: 429,
					HasRatelimitRemaining: true, RetryAfterMs: 60_000})
			}
			_, err = policyv1.NewPolicyServiceClient(cc).ReportOutcomes(tc.ctx, &policyv1.ReportOutcomesRequest{Outcomes: forged})
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
		})
	}

	// The forged reports moved nothing: no spend, no cooldown, and the route
	// is served on every worker of both pods.
	m.sidecar.srv.Engine().Tick()
	pol := m.sidecar.srv.Engine().Policy()
	for _, b := range pol.Budgets {
		require.Zero(t, b.SpentMicroUsd, "%v", b)
		require.False(t, b.Exhausted)
	}
	for _, h := range pol.Health {
		require.Zero(t, h.CooldownUntilUnixMs, "%v", h)
	}
	for i := 0; i < 8; i++ {
		require.Equal(t, http.StatusOK, m.do(t, i, "/budget/v1/chat/completions").status)
	}
	body := m.sidecar.metrics(t)
	for _, method := range []string{"GetPolicy", "WatchPolicy", "ReportOutcomes"} {
		require.Contains(t, body, `shepherd_sidecar_filter_token_refused_total{method="`+method+`"} 3`+"\n")
	}
	require.NotContains(t, body, meshRelayKey)
	require.NotContains(t, body, meshFilterToken)
}

// TestMeshFilterTokenRotation: the sidecar accepts the old and the new token
// while pods move from one to the other (Kubernetes: a new Secret value, pods
// restarted). Requests flow through every step, with the rate limit service
// requiring the token too, on a fail-closed route, so a refused call would
// show as a 503; not one call is refused. After the change the old token is.
func TestMeshFilterTokenRotation(t *testing.T) {
	m := newMeshEnvWith(t, func(o *server.Options) { o.RateLimitRequireFilterToken = true })
	const next = "mesh-filter-token-rotated-9876"
	tokenFile := m.sidecar.opts.FilterTokenFile

	// Before a pod's VMs applied the sidecar's policy they send the config's
	// credential for the relay (none); wait for it as a rollout's readiness
	// gate would.
	waitPolicy(t, m.pods[0])
	waitPolicy(t, m.pods[1])
	var mu sync.Mutex       // statuses, wrongKey
	var podsMu sync.RWMutex // live; held for reading through each request
	live := []*pod{m.pods[0], m.pods[1]}
	statuses := map[int]int{}
	wrongKey := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			podsMu.RLock()
			p := live[i%len(live)]
			env := &meshEnv{pods: [2]*pod{p, p}}
			r := env.do(t, 0, "/strict/v1/chat/completions")
			key := m.relay.Last().Header.Get("Authorization")
			podsMu.RUnlock()
			mu.Lock()
			statuses[r.status]++
			if r.status == http.StatusOK && key != "Bearer "+meshRelayKey {
				wrongKey++
			}
			mu.Unlock()
		}
	}()
	served := func() int {
		mu.Lock()
		defer mu.Unlock()
		return statuses[http.StatusOK]
	}
	progress := func(what string) {
		n := served()
		until(t, 10*time.Second, what, func() bool { return served() >= n+20 })
	}
	progress("traffic on the old token")

	// 1. The sidecar accepts both.
	require.NoError(t, os.WriteFile(tokenFile, []byte(meshFilterToken+"\n"+next+"\n"), 0o600))
	require.NoError(t, m.sidecar.srv.Reload())
	// 2. A pod with the new token joins once both its VMs applied the
	// sidecar's policy.
	fresh := m.newPod(t, next)
	waitPolicy(t, fresh)
	podsMu.Lock()
	live = append(live, fresh)
	podsMu.Unlock()
	progress("traffic on both tokens")
	// 3. The old pods leave; 4. the sidecar drops the old token.
	podsMu.Lock()
	live = []*pod{fresh}
	podsMu.Unlock()
	m.pods[0].close()
	m.pods[1].close()
	require.NoError(t, os.WriteFile(tokenFile, []byte(next+"\n"), 0o600))
	require.NoError(t, m.sidecar.srv.Reload())
	progress("traffic on the new token")
	close(stop)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the traffic loop did not stop")
	}

	mu.Lock()
	require.Equal(t, map[int]int{http.StatusOK: statuses[http.StatusOK]}, statuses, "every request served through the rotation")
	require.Zero(t, wrongKey, "every request carried the sidecar's credential")
	mu.Unlock()
	body := m.sidecar.metrics(t)
	for _, method := range []string{"GetPolicy", "ShouldRateLimit"} {
		require.Contains(t, body, `shepherd_sidecar_filter_token_refused_total{method="`+method+`"} 0`+"\n")
	}
	// A report an old VM had on the wire as its pod left can reach the
	// sidecar after it dropped the old token: at most one per old VM (two
	// pods of two workers) is refused; no request depended on it.
	samples := promtext.Parse(strings.NewReader(body))
	refused, ok := promtext.Find(samples, "shepherd_sidecar_filter_token_refused_total", map[string]string{"method": "ReportOutcomes"})
	require.True(t, ok)
	require.LessOrEqual(t, refused, float64(4))

	// A pod still on the old token is refused now: fail-closed answers 503.
	old := m.newPod(t, meshFilterToken)
	env := &meshEnv{pods: [2]*pod{old, old}}
	r := env.do(t, 0, "/strict/v1/chat/completions")
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	require.True(t, strings.Contains(m.sidecar.metrics(t), `shepherd_sidecar_filter_token_refused_total{method="ShouldRateLimit"} 1`))
}

// waitPolicy waits until both worker VMs of p applied a sidecar policy.
func waitPolicy(t *testing.T, p *pod) {
	until(t, 10*time.Second, "the sidecar's policy on both VMs of a pod", func() bool {
		n := 0
		for _, line := range p.host.Logs() {
			if strings.Contains(line.Text, "sidecar policy version") {
				n++
			}
		}
		return n >= 2
	})
}
