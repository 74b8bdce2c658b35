package store_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// TestRedisBatchesConcurrentDecisions: many callers at once share
// pipelines (fewer pipelines than decisions) and every count is still
// exact, on one server and on a cluster.
func TestRedisBatchesConcurrentDecisions(t *testing.T) {
	single := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer single.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.StartCluster(t)})
	defer cluster.Close()
	for name, client := range map[string]redis.UniversalClient{"redis": single, "redis-cluster": cluster} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			st := store.NewRedis(client, store.RedisOptions{Prefix: "batch:" + name + ":" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":",
				Pipelines: 1, Registerer: reg})
			defer st.Close()
			const callers, each, keys = 32, 20, 8
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						k := strconv.Itoa((c + i) % keys)
						_, err := st.Apply(context.Background(), []store.Hit{hit("k"+k, 1, 1000, 60), hit("all", 2, 1000, 60)})
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.Less(t, st.Pipelines(), int64(callers*each), "decisions share pipelines")
			mfs, err := reg.Gather()
			require.NoError(t, err)
			require.Len(t, mfs, 1)
			require.Equal(t, "shepherd_ratelimit_store_batch_decisions", mfs[0].GetName())
			h := mfs[0].GetMetric()[0].GetHistogram()
			require.Equal(t, uint64(st.Pipelines()), h.GetSampleCount(), "one sample per round trip")
			require.Equal(t, float64(callers*each), h.GetSampleSum(), "every decision in one sample")
			total := uint64(0)
			for k := range keys {
				res, err := st.Apply(context.Background(), []store.Hit{hit("k"+strconv.Itoa(k), 0, 1000, 60)})
				require.NoError(t, err)
				total += res[0].Count
			}
			require.Equal(t, uint64(callers*each), total)
			res, err := st.Apply(context.Background(), []store.Hit{hit("all", 0, 1000, 60)})
			require.NoError(t, err)
			require.Equal(t, uint64(2*callers*each), res[0].Count)
		})
	}
}

// TestRedisCallerLeavesAndClose: against a server that never answers, a
// caller whose context ends gets its error back; callers still waiting
// when the store closes get ErrClosed; nothing hangs.
func TestRedisCallerLeavesAndClose(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	client := redis.NewClient(&redis.Options{Addr: lis.Addr().String(), ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		DialTimeout: time.Minute, Protocol: 2, DisableIdentity: true})
	defer client.Close()
	st := store.NewRedis(client, store.RedisOptions{Pipelines: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = st.Apply(ctx, []store.Hit{hit("a", 1, 1000, 60)})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The only sender is stuck on the first pipeline; this caller waits.
	done := make(chan error, 1)
	go func() {
		_, err := st.Apply(context.Background(), []store.Hit{hit("b", 1, 1000, 60)})
		done <- err
	}()
	require.Eventually(t, func() bool { return st.Waiting() == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, st.Close())
	select {
	case err := <-done:
		require.True(t, errors.Is(err, store.ErrClosed), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a caller still waits after Close")
	}
	_, err = st.Apply(context.Background(), []store.Hit{hit("c", 1, 1000, 60)})
	require.ErrorIs(t, err, store.ErrClosed)
}
