package rlqs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// flaky is a Sharer that fails while down is set: a replica cut off from
// Redis.
type flaky struct {
	rlqs.Sharer
	down atomic.Bool
}

func (f *flaky) Publish(ctx context.Context, now time.Time, e []rlqs.ShareEntry) ([]rlqs.ShareClaim, error) {
	if f.down.Load() {
		return nil, errors.New("redis: connection refused")
	}
	return f.Sharer.Publish(ctx, now, e)
}

func (f *flaky) Release(ctx context.Context, keys []string) error {
	if f.down.Load() {
		return errors.New("redis: connection refused")
	}
	return f.Sharer.Release(ctx, keys)
}

// replicas are sidecar replicas sharing one real redis-server and one
// virtual clock; replica i publishes through shares[i].
type replicas struct {
	hs     []*harness
	shares []*flaky
	logs   []*testutil.SyncBuffer
	rdb    redis.UniversalClient
	prefix string
}

func newReplicas(t *testing.T, n int) *replicas {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	// A prefix of its own per run: entries of an earlier run (-count) are
	// still valid on the virtual clock, which starts at the same time.
	prefix := fmt.Sprintf("rlqs-test:%s:%d:", t.Name(), time.Now().UnixNano())
	clock := newFakeClock()
	r := &replicas{rdb: rdb, prefix: prefix}
	for i := 0; i < n; i++ {
		f := &flaky{Sharer: rlqs.NewRedisShare(rdb, prefix)}
		logs := &testutil.SyncBuffer{}
		r.shares, r.logs = append(r.shares, f), append(r.logs, logs)
		r.hs = append(r.hs, newHarnessOn(t, rlqs.Options{Share: f, Logger: slog.New(slog.NewTextHandler(logs, nil))}, clock))
	}
	// Every virtual second each replica publishes (in turn, as their
	// tickers would), and every client gets the revised assignments.
	r.hs[0].tick = func() {
		for _, h := range r.hs {
			_ = h.svc.Sync(context.Background())
		}
		for _, h := range r.hs {
			h.settle()
		}
	}
	return r
}

// assigned sums the clients' assigned rates for id.
func assigned(id map[string]string, loads ...*load) float64 {
	sum := 0.0
	for _, l := range loads {
		sum += max(0, l.c.rate(id))
	}
	return sum
}

