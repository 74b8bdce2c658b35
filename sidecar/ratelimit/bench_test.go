package ratelimit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// benchRequests are 1024 requests with a nested and a flat descriptor each,
// over 1024 users.
func benchRequests() []*rlsv3.RateLimitRequest {
	reqs := make([]*rlsv3.RateLimitRequest, 1024)
	for i := range reqs {
		reqs[i] = &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
			desc("route=chat", "model=llama"),
			desc("user=u" + strconv.Itoa(i)),
		}}
	}
	return reqs
}

func benchService(b *testing.B, st store.Store) *ratelimit.Service {
	cfg := loadTestConfig(b)
	fixed := time.Unix(t0+10, 0)
	return ratelimit.NewService(cfg, st, ratelimit.Options{
		Registerer: prometheus.NewRegistry(),
		Clock:      func() time.Time { return fixed },
	})
}

func runBench(b *testing.B, svc *ratelimit.Service) {
	reqs := benchRequests()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := svc.ShouldRateLimit(ctx, reqs[i&1023]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkShouldRateLimitMemory is one decision with two descriptors,
// called in process (no gRPC), on the memory store.
func BenchmarkShouldRateLimitMemory(b *testing.B) {
	runBench(b, benchService(b, store.NewMemory(store.MemoryOptions{})))
}

// BenchmarkShouldRateLimitRedis is the same decision on a local Redis.
func BenchmarkShouldRateLimitRedis(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Start(b)})
	defer client.Close()
	runBench(b, benchService(b, store.NewRedis(client, store.RedisOptions{Prefix: "bench:"})))
}

// TestShouldRateLimitAllocations holds the in-process decision to its
// allocation budget: the response (one block) and the store's results.
func TestShouldRateLimitAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts do not hold under the race detector (sync.Pool drops items at random)")
	}
	cfg := loadTestConfig(t)
	fixed := time.Unix(t0+10, 0)
	svc := ratelimit.NewService(cfg, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{
		Registerer: prometheus.NewRegistry(),
		Clock:      func() time.Time { return fixed },
	})
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
		desc("route=chat", "model=llama"),
		desc("user=alice"),
	}}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := svc.ShouldRateLimit(ctx, req); err != nil {
			t.Fatal(err)
		}
	})
	require.LessOrEqual(t, allocs, 2.5, "allocations per decision")
}
