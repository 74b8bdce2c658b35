package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// stores returns a fresh Memory store, and Redis stores on one server and
// on a two-node cluster with a prefix of the test's own, so that cases do
// not see each other's counters.
func stores(t *testing.T) map[string]store.Store {
	t.Helper()
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.StartCluster(t)})
	t.Cleanup(func() { _ = cc.Close() })
	mem := store.NewMemory(store.MemoryOptions{})
	rs := store.NewRedis(client, store.RedisOptions{Prefix: "test:" + t.Name() + ":"})
	rc := store.NewRedis(cc, store.RedisOptions{Prefix: "test:" + t.Name() + ":"})
	return map[string]store.Store{"memory": mem, "redis": rs, "redis-cluster": rc}
}

func hit(key string, hits uint64, start, secs int64) store.Hit {
	return store.Hit{Key: []byte(key), Hits: hits, Window: store.Window{Start: start, Seconds: secs}}
}

func TestStoresAgree(t *testing.T) {
	type step struct {
		hits []store.Hit
		want []store.Result
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{
			name: "counts accumulate within a window",
			steps: []step{
				{[]store.Hit{hit("a", 1, 60, 60)}, []store.Result{{Count: 1, Reset: 120}}},
				{[]store.Hit{hit("a", 1, 60, 60)}, []store.Result{{Count: 2, Reset: 120}}},
				{[]store.Hit{hit("a", 5, 60, 60)}, []store.Result{{Count: 7, Reset: 120}}},
			},
		},
		{
			name: "a new window starts from zero",
			steps: []step{
				{[]store.Hit{hit("a", 3, 60, 60)}, []store.Result{{Count: 3, Reset: 120}}},
				{[]store.Hit{hit("a", 1, 120, 60)}, []store.Result{{Count: 1, Reset: 180}}},
			},
		},
		{
			name: "zero hits reads without counting",
			steps: []step{
				{[]store.Hit{hit("a", 0, 0, 1)}, []store.Result{{Count: 0, Reset: 1}}},
				{[]store.Hit{hit("a", 2, 0, 1)}, []store.Result{{Count: 2, Reset: 1}}},
				{[]store.Hit{hit("a", 0, 0, 1)}, []store.Result{{Count: 2, Reset: 1}}},
			},
		},
		{
			name: "keys of one decision are independent",
			steps: []step{
				{
					[]store.Hit{hit("a", 1, 0, 3600), hit("b", 4, 0, 86400), hit("c", 0, 0, 1)},
					[]store.Result{{Count: 1, Reset: 3600}, {Count: 4, Reset: 86400}, {Count: 0, Reset: 1}},
				},
				{
					[]store.Hit{hit("b", 1, 0, 86400), hit("a", 1, 0, 3600)},
					[]store.Result{{Count: 5, Reset: 86400}, {Count: 2, Reset: 3600}},
				},
			},
		},
		{
			name: "the same key twice in one decision counts twice",
			steps: []step{
				{
					[]store.Hit{hit("a", 1, 0, 60), hit("a", 1, 0, 60)},
					[]store.Result{{Count: 1, Reset: 60}, {Count: 2, Reset: 60}},
				},
			},
		},
		{
			name: "keys with bytes that need no escaping",
			steps: []step{
				{[]store.Hit{hit("dom|k=v|x=\x00y", 2, 0, 60)}, []store.Result{{Count: 2, Reset: 60}}},
				{[]store.Hit{hit("dom|k=v|x=\x00z", 1, 0, 60)}, []store.Result{{Count: 1, Reset: 60}}},
			},
		},
		{
			name: "one decision spread over cluster nodes",
			steps: []step{
				{
					[]store.Hit{hit("a", 1, 0, 60), hit("b", 2, 0, 60), hit("c", 3, 0, 60), hit("d", 4, 0, 60), hit("e", 5, 0, 60), hit("f", 6, 0, 60)},
					[]store.Result{{Count: 1, Reset: 60}, {Count: 2, Reset: 60}, {Count: 3, Reset: 60}, {Count: 4, Reset: 60}, {Count: 5, Reset: 60}, {Count: 6, Reset: 60}},
				},
				{
					[]store.Hit{hit("f", 1, 0, 60), hit("e", 1, 0, 60), hit("d", 1, 0, 60), hit("c", 1, 0, 60), hit("b", 1, 0, 60), hit("a", 1, 0, 60)},
					[]store.Result{{Count: 7, Reset: 60}, {Count: 6, Reset: 60}, {Count: 5, Reset: 60}, {Count: 4, Reset: 60}, {Count: 3, Reset: 60}, {Count: 2, Reset: 60}},
				},
			},
		},
		{
			name:  "an empty decision",
			steps: []step{{[]store.Hit{}, []store.Result{}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, st := range stores(t) {
				for i, s := range tc.steps {
					got, err := st.Apply(context.Background(), s.hits)
					require.NoError(t, err, "%s step %d", name, i)
					require.Equal(t, s.want, got, "%s step %d", name, i)
				}
			}
		})
	}
}

func TestStoresConcurrentHitsAreAllCounted(t *testing.T) {
	for name, st := range stores(t) {
		const workers, each = 8, 50
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := st.Apply(context.Background(), []store.Hit{hit("shared", 1, 0, 60)})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		got, err := st.Apply(context.Background(), []store.Hit{hit("shared", 0, 0, 60)})
		require.NoError(t, err)
		require.Equal(t, uint64(workers*each), got[0].Count, name)
	}
}

func TestStoresClosed(t *testing.T) {
	for name, st := range stores(t) {
		require.NoError(t, st.Close())
		_, err := st.Apply(context.Background(), []store.Hit{hit("a", 1, 0, 1)})
		require.ErrorIs(t, err, store.ErrClosed, name)
	}
}

func TestRedisKeyLayoutAndExpiry(t *testing.T) {
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	rs := store.NewRedis(client, store.RedisOptions{Prefix: "layout:"})
	ctx := context.Background()

	_, err := rs.Apply(ctx, []store.Hit{hit("dom|k=v", 3, 1800, 60)})
	require.NoError(t, err)
	require.Equal(t, "layout:dom|k=v:1800", rs.Key([]byte("dom|k=v"), store.Window{Start: 1800, Seconds: 60}))
	v, err := client.Get(ctx, "layout:dom|k=v:1800").Int()
	require.NoError(t, err)
	require.Equal(t, 3, v)
	ttl, err := client.PTTL(ctx, "layout:dom|k=v:1800").Result()
	require.NoError(t, err)
	require.Greater(t, ttl.Milliseconds(), int64(0))
	require.LessOrEqual(t, ttl.Milliseconds(), int64(61_000))
}

func TestRedisRecoversFromScriptFlush(t *testing.T) {
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	rs := store.NewRedis(client, store.RedisOptions{Prefix: "flush:"})
	ctx := context.Background()

	for want := uint64(1); want <= 3; want++ {
		require.NoError(t, client.ScriptFlush(ctx).Err())
		got, err := rs.Apply(ctx, []store.Hit{hit("a", 1, 0, 60), hit("b", 2, 0, 60)})
		require.NoError(t, err)
		require.Equal(t, []store.Result{{Count: want, Reset: 60}, {Count: 2 * want, Reset: 60}}, got)
	}
}

func TestRedisWrongTypeIsAnError(t *testing.T) {
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	rs := store.NewRedis(client, store.RedisOptions{Prefix: "wrongtype:"})
	ctx := context.Background()
	require.NoError(t, client.LPush(ctx, "wrongtype:a:0", "x").Err())
	_, err := rs.Apply(ctx, []store.Hit{hit("a", 1, 0, 60)})
	require.ErrorContains(t, err, "redis store: hit 0: WRONGTYPE")
}

func TestRedisUnreachableIsAnError(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer client.Close()
	rs := store.NewRedis(client, store.RedisOptions{})
	_, err := rs.Apply(context.Background(), []store.Hit{hit("a", 1, 0, 60)})
	require.ErrorContains(t, err, "redis store: ")
}

func TestMemoryBoundEvictsExpiredFirst(t *testing.T) {
	m := store.NewMemory(store.MemoryOptions{MaxKeys: 4, Shards: 1})
	ctx := context.Background()
	// Four live counters fill the store; "old" has the shortest window.
	_, err := m.Apply(ctx, []store.Hit{hit("old", 1, 0, 1), hit("k1", 5, 0, 60), hit("k2", 1, 0, 60), hit("k3", 1, 0, 60)})
	require.NoError(t, err)
	require.Equal(t, 4, m.Len())
	// A new key whose window starts after "old" ended: "old" is dropped.
	_, err = m.Apply(ctx, []store.Hit{hit("k4", 1, 30, 60)})
	require.NoError(t, err)
	require.Equal(t, 4, m.Len())
	require.Equal(t, uint64(1), m.Evictions())
	got, err := m.Apply(ctx, []store.Hit{hit("k1", 0, 0, 60), hit("old", 0, 0, 1)})
	require.NoError(t, err)
	require.Equal(t, uint64(5), got[0].Count, "a live counter survives")
	require.Equal(t, uint64(0), got[1].Count, "the expired counter is gone")
}

func TestMemoryBoundEvictsLeastRecentlyUsed(t *testing.T) {
	m := store.NewMemory(store.MemoryOptions{MaxKeys: 3, Shards: 1})
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		_, err := m.Apply(ctx, []store.Hit{hit(k, 1, 0, 60)})
		require.NoError(t, err)
	}
	// Touch a and c so that b is the least recently used.
	_, err := m.Apply(ctx, []store.Hit{hit("a", 1, 0, 60), hit("c", 1, 0, 60)})
	require.NoError(t, err)
	_, err = m.Apply(ctx, []store.Hit{hit("d", 1, 0, 60)})
	require.NoError(t, err)
	require.Equal(t, 3, m.Len())
	got, err := m.Apply(ctx, []store.Hit{hit("a", 0, 0, 60), hit("b", 0, 0, 60), hit("c", 0, 0, 60), hit("d", 0, 0, 60)})
	require.NoError(t, err)
	require.Equal(t, []uint64{2, 0, 2, 1}, []uint64{got[0].Count, got[1].Count, got[2].Count, got[3].Count})
}

