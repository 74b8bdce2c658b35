package store

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
)

func hitOf(key string, hits uint64) Hit {
	return Hit{Key: []byte(key), Hits: hits, Window: Window{Start: 0, Seconds: 60}}
}

// scriptCalls is how many EVALSHA and EVAL commands the server has run.
func scriptCalls(t *testing.T, c redis.UniversalClient) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, err := strconv.Atoi(calls)
		require.NoError(t, err, line)
		n += v
	}
	return n
}

// TestRedisBatchRunsAsOneScriptCall: on one server the decisions of a batch
// are counted by one script call (several past maxScriptKeys keys), each
// decision gets its own counts, and a key that cannot count fails only the
// decision it belongs to. On a cluster the answers are the same.
func TestRedisBatchRunsAsOneScriptCall(t *testing.T) {
	single := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer single.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.StartCluster(t)})
	defer cluster.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		perKey bool
	}{
		{"redis", single, false},
		{"redis-cluster", cluster, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "one:" + tc.name + ":" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":"
			s := NewRedis(tc.client, RedisOptions{Prefix: prefix, Pipelines: 1})
			defer s.Close()
			require.Equal(t, tc.perKey, s.perKey)
			require.NoError(t, tc.client.LPush(ctx, s.Key([]byte("list"), Window{Seconds: 60}), "x").Err())

			var big []Hit
			for i := range 2 * maxScriptKeys {
				big = append(big, hitOf("big"+strconv.Itoa(i%(maxScriptKeys+5)), 1))
			}
			jobs := []*batchJob{
				s.job(ctx, []Hit{hitOf("a", 1), hitOf("b", 2)}),
				s.job(ctx, []Hit{hitOf("c", 1), hitOf("list", 1)}),
				s.job(ctx, []Hit{hitOf("a", 3), hitOf("c", 4), hitOf("a", 0)}),
				s.job(ctx, big),
			}
			before := 0
			if !tc.perKey {
				require.NoError(t, incrScript.Load(ctx, tc.client).Err())
				before = scriptCalls(t, tc.client)
			}
			s.send(jobs)
			for _, j := range jobs {
				select {
				case <-j.done:
				case <-time.After(10 * time.Second):
					t.Fatal("a decision of the batch got no answer")
				}
			}
			if !tc.perKey {
				// 2 + 2 + 3 keys and 512 more: 519 keys in ceil(519/256) calls.
				require.Equal(t, 3, scriptCalls(t, tc.client)-before, "script calls for the batch")
			}
			require.NoError(t, jobs[0].err)
			require.Equal(t, []Result{{Count: 1, Reset: 60}, {Count: 2, Reset: 60}}, jobs[0].out)
			require.ErrorContains(t, jobs[1].err, "redis store: hit 1: WRONGTYPE")
			require.NoError(t, jobs[2].err)
			require.Equal(t, []Result{{Count: 4, Reset: 60}, {Count: 5, Reset: 60}, {Count: 4, Reset: 60}}, jobs[2].out)
			require.NoError(t, jobs[3].err)
			for i, r := range jobs[3].out {
				want := uint64(1)
				if i >= maxScriptKeys+5 {
					want = 2 // the same key's second hit in this batch
				}
				require.Equal(t, want, r.Count, "hit %d", i)
			}
		})
	}
}

// redisCPU is the CPU time (user + system) the server has used, from INFO.
func redisCPU(b *testing.B, c redis.UniversalClient) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	require.NoError(b, err)
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(b, err, line)
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// BenchmarkRedisRoundTrip counts keys round trip after round trip, by the
// store's batch script (one call per round trip), by one call of it per key
// (as on a cluster), and by plain INCRBY and PTTL per key (no atomic
// saturation), and reports redis-server's CPU per key (from INFO cpu; its
// resolution is coarse, so use -benchtime of 10000x or more).
func BenchmarkRedisRoundTrip(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Start(b)})
	defer client.Close()
	ctx := context.Background()
	for _, shape := range []string{"batch-script", "script-per-key", "incrby-pttl"} {
		for _, n := range []int{1, 8, 32} {
			b.Run(shape+"/keys-"+strconv.Itoa(n), func(b *testing.B) {
				s := NewRedis(client, RedisOptions{Prefix: "bench:", Pipelines: 1})
				defer s.Close()
				s.perKey = shape == "script-per-key"
				j := s.job(ctx, nil)
				for i := range n {
					j.keys = append(j.keys, s.Key([]byte("user="+strconv.Itoa(i)), Window{Seconds: 3600}))
					j.args = append(j.args, hitArgs{hits: 1, ttlMs: 3601000})
				}
				require.NoError(b, incrScript.Load(ctx, client).Err())
				before := redisCPU(b, client)
				b.ResetTimer()
				for range b.N {
					if shape == "incrby-pttl" {
						_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
							for _, k := range j.keys {
								p.IncrBy(ctx, k, 1)
								p.PTTL(ctx, k)
							}
							return nil
						})
						require.NoError(b, err)
						continue
					}
					replies, err := s.count(ctx, j.args, j.keys)
					require.NoError(b, err)
					require.NoError(b, replies[0].err)
				}
				b.StopTimer()
				b.ReportMetric(float64((redisCPU(b, client)-before).Nanoseconds())/1000/float64(b.N*n), "redis-µs/key")
			})
		}
	}
}