// TestReplicasDivideTheLimitTogether: two replicas sharing Redis, a client
// on each asking 150/s and 50/s of a 100/s limit: they admit the limit
// between them, not the limit each, divided by demand.
func TestReplicasDivideTheLimitTogether(t *testing.T) {
	r := newReplicas(t, 2)
	a := &load{c: r.hs[0].dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
	b := &load{c: r.hs[1].dialEnvoy(t, "llm"), id: gpt, perSecond: 50, offset: 500 * time.Millisecond}
	r.hs[0].drive(10*time.Second, a, b)
	require.LessOrEqual(t, assigned(gpt, a, b), 100.0)

	fresh := a.c.fresh + b.c.fresh
	got := r.hs[0].drive(60*time.Second, a, b)
	fresh = a.c.fresh + b.c.fresh - fresh
	total := got[0] + got[1]
	t.Logf("admitted %v over 60s against a limit of 100/s; token buckets started full: %.0f tokens", got, fresh)
	require.LessOrEqual(t, float64(total), 6000+fresh, "the rates add up to the limit at most")
	require.InDelta(t, 6000, total, 0.02*6000, "admitted %v", got)
	require.InDelta(t, 0.75, float64(got[0])/float64(total), 0.05, "a's part of %v", got)
	require.InDelta(t, 75, a.c.rate(gpt), 5)
	require.InDelta(t, 25, b.c.rate(gpt), 5)

	// Two replicas' entries in the bucket's hash, and nothing else.
	keys, err := r.rdb.Keys(context.Background(), r.prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.EqualValues(t, 2, r.rdb.HLen(context.Background(), keys[0]).Val())
}

// TestReplicasMoveAnIdleShare: demand moves from one replica to the other
// and the share follows within a few publications; at every second the
// assignments of all the clients add up to the limit at most.
func TestReplicasMoveAnIdleShare(t *testing.T) {
	r := newReplicas(t, 2)
	a := &load{c: r.hs[0].dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
	b := &load{c: r.hs[1].dialEnvoy(t, "llm"), id: gpt, perSecond: 150, offset: 300 * time.Millisecond}
	c := &load{c: r.hs[1].dialEnvoy(t, "llm"), id: gpt, perSecond: 150, offset: 600 * time.Millisecond}
	sync := r.hs[0].tick
	over := 0.0
	r.hs[0].tick = func() {
		sync()
		over = max(over, assigned(gpt, a, b, c)-100)
	}
	r.hs[0].drive(6*time.Second, a, b, c)
	require.InDelta(t, 100.0/3, a.c.rate(gpt), 3)
	require.InDelta(t, 100.0/3, b.c.rate(gpt), 3)

	// b and c (replica 2) go idle: a (replica 1) takes nearly all within
	// three intervals.
	b.perSecond, c.perSecond = 0, 0
	r.hs[0].drive(3*time.Second, a, b, c)
	require.GreaterOrEqual(t, a.c.rate(gpt), 95.0)
	r.hs[0].drive(time.Second, a, b, c) // a's last revision started a full bucket
	fresh := a.c.fresh
	got := r.hs[0].drive(10*time.Second, a, b, c)
	require.LessOrEqual(t, float64(got[0]), 1000+a.c.fresh-fresh, "%v", got)
	require.InDelta(t, 1000, got[0], 0.02*1000, "a admits nearly the whole limit: %v", got)

	// And back.
	b.perSecond = 150
	r.hs[0].drive(3*time.Second, a, b, c)
	require.InDelta(t, 50, a.c.rate(gpt), 4)
	require.InDelta(t, 50, b.c.rate(gpt), 4)
	require.Zero(t, over, "assignments never added up to more than the limit")
}

// TestReplicaCutOffFromRedis: a replica that cannot publish keeps its claim
// while it still counts for the others, then divides the limit by the
// replicas it last saw; back in touch, it takes what the others left.
func TestReplicaCutOffFromRedis(t *testing.T) {
	r := newReplicas(t, 2)
	a := &load{c: r.hs[0].dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
	b := &load{c: r.hs[1].dialEnvoy(t, "llm"), id: gpt, perSecond: 50, offset: 500 * time.Millisecond}
	r.hs[0].drive(10*time.Second, a, b)
	require.InDelta(t, 25, b.c.rate(gpt), 5)

	r.shares[1].down.Store(true)
	r.hs[0].drive(2*time.Second, a, b)
	require.InDelta(t, 25, b.c.rate(gpt), 5, "the claim is kept while it counts")
	require.InDelta(t, 75, a.c.rate(gpt), 5)
	// The claim's time (its clients' TTL, 3 s, plus a publication) runs
	// out: the others drop it and b's replica divides the limit by the 2
	// replicas it saw. The documented bound: 1 + 1/2 of the limit.
	r.hs[0].drive(5*time.Second, a, b)
	require.Equal(t, 50.0, b.c.rate(gpt))
	require.Equal(t, 100.0, a.c.rate(gpt), "a's replica no longer counts b's")
	require.Equal(t, 1.0, metric(t, r.hs[1].reg, "shepherd_sidecar_rlqs_share_fallback_buckets"))
	require.Positive(t, metric(t, r.hs[1].reg, "shepherd_sidecar_rlqs_share_failures_total"))

	r.shares[1].down.Store(false)
	r.hs[0].drive(5*time.Second, a, b)
	require.LessOrEqual(t, assigned(gpt, a, b), 100.0)
	require.InDelta(t, 75, a.c.rate(gpt), 5)
	require.InDelta(t, 25, b.c.rate(gpt), 5)
	require.Equal(t, 0.0, metric(t, r.hs[1].reg, "shepherd_sidecar_rlqs_share_fallback_buckets"))
	require.Equal(t, 1, strings.Count(r.logs[1].String(), "cannot publish"), "logged once per outage: %s", r.logs[1])
	require.Equal(t, 1, strings.Count(r.logs[1].String(), "publishing this replica's demand again"))
	require.Empty(t, r.logs[0].String())
}

// TestReplicaShutdownReleasesItsClaims: a replica that shuts down gives
// its claims back, so the replica its clients reconnect to gives them their
// shares at its next publication instead of when the claims would lapse.
func TestReplicaShutdownReleasesItsClaims(t *testing.T) {
	for _, release := range []bool{true, false} {
		t.Run(fmt.Sprint("release=", release), func(t *testing.T) {
			r := newReplicas(t, 2)
			a := &load{c: r.hs[0].dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
			b := &load{c: r.hs[1].dialEnvoy(t, "llm"), id: gpt, perSecond: 50, offset: 500 * time.Millisecond}
			r.hs[0].drive(10*time.Second, a, b)
			require.InDelta(t, 75, a.c.rate(gpt), 5)

			gone := r.hs[1]
			gone.svc.Shutdown()
			if release {
				require.NoError(t, gone.svc.Release(context.Background()))
			}
			r.hs = r.hs[:1] // it publishes no more
			b = &load{c: r.hs[0].dialEnvoy(t, "llm"), id: gpt, perSecond: 50, offset: 500 * time.Millisecond}
			r.hs[0].drive(2*time.Second, a, b)
			if release {
				require.Equal(t, 100.0, assigned(gpt, a, b), "the whole limit at the next publication")
			} else {
				require.InDelta(t, 75, assigned(gpt, a, b), 5, "the gone replica's claim still counts")
			}
		})
	}
}

// TestReplicaThatNeverReachedRedis: a bucket first seen while Redis is down
// gets the limit divided by the replicas of the last successful round (the
// whole limit on a replica that never had one), rather than waiting.
func TestReplicaThatNeverReachedRedis(t *testing.T) {
	r := newReplicas(t, 1)
	r.shares[0].down.Store(true)
	a := &load{c: r.hs[0].dialEnvoy(t, "llm"), id: gpt, perSecond: 150}
	r.hs[0].drive(3*time.Second, a)
	require.Equal(t, 100.0, a.c.rate(gpt))
}

// TestRedisShareClaims drives the publication script directly: claims
// follow demand, never add up to more than the limit even when many
// replicas publish at once, a garbled or lapsed entry is dropped, a bucket
// holds at most MaxSharePeers replicas' entries, and the key expires.
func TestRedisShareClaims(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := fmt.Sprintf("rlqs-test:%s:%d:", t.Name(), time.Now().UnixNano())
	now := time.Unix(1_800_000_000, 0)
	entry := func(demand float64) []rlqs.ShareEntry {
		return []rlqs.ShareEntry{{Key: "bucket", Demand: demand, Limit: 100, Tolerance: 2, ValidFor: 3 * time.Second}}
	}
	publish := func(r *rlqs.RedisShare, at time.Time, e []rlqs.ShareEntry) rlqs.ShareClaim {
		t.Helper()
		c, err := r.Publish(ctx, at, e)
		require.NoError(t, err)
		require.Len(t, c, 1)
		return c[0]
	}

	a, b := rlqs.NewRedisShare(rdb, prefix), rlqs.NewRedisShare(rdb, prefix)
	require.Equal(t, rlqs.ShareClaim{Claim: 100, Peers: 1}, publish(a, now, entry(30)), "alone: the whole limit")
	require.Equal(t, rlqs.ShareClaim{Claim: 0, Peers: 2}, publish(b, now, entry(10)), "b's target is 25, but a holds it all")
	require.Equal(t, rlqs.ShareClaim{Claim: 75, Peers: 2}, publish(a, now, entry(30)), "a gives back")
	require.Equal(t, rlqs.ShareClaim{Claim: 25, Peers: 2}, publish(b, now, entry(10)), "b takes it")
	require.Equal(t, rlqs.ShareClaim{Claim: 25, Peers: 2}, publish(b, now, entry(10.5)), "within the tolerance: unchanged")

	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	ttl, err := rdb.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.InDelta(t, 6*time.Second, ttl, float64(time.Second), "the key expires unless published")

	// A garbled entry is dropped; b's lapses 3s after its publication.
	require.NoError(t, rdb.HSet(ctx, keys[0], "garbage", "not an entry").Err())
	require.Equal(t, rlqs.ShareClaim{Claim: 75, Peers: 2}, publish(a, now, entry(30)))
	require.False(t, rdb.HExists(ctx, keys[0], "garbage").Val())
	require.Equal(t, rlqs.ShareClaim{Claim: 100, Peers: 1}, publish(a, now.Add(3*time.Second), entry(30)), "b's entry lapsed")

	// Many replicas at once: the live claims never exceed the limit.
	prefix2 := prefix + "many:"
	var wg sync.WaitGroup
	shares := make([]*rlqs.RedisShare, rlqs.MaxSharePeers+1)
	for i := range shares {
		shares[i] = rlqs.NewRedisShare(rdb, prefix2)
	}
	for round := range 3 {
		for i, r := range shares[:rlqs.MaxSharePeers] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := r.Publish(ctx, now, entry(float64(1+(i*7+round)%13)))
				require.NoError(t, err)
			}()
		}
		wg.Wait()
		keys, err := rdb.Keys(ctx, prefix2+"*").Result()
		require.NoError(t, err)
		require.Len(t, keys, 1)
		var sum int64
		for _, v := range rdb.HVals(ctx, keys[0]).Val() {
			var until, claim int64
			var demand float64
			_, err := fmt.Sscanf(v, "%d %g %d", &until, &demand, &claim)
			require.NoError(t, err, v)
			sum += claim
		}
		require.LessOrEqual(t, sum, int64(100), "round %d", round)
	}
	require.Equal(t, rlqs.ShareClaim{Claim: -1, Peers: rlqs.MaxSharePeers + 1}, publish(shares[rlqs.MaxSharePeers], now, entry(5)),
		"no room for a 65th replica's entry")
}

// BenchmarkRedisSharePublish: one replica's publication of 1,000 buckets
// (one pipeline) to a local redis-server; ns/op / 1000 is the cost of a
// bucket per ShareInterval.
func BenchmarkRedisSharePublish(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(b)})
	b.Cleanup(func() { _ = rdb.Close() })
	r := rlqs.NewRedisShare(rdb, fmt.Sprintf("rlqs-bench:%d:", time.Now().UnixNano()))
	entries := make([]rlqs.ShareEntry, 1000)
	for i := range entries {
		entries[i] = rlqs.ShareEntry{Key: fmt.Sprint("bucket-", i), Demand: 10, Limit: 100, Tolerance: 2, ValidFor: 3 * time.Second}
	}
	now := time.Now()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Publish(context.Background(), now, entries); err != nil {
			b.Fatal(err)
		}
	}
}

