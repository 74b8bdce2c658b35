// Command rlsbench drives an Envoy rate limit service over loopback gRPC
// and prints throughput and latency.
//
//	rlsbench -addr 127.0.0.1:8081 -c 32 -d 5s       drive a running server
//	rlsbench -compare -c 32 -d 5s [-redis ADDR]      null, memory (and Redis) servers in turn, with ratios
//
// With -compare the servers run in this process, so the CPU time per
// decision covers client and server; its ratio between servers estimates the
// throughput ratio on a saturated machine and is far less disturbed by other
// load on the machine than wall-clock throughput. (For Redis, the
// redis-server's own CPU is not included.)
//
//	rlsbench -serve memory -listen 127.0.0.1:8081    serve one kind (null, memory, redis) until killed
//	rlsbench -targets a=127.0.0.1:8081@PID,b=127.0.0.1:8082 -also-pid REDISPID -rounds 5
//	                                                 drive running servers in turn, with ratios to the first;
//	                                                 @PID and -also-pid add those processes' CPU per decision
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/shepherd-mesh/shepherd/internal/rlsbench"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// benchConfig limits every user to far more than a run can send, so every
// decision takes the full path (lookup, store, response) and answers OK.
const benchConfig = `
domain: rlsbench
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 4000000000}
`

// extraKinds are server kinds built only with a build tag (rueidis.go):
// experimental stores on a Redis address.
var extraKinds = map[string]func(redisAddr string) (store.Store, error){}

type descFlag [][]rlsbench.Entry

func (d *descFlag) String() string { return fmt.Sprint(*d) }

// Set parses "key=value,key2=value2" as one descriptor.
func (d *descFlag) Set(s string) error {
	var entries []rlsbench.Entry
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("descriptor entry %q: want key=value", kv)
		}
		entries = append(entries, rlsbench.Entry{Key: k, Value: v})
	}
	*d = append(*d, entries)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rlsbench:", err)
		os.Exit(1)
	}
}