func TestMemoryDropsExpiredCountersBeforeFilling(t *testing.T) {
	m := store.NewMemory(store.MemoryOptions{MaxKeys: 1 << 20, Shards: 1})
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		_, err := m.Apply(ctx, []store.Hit{hit(fmt.Sprintf("old%d", i), 1, 0, 1)})
		require.NoError(t, err)
	}
	require.Equal(t, 1000, m.Len())
	// New keys in a later window sweep the expired ones away as they come.
	for i := 0; i < 2000; i++ {
		_, err := m.Apply(ctx, []store.Hit{hit(fmt.Sprintf("new%d", i), 1, 100, 60)})
		require.NoError(t, err)
	}
	require.Less(t, m.Len(), 3000-500, "most expired counters are gone")
	require.Equal(t, uint64(0), m.Evictions(), "nothing was evicted to make room")
	got, err := m.Apply(ctx, []store.Hit{hit("new0", 0, 100, 60)})
	require.NoError(t, err)
	require.Equal(t, uint64(1), got[0].Count, "live counters stay")
}

func TestMemoryStaysBounded(t *testing.T) {
	m := store.NewMemory(store.MemoryOptions{MaxKeys: 256, Shards: 8})
	ctx := context.Background()
	for i := 0; i < 5000; i++ {
		_, err := m.Apply(ctx, []store.Hit{hit(fmt.Sprintf("k%d", i), 1, 0, 60)})
		require.NoError(t, err)
	}
	require.LessOrEqual(t, m.Len(), 256)
	require.Equal(t, uint64(5000-m.Len()), m.Evictions())
}

func BenchmarkMemoryApply(b *testing.B) {
	m := store.NewMemory(store.MemoryOptions{})
	hits := []store.Hit{hit("domain|user=alice", 1, 0, 60), hit("domain|path=/v1/chat", 1, 0, 60)}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Apply(ctx, hits); err != nil {
				b.Fatal(err)
			}
		}
	})
}
