package redistest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestStartSharesOneServerAndStopKillsIt(t *testing.T) {
	addr := redistest.Start(t)
	require.True(t, redistest.Ping(addr))
	require.Equal(t, addr, redistest.Start(t), "one server per test binary")
	redistest.Stop()
	require.False(t, redistest.Ping(addr))
	again := redistest.Start(t)
	require.True(t, redistest.Ping(again))
}

// recorder is a testing.TB whose Skipf and Fatalf record the message and
// stop the calling function, as the real ones do.
type recorder struct {
	testing.TB
	skipped, failed string
}

type stopped struct{}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func startWith(tb testing.TB) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopped); !ok {
				panic(v)
			}
		}
	}()
	redistest.Start(tb)
}

func TestMissingRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	t.Setenv(redistest.SkipEnv, "")
	r := &recorder{TB: t}
	startWith(r)
	require.Contains(t, r.failed, "redis-server not found on PATH: install it")
	require.Empty(t, r.skipped)

	t.Setenv(redistest.SkipEnv, "1")
	r = &recorder{TB: t}
	startWith(r)
	require.Contains(t, r.skipped, "redis-server not found and SHEPHERD_SKIP_REDIS=1")
	require.Empty(t, r.failed)
}

func TestStartClusterServesAllSlots(t *testing.T) {
	addrs := redistest.StartCluster(t)
	require.Len(t, addrs, 2)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	ctx := context.Background()
	// Keys in both nodes' slot ranges.
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		require.NoError(t, c.Set(ctx, "cluster-test:"+k, k, 0).Err())
		v, err := c.Get(ctx, "cluster-test:"+k).Result()
		require.NoError(t, err)
		require.Equal(t, k, v)
	}
	for _, addr := range addrs {
		node := redis.NewClient(&redis.Options{Addr: addr})
		n, err := node.DBSize(ctx).Result()
		_ = node.Close()
		require.NoError(t, err)
		require.Positive(t, n, "node %s holds some of the keys", addr)
	}
	require.Equal(t, addrs, redistest.StartCluster(t), "one cluster per test binary")
}