// gate is a Sharer whose publications wait for release; entered tells when
// one has begun.
type gate struct {
	entered, release chan struct{}
}

func (g *gate) Release(context.Context, []string) error { return nil }

func (g *gate) Publish(ctx context.Context, _ time.Time, e []rlqs.ShareEntry) ([]rlqs.ShareClaim, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := make([]rlqs.ShareClaim, len(e))
	for i := range out {
		out[i] = rlqs.ShareClaim{Claim: int64(e[i].Limit), Peers: 1}
	}
	return out, nil
}

// TestReloadDuringPublication: a reload that removes a bucket's limit while
// its claim is being published leaves the bucket allowed, once the answer
// arrives.
func TestReloadDuringPublication(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := newHarness(t, rlqs.Options{Share: g})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := rlqsv3.NewRateLimitQuotaServiceClient(h.cc).StreamRateLimitQuotas(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Send(usage("llm", gpt)))
	select {
	case <-g.entered:
	case <-ctx.Done():
		t.Fatal("no publication")
	}
	cfg, err := ratelimit.ParseConfig("limits.yaml", []byte("domain: llm\ndescriptors: []\n"))
	require.NoError(t, err)
	h.svc.SetConfig(cfg)
	close(g.release)
	resp, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, typev3.RateLimitStrategy_ALLOW_ALL, resp.GetBucketAction()[0].GetQuotaAssignmentAction().GetRateLimitStrategy().GetBlanketRule())
}

