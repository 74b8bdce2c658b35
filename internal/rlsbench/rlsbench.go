// Package rlsbench drives an Envoy rate limit service (RLS) over gRPC with a
// fixed set of requests and measures throughput and latency. It talks to
// loopback addresses only. ServeNull is a do-nothing RLS to compare against:
// ratios between servers driven by the same client in the same run are what
// hold on a shared machine, not absolute figures.
package rlsbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Entry is one key/value of a descriptor. A value containing "{n}" has it
// replaced by the request's variant number (see Options.Variants).
type Entry struct {
	Key   string
	Value string
}

// Options describe one run. Addr and at least one of Duration or Requests
// are required.
type Options struct {
	// Addr is the server's host:port; the host must be a loopback address
	// or "localhost".
	Addr string
	// Concurrency is the number of requests in flight (default 1).
	Concurrency int
	// Connections is the number of gRPC connections the workers share
	// (default 1).
	Connections int
	// Duration bounds the run's length; 0 means no time bound.
	Duration time.Duration
	// Requests caps the number of requests sent; 0 means no cap.
	Requests int
	// Domain is the request's domain (default "rlsbench").
	Domain string
	// Descriptors are sent in every request (default one descriptor
	// {key: "user", value: "u{n}"}).
	Descriptors [][]Entry
	// Variants is how many distinct requests are prepared, with {n} in
	// values replaced by 0..Variants-1, and sent in turn (default 1).
	Variants int
	// HitsAddend is the request's hits_addend (0 leaves it unset).
	HitsAddend uint32
	// ServerPID, when set, is the server's process on this machine: its CPU
	// time over the run is read from /proc (Linux) into Result.ServerCPU.
	ServerPID int
}

// Result sums up one run.
type Result struct {
	Decisions int // answered requests
	Errors    int // failed requests
	OverLimit int // answered OVER_LIMIT
	Elapsed   time.Duration
	PerSecond float64 // answered requests per second of Elapsed
	P50, P99  time.Duration
	// ServerPID is Options.ServerPID, and ServerCPU the CPU time (user +
	// system) that process used while the requests ran.
	ServerPID int
	ServerCPU time.Duration
	// OwnCPU is the CPU time this process used while the requests ran: the
	// client's, plus a server's that runs in the same process (ServeNull).
	OwnCPU time.Duration
}

// PerDecision divides a CPU time by the run's decisions.
func (r Result) PerDecision(cpu time.Duration) time.Duration {
	if r.Decisions == 0 {
		return 0
	}
	return cpu / time.Duration(r.Decisions)
}

