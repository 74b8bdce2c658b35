package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

func aliceReport() *rlqsv3.RateLimitQuotaUsageReports {
	return &rlqsv3.RateLimitQuotaUsageReports{Domain: "llm", BucketQuotaUsages: []*rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
		{BucketId: &rlqsv3.BucketId{Bucket: map[string]string{"user": "alice"}}, NumRequestsAllowed: 1}}}
}

// recvWithin receives one message or fails after 5s.
func recvWithin(t *testing.T, st rlqsv3.RateLimitQuotaService_StreamRateLimitQuotasClient) (*rlqsv3.RateLimitQuotaResponse, error) {
	t.Helper()
	type res struct {
		m   *rlqsv3.RateLimitQuotaResponse
		err error
	}
	c := make(chan res, 1)
	go func() {
		m, err := st.Recv()
		c <- res{m, err}
	}()
	select {
	case r := <-c:
		return r.m, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil, nil
	}
}

// TestRLQSSharesTheRateLimitConfig: the sidecar serves RLQS from the rate
// limit config it loads (and reloads), behind the filter token.
func TestRLQSSharesTheRateLimitConfig(t *testing.T) {
	opts, dir := withConfig(t)
	opts.RateLimitConfigPath = writeFile(t, dir, "ratelimit.yaml", "domain: llm\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 2}\n")
	r := start(t, opts)

	h, err := healthpb.NewHealthClient(r.cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: rlqsv3.RateLimitQuotaService_ServiceDesc.ServiceName})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.Status)

	// Without the filter token: refused, counted, nothing assigned.
	st, err := rlqsv3.NewRateLimitQuotaServiceClient(r.cc).StreamRateLimitQuotas(context.Background())
	require.NoError(t, err)
	_ = st.Send(aliceReport()) // io.EOF once the refusal has ended the stream; Recv tells why
	_, err = recvWithin(t, st)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	_, body := r.get(t, "/metrics")
	require.Contains(t, body, `shepherd_sidecar_filter_token_refused_total{method="StreamRateLimitQuotas"} 1`+"\n")

	// With it: 2 per hour is one token every 1800 s.
	st, err = rlqsv3.NewRateLimitQuotaServiceClient(r.filterCC).StreamRateLimitQuotas(context.Background())
	require.NoError(t, err)
	require.NoError(t, st.Send(aliceReport()))
	m, err := recvWithin(t, st)
	require.NoError(t, err)
	tb := m.GetBucketAction()[0].GetQuotaAssignmentAction().GetRateLimitStrategy().GetTokenBucket()
	require.Equal(t, uint32(1), tb.GetTokensPerFill().GetValue())
	require.Equal(t, 1800*time.Second, tb.GetFillInterval().AsDuration())

	// A reload of the rate limit config is pushed at once.
	writeFile(t, dir, "ratelimit.yaml", "domain: llm\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 4}\n")
	require.NoError(t, r.srv.Reload())
	m, err = recvWithin(t, st)
	require.NoError(t, err)
	tb = m.GetBucketAction()[0].GetQuotaAssignmentAction().GetRateLimitStrategy().GetTokenBucket()
	require.Equal(t, 900*time.Second, tb.GetFillInterval().AsDuration())

	// Shutdown ends the stream with UNAVAILABLE (Envoy reconnects) instead
	// of holding the drain.
	r.stop(t)
	_, err = recvWithin(t, st)
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
}

// TestRLQSOpenWithoutFilterToken: with no filter token configured the
// service is open, as the policy API is.
func TestRLQSOpenWithoutFilterToken(t *testing.T) {
	r := start(t, server.Options{RateLimitConfigPath: "testdata/ratelimit.yaml"})
	st, err := rlqsv3.NewRateLimitQuotaServiceClient(r.cc).StreamRateLimitQuotas(context.Background())
	require.NoError(t, err)
	require.NoError(t, st.Send(aliceReport()))
	m, err := recvWithin(t, st)
	require.NoError(t, err)
	require.NotNil(t, m.GetBucketAction()[0].GetQuotaAssignmentAction().GetRateLimitStrategy().GetTokenBucket())
}

// TestRLQSReplicasShareTheLimitThroughRedis: two sidecars on one Redis
// divide a limit between their clients instead of each handing out all of
// it: one client on each, equal demand, 50/s each of 100/s.
func TestRLQSReplicasShareTheLimitThroughRedis(t *testing.T) {
	dir := t.TempDir()
	opts := server.Options{
		RedisAddr:           redistest.Start(t),
		RedisKey:            "test:" + t.Name(),
		RateLimitConfigPath: writeFile(t, dir, "ratelimit.yaml", "domain: llm\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 100}\n"),
		Quota:               rlqs.Options{ShareInterval: 200 * time.Millisecond},
	}
	user := fmt.Sprintf("u-%d", time.Now().UnixNano()) // entries outlive the test in Redis
	report := &rlqsv3.RateLimitQuotaUsageReports{Domain: "llm", BucketQuotaUsages: []*rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
		{BucketId: &rlqsv3.BucketId{Bucket: map[string]string{"user": user}}, NumRequestsAllowed: 1}}}

	// The last tokens_per_fill each stream was sent (-1 none yet, 0 deny all).
	var rates [2]atomic.Int64
	for i := range 2 {
		rates[i].Store(-1)
		r := start(t, opts)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		st, err := rlqsv3.NewRateLimitQuotaServiceClient(r.cc).StreamRateLimitQuotas(ctx)
		require.NoError(t, err)
		require.NoError(t, st.Send(report))
		go func() {
			for {
				m, err := st.Recv()
				if err != nil {
					return
				}
				for _, a := range m.GetBucketAction() {
					s := a.GetQuotaAssignmentAction().GetRateLimitStrategy()
					rates[i].Store(int64(s.GetTokenBucket().GetTokensPerFill().GetValue()))
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return rates[0].Load() == 50 && rates[1].Load() == 50 }, 5*time.Second, 10*time.Millisecond,
		"rates %d and %d", rates[0].Load(), rates[1].Load())
}