// TestRedisShareOnCluster: on a two-node Redis Cluster (the script loaded
// on each node at its first NOSCRIPT), buckets spread over both nodes are
// divided as on one node, and released.
func TestRedisShareOnCluster(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.StartCluster(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := fmt.Sprintf("rlqs-test:%s:%d:", t.Name(), time.Now().UnixNano())
	now := time.Unix(1_800_000_000, 0)
	entries := func(demand float64) []rlqs.ShareEntry {
		e := make([]rlqs.ShareEntry, 40)
		for i := range e {
			e[i] = rlqs.ShareEntry{Key: fmt.Sprint("bucket-", i), Demand: demand, Limit: 100, Tolerance: 2, ValidFor: 3 * time.Second}
		}
		return e
	}
	a, b := rlqs.NewRedisShare(rdb, prefix), rlqs.NewRedisShare(rdb, prefix)
	var last []rlqs.ShareClaim
	for range 2 {
		_, err := a.Publish(ctx, now, entries(30))
		require.NoError(t, err)
		last, err = b.Publish(ctx, now, entries(10))
		require.NoError(t, err)
	}
	for _, c := range last {
		require.Equal(t, rlqs.ShareClaim{Claim: 25, Peers: 2}, c)
	}
	nodes := map[string]bool{}
	require.NoError(t, rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		keys, err := n.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			nodes[n.Options().Addr] = true
		}
		return err
	}))
	require.Len(t, nodes, 2, "the buckets are on both nodes")

	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprint("bucket-", i)
	}
	require.NoError(t, b.Release(ctx, keys))
	claims, err := a.Publish(ctx, now, entries(30))
	require.NoError(t, err)
	for _, c := range claims {
		require.Equal(t, rlqs.ShareClaim{Claim: 100, Peers: 1}, c, "b's entries are gone")
	}
}
