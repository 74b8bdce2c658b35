package rlsbench_test

import (
	"context"
	"math"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/shepherd-mesh/shepherd/internal/rlsbench"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return lis
}

// serveMemory runs the rate limit service with a memory store and a fixed
// clock, so that every request of a run falls in one window.
func serveMemory(t testing.TB, cfgYAML string) string {
	t.Helper()
	cfg, err := ratelimit.ParseConfig("bench.yaml", []byte(cfgYAML))
	require.NoError(t, err)
	fixed := time.Unix(1_700_006_410, 0)
	svc := ratelimit.NewService(cfg, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Clock: func() time.Time { return fixed }})
	lis := listen(t)
	gs := grpc.NewServer()
	svc.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

const benchConfig = `
domain: rlsbench
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: user
    value: big
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
`

func TestRunCountsDecisionsAndOverLimit(t *testing.T) {
	addr := serveMemory(t, benchConfig)
	res, err := rlsbench.Run(context.Background(), rlsbench.Options{
		Addr:        addr,
		Concurrency: 4,
		Requests:    60,
		Variants:    2, // users u0 and u1 in turn: 10 each pass, the rest are over
	})
	require.NoError(t, err)
	require.Equal(t, 60, res.Decisions)
	require.Equal(t, 0, res.Errors)
	// The warm-up request per connection counts against u0 too.
	require.Equal(t, 60-10-9, res.OverLimit)
	require.Greater(t, res.PerSecond, 0.0)
	require.LessOrEqual(t, res.P50, res.P99)
	require.Contains(t, res.String(), "60 decisions (41 over limit), 0 errors")
}

func TestRunAgainstNullServer(t *testing.T) {
	lis := listen(t)
	gs := rlsbench.ServeNull(lis)
	defer gs.Stop()
	res, err := rlsbench.Run(context.Background(), rlsbench.Options{
		Addr:        lis.Addr().String(),
		Concurrency: 3,
		Connections: 2,
		Requests:    25,
		Descriptors: [][]rlsbench.Entry{{{Key: "a", Value: "b"}}, {{Key: "c", Value: "{n}"}}},
		Variants:    5,
	})
	require.NoError(t, err)
	require.Equal(t, rlsbench.Result{Decisions: 25}, rlsbench.Result{Decisions: res.Decisions, Errors: res.Errors, OverLimit: res.OverLimit})
}

// With the server's pid, the result carries that process's CPU time; here the
// null server runs in the test's own process.
func TestRunMeasuresServerCPU(t *testing.T) {
	lis := listen(t)
	gs := rlsbench.ServeNull(lis)
	defer gs.Stop()
	res, err := rlsbench.Run(context.Background(), rlsbench.Options{
		Addr: lis.Addr().String(), Concurrency: 4, Requests: 2000, ServerPID: os.Getpid()})
	if runtime.GOOS != "linux" {
		require.ErrorContains(t, err, "only measured on Linux")
		return
	}
	require.NoError(t, err)
	require.Equal(t, os.Getpid(), res.ServerPID)
	require.GreaterOrEqual(t, res.ServerCPU, time.Duration(0))
	require.Positive(t, res.OwnCPU)
	require.Equal(t, res.OwnCPU/2000, res.PerDecision(res.OwnCPU))
	require.Regexp(t, `; CPU per decision: server \(pid \d+\) [0-9.]+[µnm]?s, this process [0-9.]+[µnm]?s$`, res.String())

	_, err = rlsbench.Run(context.Background(), rlsbench.Options{Addr: lis.Addr().String(), Requests: 1, ServerPID: math.MaxInt32})
	require.ErrorContains(t, err, "rlsbench: server CPU: ")
}

func TestRunStopsAtDuration(t *testing.T) {
	lis := listen(t)
	gs := rlsbench.ServeNull(lis)
	defer gs.Stop()
	res, err := rlsbench.Run(context.Background(), rlsbench.Options{Addr: lis.Addr().String(), Concurrency: 2, Duration: 50 * time.Millisecond})
	require.NoError(t, err)
	require.Greater(t, res.Decisions, 0)
	require.Equal(t, 0, res.Errors)
}

func TestRunOptionErrors(t *testing.T) {
	cases := map[string]struct {
		opts rlsbench.Options
		err  string
	}{
		"no addr":      {rlsbench.Options{Requests: 1}, "rlsbench: addr: must not be empty"},
		"not loopback": {rlsbench.Options{Addr: "10.1.2.3:8081", Requests: 1}, `rlsbench: addr: "10.1.2.3" is not a loopback address`},
		"a name":       {rlsbench.Options{Addr: "example.com:8081", Requests: 1}, `rlsbench: addr: "example.com" is not a loopback address`},
		"no bound":     {rlsbench.Options{Addr: "127.0.0.1:8081"}, "rlsbench: one of duration or requests must be set"},
		"bad pid":      {rlsbench.Options{Addr: "127.0.0.1:8081", Requests: 1, ServerPID: -1}, "rlsbench: server pid: -1 is not a process id"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := rlsbench.Run(context.Background(), tc.opts)
			require.EqualError(t, err, tc.err)
		})
	}
}

// BenchmarkMemoryVsNull drives the rate limit service with a memory store
// and the null server with the same client, alternating, and reports the
// memory server's throughput as a fraction of the null server's.
func BenchmarkMemoryVsNull(b *testing.B) {
	memAddr := serveMemory(b, benchConfig)
	lis := listen(b)
	gs := rlsbench.ServeNull(lis)
	defer gs.Stop()
	opts := rlsbench.Options{
		Concurrency: 32,
		Requests:    20000,
		Descriptors: [][]rlsbench.Entry{{{Key: "user", Value: "big"}}},
	}
	var memRate, nullRate float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, s := range []struct {
			addr string
			rate *float64
		}{{lis.Addr().String(), &nullRate}, {memAddr, &memRate}} {
			o := opts
			o.Addr = s.addr
			res, err := rlsbench.Run(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors > 0 {
				b.Fatalf("%d errors", res.Errors)
			}
			*s.rate += res.PerSecond
		}
	}
	b.ReportMetric(memRate/float64(b.N), "memory-decisions/s")
	b.ReportMetric(nullRate/float64(b.N), "null-decisions/s")
	b.ReportMetric(memRate/nullRate, "memory/null")
}
