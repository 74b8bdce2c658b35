package server_test

import (
	"context"
	"io"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

// series finds one sample: its counter value, or a histogram's count.
func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if len(got) != len(labels) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount()), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func lbl(typ, service, method string, kv ...string) map[string]string {
	m := map[string]string{"grpc_type": typ, "grpc_service": service, "grpc_method": method}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestGRPCServerMetrics: every service the sidecar serves reports the
// standard gRPC server metrics, named and labelled as go-grpc-middleware's
// Prometheus provider does, refused calls and stream messages included.
func TestGRPCServerMetrics(t *testing.T) {
	opts, _ := withConfig(t)
	opts.RateLimitConfigPath = "testdata/ratelimit.yaml"
	r := start(t, opts)
	reg := r.srv.Registry()
	const (
		rls    = "envoy.service.ratelimit.v3.RateLimitService"
		policy = "shepherd.policy.v1.PolicyService"
		quota  = "envoy.service.rate_limit_quota.v3.RateLimitQuotaService"
	)

	// Every registered method's series exist before any call, at zero.
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{
		{"grpc_server_started_total", lbl("unary", rls, "ShouldRateLimit")},
		{"grpc_server_handled_total", lbl("server_stream", policy, "WatchPolicy", "grpc_code", "Unavailable")},
		{"grpc_server_msg_received_total", lbl("bidi_stream", quota, "StreamRateLimitQuotas")},
		{"grpc_server_handling_seconds", lbl("unary", "grpc.health.v1.Health", "Check")},
	} {
		v, ok := series(t, reg, tc.name, tc.labels)
		require.True(t, ok, "%s%v", tc.name, tc.labels)
		require.Zero(t, v)
	}

	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}}}}
	for i := 0; i < 2; i++ {
		_, err := rlsv3.NewRateLimitServiceClient(r.cc).ShouldRateLimit(context.Background(), req)
		require.NoError(t, err)
	}
	_, err := policyv1.NewPolicyServiceClient(r.cc).GetPolicy(context.Background(), &policyv1.GetPolicyRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	st, err := rlqsv3.NewRateLimitQuotaServiceClient(r.filterCC).StreamRateLimitQuotas(context.Background())
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		require.NoError(t, st.Send(aliceReport()))
		_, err := recvWithin(t, st)
		require.NoError(t, err)
	}
	require.NoError(t, st.CloseSend())
	_, err = recvWithin(t, st)
	require.ErrorIs(t, err, io.EOF)
	require.Eventually(t, func() bool {
		v, _ := series(t, reg, "grpc_server_handled_total", lbl("bidi_stream", quota, "StreamRateLimitQuotas", "grpc_code", "OK"))
		return v == 1
	}, 5*time.Second, time.Millisecond)

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"grpc_server_started_total", lbl("unary", rls, "ShouldRateLimit"), 2},
		{"grpc_server_handled_total", lbl("unary", rls, "ShouldRateLimit", "grpc_code", "OK"), 2},
		{"grpc_server_msg_received_total", lbl("unary", rls, "ShouldRateLimit"), 2},
		{"grpc_server_msg_sent_total", lbl("unary", rls, "ShouldRateLimit"), 2},
		{"grpc_server_handling_seconds", lbl("unary", rls, "ShouldRateLimit"), 2},
		{"grpc_server_handled_total", lbl("unary", policy, "GetPolicy", "grpc_code", "PermissionDenied"), 1},
		{"grpc_server_msg_sent_total", lbl("unary", policy, "GetPolicy"), 0},
		{"grpc_server_started_total", lbl("bidi_stream", quota, "StreamRateLimitQuotas"), 1},
		{"grpc_server_msg_received_total", lbl("bidi_stream", quota, "StreamRateLimitQuotas"), 3},
		{"grpc_server_msg_sent_total", lbl("bidi_stream", quota, "StreamRateLimitQuotas"), 3},
		{"grpc_server_handling_seconds", lbl("bidi_stream", quota, "StreamRateLimitQuotas"), 1},
	} {
		v, ok := series(t, reg, tc.name, tc.labels)
		require.True(t, ok, "%s%v", tc.name, tc.labels)
		require.Equal(t, tc.want, v, "%s%v", tc.name, tc.labels)
	}

	// A stream refused for its missing token is counted with its code.
	bad, err := rlqsv3.NewRateLimitQuotaServiceClient(r.cc).StreamRateLimitQuotas(context.Background())
	require.NoError(t, err)
	_ = bad.Send(aliceReport())
	_, err = recvWithin(t, bad)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	v, _ := series(t, reg, "grpc_server_handled_total", lbl("bidi_stream", quota, "StreamRateLimitQuotas", "grpc_code", "PermissionDenied"))
	require.Equal(t, 1.0, v)

	// And /metrics serves them.
	_, body := r.get(t, "/metrics")
	require.Contains(t, body, `grpc_server_handled_total{grpc_code="OK",grpc_method="ShouldRateLimit",grpc_service="envoy.service.ratelimit.v3.RateLimitService",grpc_type="unary"} 2`)
}