// run parses args (without the program name) and does what they say,
// writing results to out, until ctx ends for -serve.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("rlsbench", flag.ContinueOnError)
	var (
		opts    rlsbench.Options
		descs   descFlag
		compare = fs.Bool("compare", false, "serve null, memory and (with -redis) Redis servers in process and drive each in turn")
		serve   = fs.String("serve", "", "serve one kind of server (null, memory, redis) on -listen and drive nothing")
		listen  = fs.String("listen", "127.0.0.1:0", "address for -serve")
		rAddr   = fs.String("redis", "", "Redis address for the redis server kind")
		targets = fs.String("targets", "", "name=addr[@pid],name=addr[@pid]...: running servers to drive in turn, compared with the first; with @pid each run reports that process's CPU per decision")
		alsoPID = fs.Int("also-pid", 0, "with -targets, another process on this machine (a redis-server) whose CPU per decision each run reports")
		rounds  = fs.Int("rounds", 1, "with -compare, how many times to drive each server in turn (ratios are reported per round and as their median)")
		workers = fs.Uint("workers", 0, "gRPC stream workers of the servers this process serves (grpc.NumStreamWorkers; shepherd-sidecar uses 64; 0: a goroutine per call)")
	)
	fs.StringVar(&opts.Addr, "addr", "", "server to drive (loopback host:port)")
	fs.IntVar(&opts.Concurrency, "c", 32, "requests in flight")
	fs.IntVar(&opts.Connections, "conns", 1, "gRPC connections")
	fs.DurationVar(&opts.Duration, "d", 5*time.Second, "run length per server")
	fs.IntVar(&opts.Requests, "n", 0, "request cap per server (0: none)")
	fs.StringVar(&opts.Domain, "domain", "rlsbench", "request domain")
	fs.IntVar(&opts.Variants, "variants", 1000, "distinct requests; {n} in values is replaced by 0..variants-1")
	fs.Var(&descs, "descriptor", "a descriptor as key=value[,key=value...]; repeat for several (default user=u{n})")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts.Descriptors = descs

	switch {
	case *serve != "":
		lis, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		gs, err := start(*serve, lis, *rAddr, serverOptions(*workers)...)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "serving %s on %s\n", *serve, lis.Addr())
		<-ctx.Done()
		gs.Stop()
		return nil
	case *targets != "":
		var names, addrs []string
		var pids []int
		for _, t := range strings.Split(*targets, ",") {
			name, addr, ok := strings.Cut(t, "=")
			if !ok {
				return fmt.Errorf("-targets: %q: want name=addr", t)
			}
			pid := 0
			if a, p, ok := strings.Cut(addr, "@"); ok {
				n, err := strconv.Atoi(p)
				if err != nil || n <= 0 {
					return fmt.Errorf("-targets: %q: want a process id after @", t)
				}
				addr, pid = a, n
			}
			names, addrs, pids = append(names, name), append(addrs, addr), append(pids, pid)
		}
		rates := map[string]float64{}
		ratios := map[string][]float64{}
		for r := 0; r < *rounds; r++ {
			round := map[string]float64{}
			for i, name := range names {
				o := opts
				o.Addr, o.ServerPID = addrs[i], pids[i]
				var before time.Duration
				if *alsoPID != 0 {
					var err error
					if before, err = rlsbench.ProcessCPU(*alsoPID); err != nil {
						return err
					}
				}
				res, err := rlsbench.Run(ctx, o)
				if err != nil {
					return err
				}
				rates[name] += res.PerSecond
				round[name] = res.PerSecond
				also := ""
				if *alsoPID != 0 {
					after, err := rlsbench.ProcessCPU(*alsoPID)
					if err != nil {
						return err
					}
					also = fmt.Sprintf("; pid %d %s per decision", *alsoPID, res.PerDecision(after-before).Round(10*time.Nanosecond))
				}
				fmt.Fprintf(out, "%-10s %s%s\n", name, res, also)
			}
			for _, name := range names[1:] {
				ratios[name] = append(ratios[name], round[name]/round[names[0]])
			}
		}
		for _, name := range names[1:] {
			fmt.Fprintf(out, "%s/%s throughput: %.2f overall, %.2f median of %d rounds\n",
				name, names[0], rates[name]/rates[names[0]], median(ratios[name]), *rounds)
		}
		return nil
	case *compare:
		kinds := []string{"null", "memory"}
		if *rAddr != "" {
			kinds = append(kinds, "redis")
		}
		rates := map[string]float64{}
		ratios := map[string][]float64{}
		cpu := map[string]time.Duration{}
		decisions := map[string]int{}
		for r := 0; r < *rounds; r++ {
			round := map[string]float64{}
			for _, kind := range kinds {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return err
				}
				gs, err := start(kind, lis, *rAddr, serverOptions(*workers)...)
				if err != nil {
					return err
				}
				o := opts
				o.Addr = lis.Addr().String()
				res, err := rlsbench.Run(ctx, o)
				gs.Stop()
				if err != nil {
					return err
				}
				rates[kind] += res.PerSecond
				round[kind] = res.PerSecond
				cpu[kind] += res.OwnCPU
				decisions[kind] += res.Decisions
				fmt.Fprintf(out, "%-6s %s (client and server)\n", kind, res)
			}
			for _, kind := range kinds[1:] {
				ratios[kind] = append(ratios[kind], round[kind]/round["null"])
			}
		}
		for _, kind := range kinds[1:] {
			fmt.Fprintf(out, "%s/null throughput: %.2f overall, %.2f median of %d rounds; by CPU per decision: %.2f\n",
				kind, rates[kind]/rates["null"], median(ratios[kind]), *rounds,
				float64(perDecision(cpu["null"], decisions["null"]))/float64(perDecision(cpu[kind], decisions[kind])))
		}
		return nil
	default:
		res, err := rlsbench.Run(ctx, opts)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, res)
		return nil
	}
}

func perDecision(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// serverOptions are the gRPC options of the servers rlsbench serves.
func serverOptions(workers uint) []grpc.ServerOption {
	if workers == 0 {
		return nil
	}
	return []grpc.ServerOption{grpc.NumStreamWorkers(uint32(min(workers, 1<<16)))}
}

// start serves one kind of RLS on lis in the background.
func start(kind string, lis net.Listener, redisAddr string, opts ...grpc.ServerOption) (*grpc.Server, error) {
	if kind == "null" {
		return rlsbench.ServeNull(lis, opts...), nil
	}
	var st store.Store
	switch kind {
	case "memory":
		st = store.NewMemory(store.MemoryOptions{})
	case "redis":
		if redisAddr == "" {
			return nil, errors.New("-redis is required for the redis kind")
		}
		st = store.NewRedis(redis.NewClient(&redis.Options{Addr: redisAddr}), store.RedisOptions{Prefix: "rlsbench:"})
	default:
		open, ok := extraKinds[kind]
		if !ok {
			return nil, fmt.Errorf("unknown server kind %q (null, memory, redis)", kind)
		}
		if redisAddr == "" {
			return nil, fmt.Errorf("-redis is required for the %s kind", kind)
		}
		var err error
		if st, err = open(redisAddr); err != nil {
			return nil, err
		}
	}
	cfg, err := ratelimit.ParseConfig("rlsbench.yaml", []byte(benchConfig))
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer(opts...)
	ratelimit.NewService(cfg, st, ratelimit.Options{}).Register(gs)
	go func() { _ = gs.Serve(lis) }()
	return gs, nil
}