// String formats the result on one line, with the CPU time per decision of
// the server (when its process was given) and of this process.
func (r Result) String() string {
	s := fmt.Sprintf("%d decisions (%d over limit), %d errors in %s: %.0f/s, p50 %s, p99 %s",
		r.Decisions, r.OverLimit, r.Errors, r.Elapsed.Round(time.Millisecond), r.PerSecond,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	s += "; CPU per decision:"
	if r.ServerPID != 0 {
		s += fmt.Sprintf(" server (pid %d) %s,", r.ServerPID, r.PerDecision(r.ServerCPU).Round(10*time.Nanosecond))
	}
	return s + fmt.Sprintf(" this process %s", r.PerDecision(r.OwnCPU).Round(10*time.Nanosecond))
}

// Run drives the server at opts.Addr until the duration passes, the request
// cap is reached or ctx ends, and returns what it measured. It returns an
// error for bad options or when no connection can be made; request failures
// are counted in Result.Errors.
func Run(ctx context.Context, opts Options) (Result, error) {
	if err := checkOptions(&opts); err != nil {
		return Result{}, err
	}
	reqs := buildRequests(opts)
	conns := make([]*grpc.ClientConn, opts.Connections)
	for i := range conns {
		c, err := grpc.NewClient(opts.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return Result{}, fmt.Errorf("rlsbench: connect %s: %w", opts.Addr, err)
		}
		defer c.Close()
		conns[i] = c
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	// Warm every connection up so that connection setup is not measured.
	for _, c := range conns {
		if _, err := rlsv3.NewRateLimitServiceClient(c).ShouldRateLimit(ctx, reqs[0], grpc.WaitForReady(true)); err != nil {
			return Result{}, fmt.Errorf("rlsbench: first request to %s: %w", opts.Addr, err)
		}
	}

	var (
		claimed   atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies []time.Duration
		res       Result
	)
	limit := int64(opts.Requests)
	var serverBefore time.Duration
	if opts.ServerPID != 0 {
		var err error
		if serverBefore, err = ProcessCPU(opts.ServerPID); err != nil {
			return Result{}, err
		}
	}
	ownBefore := ownCPU()
	start := time.Now()
	for w := 0; w < opts.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := rlsv3.NewRateLimitServiceClient(conns[w%len(conns)])
			var (
				lat             []time.Duration
				ok, over, fails int
			)
			for !ended(ctx) {
				n := claimed.Add(1)
				if limit > 0 && n > limit {
					break
				}
				t := time.Now()
				resp, err := client.ShouldRateLimit(ctx, reqs[int(n-1)%len(reqs)])
				d := time.Since(t)
				if err != nil {
					if ended(ctx) {
						break // the run ended while the request was in flight
					}
					fails++
					continue
				}
				ok++
				lat = append(lat, d)
				if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
					over++
				}
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			res.Decisions += ok
			res.OverLimit += over
			res.Errors += fails
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.OwnCPU = ownCPU() - ownBefore
	if opts.ServerPID != 0 {
		after, err := ProcessCPU(opts.ServerPID)
		if err != nil {
			return Result{}, err
		}
		res.ServerPID, res.ServerCPU = opts.ServerPID, after-serverBefore
	}
	if res.Elapsed > 0 {
		res.PerSecond = float64(res.Decisions) / res.Elapsed.Seconds()
	}
	slices.Sort(latencies)
	res.P50 = percentile(latencies, 0.50)
	res.P99 = percentile(latencies, 0.99)
	return res, nil
}

// ended reports whether ctx is done or its deadline has passed (gRPC fails
// a call at its deadline slightly before the context's own timer fires).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func checkOptions(o *Options) error {
	if o.Addr == "" {
		return errors.New("rlsbench: addr: must not be empty")
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return fmt.Errorf("rlsbench: addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("rlsbench: addr: %q is not a loopback address", host)
	}
	if o.ServerPID < 0 {
		return fmt.Errorf("rlsbench: server pid: %d is not a process id", o.ServerPID)
	}
	if o.Duration <= 0 && o.Requests <= 0 {
		return errors.New("rlsbench: one of duration or requests must be set")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Connections <= 0 {
		o.Connections = 1
	}
	if o.Domain == "" {
		o.Domain = "rlsbench"
	}
	if len(o.Descriptors) == 0 {
		o.Descriptors = [][]Entry{{{Key: "user", Value: "u{n}"}}}
	}
	if o.Variants <= 0 {
		o.Variants = 1
	}
	return nil
}

func buildRequests(o Options) []*rlsv3.RateLimitRequest {
	reqs := make([]*rlsv3.RateLimitRequest, o.Variants)
	for n := range reqs {
		r := &rlsv3.RateLimitRequest{Domain: o.Domain, HitsAddend: o.HitsAddend}
		ns := strconv.Itoa(n)
		for _, d := range o.Descriptors {
			pd := &commonrl.RateLimitDescriptor{}
			for _, e := range d {
				pd.Entries = append(pd.Entries, &commonrl.RateLimitDescriptor_Entry{Key: e.Key, Value: strings.ReplaceAll(e.Value, "{n}", ns)})
			}
			r.Descriptors = append(r.Descriptors, pd)
		}
		reqs[n] = r
	}
	return reqs
}

// nullServer answers every request OK without looking at it.
type nullServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

var okResponse = &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}

func (nullServer) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return okResponse, nil
}

// ServeNull serves a do-nothing RLS on lis, which answers every request OK,
// in the background, with the given gRPC server options (none for a plain
// server). Stop it with the returned server's Stop.
func ServeNull(lis net.Listener, opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(opts...)
	rlsv3.RegisterRateLimitServiceServer(gs, nullServer{})
	go func() { _ = gs.Serve(lis) }()
	return gs
}
