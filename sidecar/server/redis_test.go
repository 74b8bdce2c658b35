package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// TestRedisKeepsStateAndCountersAcrossRestart runs two sidecars one after
// the other on the same Redis: the second sees the first's canary weight and
// rate limit counts.
func TestRedisKeepsStateAndCountersAcrossRestart(t *testing.T) {
	addr := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	key := "test:" + t.Name()
	require.NoError(t, c.Del(context.Background(), key).Err())

	opts, _ := withConfig(t)
	opts.RedisAddr = addr
	opts.RedisKey = key
	opts.StateFile = "" // ignored with Redis
	opts.RateLimitConfigPath = "testdata/ratelimit.yaml"
	user := fmt.Sprintf("u-%s-%d", t.Name(), time.Now().UnixNano()) // counters outlive the test in Redis
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: user}}}}}

	r := start(t, opts)
	_, err := r.client.SetCanaryWeight(admin(adminToken), &policyv1.SetCanaryWeightRequest{Route: "chat", WeightBp: 7700})
	require.NoError(t, err)
	resp, err := rlsv3.NewRateLimitServiceClient(r.cc).ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OK, resp.OverallCode)
	r.stop(t)

	fields, err := c.HKeys(context.Background(), key).Result()
	require.NoError(t, err)
	require.Contains(t, fields, "rollout/chat")

	r2 := start(t, opts)
	st, err := r2.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
	require.NoError(t, err)
	require.Equal(t, uint32(7700), st.Routes[0].WeightBp)
	rls := rlsv3.NewRateLimitServiceClient(r2.cc)
	resp, err = rls.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OK, resp.OverallCode, "second hit of 2 per hour")
	resp, err = rls.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OVER_LIMIT, resp.OverallCode, "the first sidecar's hit counted")
}
