// Package soak runs shepherd's local mesh in-process under randomized traffic
// and faults, then checks invariants that must hold however the traffic went.
//
// The mesh: two Envoy-faithful hosts ("pods") of two worker VMs each, running
// the compiled filter; one shepherd-sidecar (server.Server, in this process);
// two fake providers, relay and backup, that throttle (429) and fail (503) a
// share of their requests and, per request, reset streams, delay, or answer
// garbage. Clients send chat completions (JSON and streams) to four routes
// with random tenants and models, and some leave early. The sidecar is stopped
// for a while and started again on the same address from a third of the run
// on (an outage every third of it, at least 4 s apart). Everything listens on
// loopback; the run is bounded by its duration and its request count.
//
// Invariants (Result.Invariants, in order):
//
//   - one-answer: every request got exactly one response, or was left by its
//     client on purpose (counted); no transport error otherwise. A stream the
//     provider reset reaches the client as a response whose body breaks off.
//   - no-shepherd-5xx: no 5xx that the proxy produced itself (a response
//     without the provider's x-fake-provider header whose body is not the
//     provider's error) except on the fail-closed route.
//   - tokens-balance: on each pod, the local token bucket of route "tokens"
//     (capacity C, refilling one token a minute) ends at exactly
//     C − Σ usage of that pod's admitted requests, where usage is what the
//     provider reported (the route's requests ask for no prompt, so a request
//     that got no usage is settled to 0): probes show the bucket admits a
//     reservation of that level and refuses one of that level plus the refill
//     the run's duration allows, plus one. A reservation that was never
//     settled, or settled twice, breaks it.
//   - no-trap: no VM trapped or failed, and no stream context is left.
//   - vm-heap: each VM's linear memory is at most Options.MaxVMMemory.
//   - sidecar-heap: the process's Go heap after a collection grew by at most
//     Options.MaxHeapGrowth between the warm-up and the end. The sidecar runs
//     in this process, so this bounds the sidecar and the hosts' Go side
//     together.
//   - heap-per-request: the Go heap outside the VMs' linear memory, sampled
//     after a collection about 90 times through the second half of the
//     traffic phase, grows by at most Options.MaxHeapPerRequest bytes per
//     request: the least-squares slope of heap over requests sent, judged at
//     three standard errors of that slope (the samples' noise over the
//     requests between them; see check). The first
//     half is the warm-up: the VMs grow, the first sidecar restart (at a
//     third) leaves its step. State the run keeps for good per request (a
//     leak) shows here however large the bound on total growth is; the
//     samples' noise (about a MiB) needs minutes of traffic to tell a few
//     bytes per request.
//   - metrics-total: shepherd_requests_total summed over both pods' Prometheus
//     output equals the requests the clients sent and the requests the pods
//     received (every routed stream is counted once, also when its client
//     left). A client that leaves early leaves once its request is written.
//   - metrics-labels: the model label takes only configured models or
//     "other": client-chosen model names cannot grow the metric set.
package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/promtext"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

// Options bounds and shapes a run.
type Options struct {
	// Module is the compiled filter (.wasm). Required.
	Module []byte
	// CompilationCache, when set, is shared with other hosts of the process.
	CompilationCache wazero.CompilationCache
	// Duration bounds the traffic phase (default 10 s).
	Duration time.Duration
	// Requests bounds the requests sent (0: only Duration bounds them).
	Requests int
	// Clients is the number of concurrent clients (default 8).
	Clients int
	// Seed makes the clients' choices repeatable (the interleaving is not).
	Seed uint64
	// MaxVMMemory bounds each VM's linear memory (default 64 MiB).
	MaxVMMemory uint64
	// MaxHeapGrowth bounds the process's Go heap growth (default 256 MiB).
	MaxHeapGrowth uint64
	// MaxHeapPerRequest bounds the Go heap's growth per request through the
	// run (default 16 bytes; see heap-per-request).
	MaxHeapPerRequest float64
	// Progress, when set, receives a line now and then.
	Progress func(string)
}

// HeapSample is the Go heap after a collection, without the VMs' linear
// memory, when Requests had been sent.
type HeapSample struct {
	Requests int64
	Heap     uint64
}

// Invariant is one checked property.
type Invariant struct {
	Name   string
	Held   bool
	Detail string
}

// Result is what a run saw and what it checked.
type Result struct {
	Elapsed     time.Duration
	Requests    int64            // sent by clients
	Responses   int64            // answered (any status)
	Disconnects int64            // left by their client on purpose
	Resets      int64            // responses whose body the provider's reset broke off
	Errors      int64            // transport errors that were not planned disconnects
	ByStatus    map[int]int64    // responses by status
	ByRoute     map[string]int64 // requests by route
	Streams     int64            // streaming requests
	Faults      map[string]int64 // faults injected, by kind
	Shepherd5xx map[string]int64 // 5xx the proxy produced, by route
	VMMemory    []uint64         // each VM's linear memory at the end
	HeapGrowth  int64            // Go heap growth (bytes, after GC)
	// HeapPerRequest is the Go heap's growth outside the VMs per request
	// (bytes; the least-squares slope of HeapSamples).
	HeapPerRequest float64
	// HeapPerRequestErr is HeapPerRequest's standard error (bytes).
	HeapPerRequestErr float64
	HeapSamples       []HeapSample
	Invariants        []Invariant
}

// OK reports whether every invariant held.
func (r *Result) OK() bool {
	for _, inv := range r.Invariants {
		if !inv.Held {
			return false
		}
	}
	return len(r.Invariants) > 0
}

// Table writes the figures and the invariant table.
func (r *Result) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "elapsed\t%s\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "requests\t%d (%d streaming)\n", r.Requests, r.Streams)
	fmt.Fprintf(tw, "responses\t%d\n", r.Responses)
	fmt.Fprintf(tw, "client disconnects\t%d\n", r.Disconnects)
	fmt.Fprintf(tw, "provider resets seen\t%d\n", r.Resets)
	fmt.Fprintf(tw, "by status\t%s\n", formatInts(r.ByStatus))
	fmt.Fprintf(tw, "by route\t%s\n", formatMap(r.ByRoute))
	fmt.Fprintf(tw, "faults injected\t%s\n", formatMap(r.Faults))
	fmt.Fprintf(tw, "proxy 5xx by route\t%s\n", formatMap(r.Shepherd5xx))
	mem := make([]string, len(r.VMMemory))
	for i, m := range r.VMMemory {
		mem[i] = strconv.FormatUint(m>>20, 10) + " MiB"
	}
	fmt.Fprintf(tw, "VM memory\t%s\n", strings.Join(mem, ", "))
	fmt.Fprintf(tw, "Go heap growth\t%.1f MiB\n", float64(r.HeapGrowth)/(1<<20))
	fmt.Fprintf(tw, "Go heap per request\t%.2f ± %.2f bytes (%d samples)\n", r.HeapPerRequest, r.HeapPerRequestErr, len(r.HeapSamples))
	samples := make([]string, len(r.HeapSamples))
	for i, s := range r.HeapSamples {
		samples[i] = strconv.FormatFloat(float64(s.Heap)/(1<<20), 'f', 1, 64)
	}
	fmt.Fprintf(tw, "Go heap samples (MiB)\t%s\n", strings.Join(samples, " "))
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "invariant\theld\tdetail")
	for _, inv := range r.Invariants {
		held := "yes"
		if !inv.Held {
			held = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", inv.Name, held, inv.Detail)
	}
	tw.Flush()
}

func formatMap(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatInt(m[k], 10)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func formatInts(m map[int]int64) string {
	s := map[string]int64{}
	for k, v := range m {
		s[strconv.Itoa(k)] = v
	}
	return formatMap(s)
}

// tokenCapacity is the capacity of route tokens' bucket on each pod: large
// enough that the run never exhausts it.
const tokenCapacity = 5_000_000

const pluginConfig = `{
  "models": {"gpt-4.1": {"input": 2.00, "output": 8.00}, "deepseek-v3.2": {"input": 0.28, "output": 0.42}},
  "sidecar": {"cluster": "sidecar", "token": {"env": "SHEPHERD_FILTER_TOKEN"}, "timeoutMs": 1000, "policyPollMs": 200, "reportIntervalMs": 100},
  "providers": [
    {"name": "relay", "host": "relay.example.com", "cluster": "relay"},
    {"name": "backup", "host": "backup.example.com", "cluster": "backup"}
  ],
  "routes": [
    {"name": "chat", "match": {"pathPrefix": "/chat/"}, "provider": "relay",
     "limits": {"requestsPerMinute": 6000, "consumerHeader": "x-tenant", "maxConsumers": 8},
     "fallback": {"models": [{"model": "deepseek-v3.2", "provider": "backup"}], "baseBackoffMs": 5, "maxBackoffMs": 20,
                  "retryAfterCapMs": 50, "retryBudgetPercent": 100}},
    {"name": "tokens", "match": {"pathPrefix": "/tokens/"}, "provider": "relay",
     "limits": {"tokensPerMinute": 1, "tokenBurst": 5000000},
     "fallback": {"models": [{"model": "deepseek-v3.2", "provider": "backup"}], "baseBackoffMs": 5, "maxBackoffMs": 20,
                  "retryAfterCapMs": 50, "retryBudgetPercent": 100}},
    {"name": "open", "match": {"pathPrefix": "/open/"}, "provider": "backup",
     "globalLimits": {"descriptors": ["route", "consumer"], "consumerHeader": "x-tenant", "failureMode": "open", "timeoutMs": 500}},
    {"name": "closed", "match": {"pathPrefix": "/closed/"}, "provider": "relay", "streamUsage": false,
     "globalLimits": {"failureMode": "closed", "timeoutMs": 500}}
  ]
}`

const rateLimits = `
domain: shepherd
descriptors:
  - key: route
    value: closed
    rate_limit: {unit: second, requests_per_unit: 40}
  - key: route
    value: open
    descriptors:
      - key: consumer
        rate_limit: {unit: second, requests_per_unit: 20}
`

const sidecarConfig = `
providers:
  - name: relay
  - name: backup
`

// filterToken is the token the pods' filters prove themselves with (their
// vmConfig.env) and the sidecar accepts.
const filterToken = "soak-filter-token-0123456789"

// routes the clients pick from, with weights.
var routes = []struct {
	name   string
	weight int
}{{"chat", 40}, {"tokens", 30}, {"open", 15}, {"closed", 15}}

var configuredModels = map[string]bool{"gpt-4.1": true, "deepseek-v3.2": true, "other": true}

// sidecar is the in-process shepherd-sidecar, which the run stops and
// starts again on the same address (an outage).
type sidecar struct {
	opts   server.Options
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func (sc *sidecar) start(ctx context.Context) error {
	srv, err := server.New(ctx, sc.opts)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(context.Background())
	sc.addr, sc.cancel, sc.done = srv.GRPCAddr(), cancel, make(chan error, 1)
	go func() { sc.done <- srv.Serve(sctx) }()
	return nil
}

func (sc *sidecar) stop() {
	if sc.cancel == nil {
		return
	}
	sc.cancel()
	sc.cancel = nil
	<-sc.done
}

type pod struct {
	host *envoy.Host
	url  string
	srv  *httptest.Server
}

type run struct {
	opts          Options
	pods          [2]*pod
	relay, backup *fakeprovider.Provider
	faultMu       sync.Mutex
	faults        map[string]int64

	mu  sync.Mutex
	res Result
	// tokens[i] is the usage reported on route tokens through pod i.
	tokens [2]atomic.Int64

	sent     atomic.Int64
	received atomic.Int64 // requests the pods' servers handed to their hosts
	mid      atomic.Int64 // disconnects after a response began

	sidecar       *sidecar
	outageFailure error
}

// Run builds the mesh, drives traffic and checks the invariants. It returns an
// error only when the mesh could not be built; failed invariants are in the
// Result.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if len(opts.Module) == 0 {
		return nil, errors.New("soak: no filter module")
	}
	if opts.Duration <= 0 {
		opts.Duration = 10 * time.Second
	}
	if opts.Clients <= 0 {
		opts.Clients = 8
	}
	if opts.MaxVMMemory == 0 {
		opts.MaxVMMemory = 64 << 20
	}
	if opts.MaxHeapGrowth == 0 {
		opts.MaxHeapGrowth = 256 << 20
	}
	if opts.MaxHeapPerRequest == 0 {
		opts.MaxHeapPerRequest = 16
	}
	if opts.CompilationCache == nil {
		opts.CompilationCache = wazero.NewCompilationCache()
	}
	r := &run{opts: opts, faults: map[string]int64{}}
	r.res = Result{ByStatus: map[int]int64{}, ByRoute: map[string]int64{}, Faults: map[string]int64{}, Shepherd5xx: map[string]int64{}}

	dir, err := os.MkdirTemp("", "shepherd-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	sc := &sidecar{opts: server.Options{
		GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		ConfigPath:          write("sidecar.yaml", sidecarConfig),
		RateLimitConfigPath: write("ratelimit.yaml", rateLimits),
		FilterTokenFile:     write("filter-token", filterToken),
		Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
		RateLimit:           server.RateLimitWith(ratelimit.Options{}),
		ReloadInterval:      -1,
		TickInterval:        100 * time.Millisecond,
		ShutdownTimeout:     500 * time.Millisecond,
	}}
	if err := sc.start(ctx); err != nil {
		return nil, fmt.Errorf("soak: sidecar: %w", err)
	}
	sc.opts.GRPCListen = sc.addr // a restart comes back on the same address
	r.sidecar = sc
	defer sc.stop()

	r.relay = fakeprovider.New(fakeprovider.Options{Name: "relay", ThrottlePercent: 8, ErrorPercent: 4})
	r.backup = fakeprovider.New(fakeprovider.Options{Name: "backup", ThrottlePercent: 3, ErrorPercent: 2})
	relayURL, closeRelay := r.upstream("relay", r.relay)
	defer closeRelay()
	backupURL, closeBackup := r.upstream("backup", r.backup)
	defer closeBackup()
	clusters := map[string]string{"relay": relayURL, "backup": backupURL, "sidecar": sc.addr}
	for i := range r.pods {
		h, err := envoy.New(ctx, envoy.Config{
			Module: opts.Module, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
			PluginConfig: []byte(pluginConfig), Workers: 2, Env: map[string]string{"SHEPHERD_FILTER_TOKEN": filterToken},
			Clusters: clusters, Routes: map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
			StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: opts.CompilationCache,
		})
		if err != nil {
			return nil, fmt.Errorf("soak: pod %d: %w", i, err)
		}
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
			r.received.Add(1)
			h.ServeHTTP(w, q)
		}))
		r.pods[i] = &pod{host: h, url: front.URL, srv: front}
	}
	defer func() {
		for _, p := range r.pods {
			p.srv.Close()
			_ = p.host.Close(context.Background())
		}
	}()

	heapBefore := heapAfterGC()
	start := time.Now()
	r.traffic(ctx)
	r.res.Elapsed = time.Since(start)
	r.res.Requests = r.sent.Load()
	r.faultMu.Lock()
	for k, v := range r.faults {
		r.res.Faults[k] = v
	}
	r.faultMu.Unlock()
	r.check(ctx, heapBefore)
	return &r.res, nil
}

func statsTags() []envoy.StatsTag {
	tags := make([]envoy.StatsTag, len(telemetry.StatsTags))
	for i, t := range telemetry.StatsTags {
		tags[i] = envoy.StatsTag{Name: t.Name, Regex: t.Regex}
	}
	return tags
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// upstream serves a provider on loopback and counts the statuses it answers
// (the provider-wide throttling and errors are faults injected too).
func (r *run) upstream(name string, p *fakeprovider.Provider) (string, func()) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		p.ServeHTTP(rec, req)
		switch rec.status {
		case http.StatusTooManyRequests:
			r.fault(name + ":429")
		case http.StatusServiceUnavailable:
			r.fault(name + ":503")
		}
	}))
	return srv.Listener.Addr().String(), srv.Close
}

func (r *run) fault(kind string) {
	r.faultMu.Lock()
	r.faults[kind]++
	r.faultMu.Unlock()
}

// statusRecorder records the status while keeping Flush and Hijack (resets).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := s.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("not a hijacker")
}

// traffic runs the clients until the duration or the request count is spent.
func (r *run) traffic(ctx context.Context) {
	deadline := time.Now().Add(r.opts.Duration)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	octx, stopOutages := context.WithCancel(ctx)
	outagesDone := make(chan struct{})
	go func() {
		defer close(outagesDone)
		r.outages(octx, deadline)
	}()
	defer func() { stopOutages(); <-outagesDone }()
	samplesDone := make(chan struct{})
	go func() {
		defer close(samplesDone)
		r.sampleHeap(octx, deadline)
	}()
	defer func() { stopOutages(); <-samplesDone }()
	var wg sync.WaitGroup
	for c := 0; c < r.opts.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.opts.Seed, uint64(c)+1))
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				n := r.sent.Add(1)
				if r.opts.Requests > 0 && n > int64(r.opts.Requests) {
					r.sent.Add(-1)
					return
				}
				r.one(ctx, client, rng, int(n))
			}
		}()
	}
	if r.opts.Progress != nil {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.mu.Lock()
				r.opts.Progress(fmt.Sprintf("%d requests, %d responses, %d disconnects", r.sent.Load(), r.res.Responses, r.res.Disconnects))
				r.mu.Unlock()
			}
		}
	}
	wg.Wait()
}

// sampleHeap records the Go heap outside the VMs' linear memory (which the
// guests grow in steps and never shrink; vm-heap bounds it) about 90 times
// through the second half of the traffic phase.
func (r *run) sampleHeap(ctx context.Context, deadline time.Time) {
	span := time.Until(deadline)
	every := max(span/180, 200*time.Millisecond)
	next := time.Now().Add(span / 2)
	for next.Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(every)
		if r.opts.Requests > 0 && r.sent.Load() >= int64(r.opts.Requests) {
			return // the clients are done: not the traffic phase any more
		}
		heap := heapAfterGC()
		for _, p := range r.pods {
			for _, s := range p.host.VMStats() {
				heap -= min(heap, s.MemoryBytes)
			}
		}
		s := HeapSample{Requests: r.sent.Load(), Heap: heap}
		r.mu.Lock()
		r.res.HeapSamples = append(r.res.HeapSamples, s)
		r.mu.Unlock()
	}
}

// heapPerRequest is the least-squares slope of heap over requests sent
// (bytes per request) and its standard error (from the residuals: what the
// requests in flight at each sample add); ok is false when there are too
// few samples or requests to tell.
func heapPerRequest(samples []HeapSample) (perRequest, stdErr float64, ok bool) {
	if len(samples) < 4 {
		return 0, 0, false
	}
	var mx, my float64
	for _, s := range samples {
		mx += float64(s.Requests)
		my += float64(s.Heap)
	}
	n := float64(len(samples))
	mx, my = mx/n, my/n
	var sxy, sxx float64
	for _, s := range samples {
		dx := float64(s.Requests) - mx
		sxy += dx * (float64(s.Heap) - my)
		sxx += dx * dx
	}
	if sxx < 1 {
		return 0, 0, false
	}
	slope := sxy / sxx
	var rss float64
	for _, s := range samples {
		e := float64(s.Heap) - my - slope*(float64(s.Requests)-mx)
		rss += e * e
	}
	return slope, math.Sqrt(rss / (n - 2) / sxx), true
}

// outages stops the sidecar for a while every outageEvery, from a third of
// the run until its last fifth: fail-open routes must go on, fail-closed ones
// may answer 503.
func (r *run) outages(ctx context.Context, deadline time.Time) {
	start := time.Now()
	span := time.Until(deadline)
	every := max(span/3, 4*time.Second)
	length := min(every/4, 3*time.Second)
	for next := start.Add(span / 3); next.Add(length).Before(deadline.Add(-span / 5)); next = next.Add(every) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		r.sidecar.stop()
		r.fault("sidecar-outage")
		select {
		case <-ctx.Done():
		case <-time.After(length):
		}
		if err := r.sidecar.start(context.Background()); err != nil {
			r.outageFailure = err
			return
		}
	}
}

// plan is one client's randomized request.
type plan struct {
	route      string
	pod        int
	stream     bool
	tenant     string
	model      string
	header     map[string]string
	disconnect string // "", "early" (before the answer), "mid" (after the first bytes)
	reset      bool
}

func (r *run) plan(rng *rand.Rand, n int) plan {
	p := plan{pod: n % 2, stream: rng.IntN(3) == 0, header: map[string]string{}}
	w := rng.IntN(100)
	for _, rt := range routes {
		if w < rt.weight {
			p.route = rt.name
			break
		}
		w -= rt.weight
	}
	switch rng.IntN(10) {
	case 0:
		p.model = "client-model-" + strconv.Itoa(rng.IntN(1000)) // unlisted: label "other"
	case 1, 2:
		p.model = "deepseek-v3.2"
	default:
		p.model = "gpt-4.1"
	}
	if rng.IntN(4) > 0 {
		if rng.IntN(5) == 0 {
			p.tenant = "tenant-" + strconv.Itoa(rng.IntN(100000)) // beyond maxConsumers: the overflow bucket
		} else {
			p.tenant = "team-" + strconv.Itoa(rng.IntN(5))
		}
	}
	if rng.IntN(10) == 0 {
		p.header["x-fake-delay-ms"] = strconv.Itoa(10 + rng.IntN(150))
		r.fault("delay")
	}
	if p.route == "tokens" {
		// The token route's balance is checked exactly: its clients never
		// leave early and its streams are never reset, so every usage the
		// bucket was settled with is one the client saw.
		return p
	}
	switch k := rng.IntN(100); {
	case k < 4 && p.stream:
		p.reset = true
		p.header["x-fake-reset-after-chunks"] = strconv.Itoa(1 + rng.IntN(6))
		r.fault("reset")
	case k < 7 && !p.stream:
		p.header["x-fake-malformed"] = "1"
		r.fault("malformed")
	case k < 12:
		p.disconnect = "early"
		p.header["x-fake-delay-ms"] = "2000"
		r.fault("client-disconnect-early")
	case k < 17 && p.stream:
		p.disconnect = "mid"
		p.header["x-fake-chunk-delay-ms"] = "20"
		r.fault("client-disconnect-mid")
	}
	return p
}

func (r *run) one(ctx context.Context, client *http.Client, rng *rand.Rand, n int) {
	r.send(ctx, client, rng, r.plan(rng, n), n)
}

// send sends request n of plan p and records what the client saw.
func (r *run) send(ctx context.Context, client *http.Client, rng *rand.Rand, p plan, n int) {
	body := map[string]any{"model": p.model, "max_tokens": 40}
	if p.route == "tokens" {
		body["messages"] = []any{} // no prompt: the reservation is max_tokens alone
	} else {
		body["messages"] = []any{map[string]any{"role": "user", "content": "count the sheep " + strconv.Itoa(n)}}
	}
	if p.stream {
		body["stream"] = true
		if p.route == "tokens" {
			// The balance is checked against the usage the client saw: the
			// token route's streams ask for it, or the filter would strip the
			// usage it asked for on the client's behalf.
			body["stream_options"] = map[string]any{"include_usage": true}
		}
	}
	b, _ := json.Marshal(body)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, r.pods[p.pod].url+"/"+p.route+"/v1/chat/completions", bytes.NewReader(b))
	req.Host = "api.openai.com"
	req.Header.Set("content-type", "application/json")
	if p.tenant != "" {
		req.Header.Set("x-tenant", p.tenant)
	}
	for k, v := range p.header {
		req.Header.Set(k, v)
	}
	r.mu.Lock()
	r.res.ByRoute[p.route]++
	if p.stream {
		r.res.Streams++
	}
	r.mu.Unlock()

	if p.disconnect == "early" {
		// The client leaves before the answer, counted from when the whole
		// request was written: a client that left while its request was
		// still being written (a stalled dial or writer, on a loaded machine)
		// sent nothing the proxy could count.
		after := time.Duration(50+rng.IntN(200)) * time.Millisecond
		req = req.WithContext(httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { time.AfterFunc(after, cancel) },
		}))
	}
	resp, err := client.Do(req)
	if err != nil {
		r.mu.Lock()
		if p.disconnect != "" && errors.Is(err, context.Canceled) {
			r.res.Disconnects++
		} else {
			r.res.Errors++
		}
		r.mu.Unlock()
		return
	}
	defer resp.Body.Close()
	var data []byte
	var readErr error
	if p.disconnect == "mid" && resp.StatusCode == http.StatusOK {
		br := bufio.NewReader(resp.Body)
		_, readErr = br.ReadString('\n')
		cancel()
		r.mu.Lock()
		r.res.Responses++
		r.res.ByStatus[resp.StatusCode]++
		r.res.Disconnects++
		r.mu.Unlock()
		r.mid.Add(1)
		return
	}
	data, readErr = io.ReadAll(resp.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Responses++
	r.res.ByStatus[resp.StatusCode]++
	if readErr != nil {
		switch {
		case p.reset:
			r.res.Resets++
		case p.disconnect != "" && errors.Is(readErr, context.Canceled):
			r.res.Disconnects++
			r.mid.Add(1)
		default:
			r.res.Errors++
		}
	}
	if resp.StatusCode >= 500 && !fromProvider(resp, data) {
		r.res.Shepherd5xx[p.route]++
	}
	if p.route == "tokens" && resp.StatusCode == http.StatusOK && readErr == nil {
		r.tokens[p.pod].Add(usageOf(data, p.stream))
	}
}

// fromProvider tells a provider's answer from one the proxy produced: the fake
// providers mark every answer with x-fake-provider, and their error bodies
// carry the status as the error code (a fallback's last answer may come
// without the provider's headers).
func fromProvider(resp *http.Response, body []byte) bool {
	if resp.Header.Get("x-fake-provider") != "" {
		return true
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return false
	}
	return e.Error.Code == strconv.Itoa(resp.StatusCode) && strings.Contains(e.Error.Message, " answered ")
}

// usageOf returns the total tokens a response reported (JSON or the usage
// chunk of a stream).
func usageOf(data []byte, stream bool) int64 {
	type usage struct {
		Usage *struct {
			Total int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if !stream {
		var u usage
		if json.Unmarshal(data, &u) == nil && u.Usage != nil {
			return u.Usage.Total
		}
		return 0
	}
	var total int64
	for _, line := range strings.Split(string(data), "\n") {
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok || payload == "[DONE]" {
			continue
		}
		var u usage
		if json.Unmarshal([]byte(payload), &u) == nil && u.Usage != nil {
			total += u.Usage.Total
		}
	}
	return total
}

// check fills in the invariants.
func (r *run) check(ctx context.Context, heapBefore uint64) {
	res := &r.res
	add := func(name string, held bool, format string, args ...any) {
		res.Invariants = append(res.Invariants, Invariant{Name: name, Held: held, Detail: fmt.Sprintf(format, args...)})
	}

	if r.outageFailure != nil {
		add("sidecar-restart", false, "the sidecar did not come back after an outage: %v", r.outageFailure)
	}
	answered := res.Responses + res.Disconnects - r.midDisconnects()
	add("one-answer", res.Errors == 0 && answered+res.Errors == res.Requests,
		"%d requests = %d responses + %d early disconnects; %d unexpected transport errors",
		res.Requests, res.Responses, res.Disconnects-r.midDisconnects(), res.Errors)

	var bad []string
	for route, n := range res.Shepherd5xx {
		if route != "closed" && n > 0 {
			bad = append(bad, route+"="+strconv.FormatInt(n, 10))
		}
	}
	add("no-shepherd-5xx", len(bad) == 0, "proxy 5xx outside the fail-closed route: %s (closed: %d)",
		orDash(strings.Join(bad, " ")), res.Shepherd5xx["closed"])

	// Every stream context must be gone before the buckets and metrics are read.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && r.liveStreams() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	live := r.liveStreams() // a live stream's reservation is not settled yet

	// The providers' pauses (their Retry-After is 1 s) end before the
	// probes, so the provider memory sends them on rather than answering
	// them itself.
	time.Sleep(1100 * time.Millisecond)

	var details []string
	held := true
	minutes := int64(res.Elapsed/time.Minute) + 1
	for i, p := range r.pods {
		want := tokenCapacity - r.tokens[i].Load()
		// Refusal first: a refused probe takes nothing from the bucket, and
		// its x-ratelimit-remaining-tokens is the bucket's level.
		admittedMore, level := r.probe(ctx, p, want+minutes+1)
		admitted, _ := r.probe(ctx, p, want)
		ok := admitted && !admittedMore && live == 0
		held = held && ok
		details = append(details, fmt.Sprintf("pod %d: used %d, expected level %d (+≤%d refill): admits it %v, refuses more %v (level %s)",
			i, r.tokens[i].Load(), want, minutes, admitted, !admittedMore, level))
	}
	if live > 0 {
		details = append(details, fmt.Sprintf("%d streams still live", live))
	}
	add("tokens-balance", held, "%s", strings.Join(details, "; "))

	var traps, failed uint64
	streams := 0
	res.VMMemory = nil
	maxMem := uint64(0)
	for _, p := range r.pods {
		for _, s := range p.host.VMStats() {
			traps += s.Traps
			if s.Failed {
				failed++
			}
			streams += s.Streams
			res.VMMemory = append(res.VMMemory, s.MemoryBytes)
			maxMem = max(maxMem, s.MemoryBytes)
		}
	}
	add("no-trap", traps == 0 && failed == 0 && streams == 0, "traps %d, failed VMs %d, live streams %d", traps, failed, streams)
	add("vm-heap", maxMem <= r.opts.MaxVMMemory, "largest VM memory %d MiB (bound %d MiB)", maxMem>>20, r.opts.MaxVMMemory>>20)

	after := heapAfterGC()
	res.HeapGrowth = int64(after) - int64(heapBefore)
	add("sidecar-heap", res.HeapGrowth <= int64(r.opts.MaxHeapGrowth), "Go heap %d → %d MiB (growth bound %d MiB)",
		heapBefore>>20, after>>20, r.opts.MaxHeapGrowth>>20)
	per, se, ok := heapPerRequest(res.HeapSamples)
	res.HeapPerRequest, res.HeapPerRequestErr = per, se
	if ok {
		// The samples tell the growth per request only to their standard
		// error: the work in flight at each sample (a few MiB under load)
		// over the requests between samples. Growth beyond the bound by
		// more than three standard errors is a leak; less is what the
		// samples cannot tell from noise (more requests narrow it).
		add("heap-per-request", per-3*se <= r.opts.MaxHeapPerRequest,
			"Go heap outside the VMs grew %.2f ± %.2f bytes per request over %d samples (bound %.0f, judged at three standard errors)",
			per, se, len(res.HeapSamples), r.opts.MaxHeapPerRequest)
	} else {
		add("heap-per-request", false, "too few heap samples (%d) or requests to measure growth per request", len(res.HeapSamples))
	}

	total, models := r.metrics()
	probes := int64(4) // the token probes are requests too
	// The proxies' own count tells a request the filter missed from one that
	// never reached a proxy.
	received := r.received.Load()
	add("metrics-total", int64(total) == res.Requests+probes && int64(total) == received,
		"shepherd_requests_total %d = %d client requests + %d probes (the proxies received %d)",
		total, res.Requests, probes, received)
	var extra []string
	for m := range models {
		if !configuredModels[m] {
			extra = append(extra, m)
		}
	}
	sort.Strings(extra)
	add("metrics-labels", len(extra) == 0, "model labels %d (unconfigured: %s)", len(models), orDash(strings.Join(extra, " ")))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// midDisconnects counts the disconnects that came after a response began
// (they are counted as responses too).
func (r *run) midDisconnects() int64 { return r.mid.Load() }

func (r *run) liveStreams() int {
	n := 0
	for _, p := range r.pods {
		for _, s := range p.host.VMStats() {
			n += s.Streams
		}
	}
	return n
}

// probe asks pod p's token route for a reservation of n tokens (no prompt,
// max_tokens n) and reports whether it was admitted, and, when the token limit
// refused it, the level its x-ratelimit-remaining-tokens reports. The request
// carries no fault, so an admitted probe is settled with the usage it reports.
func (r *run) probe(ctx context.Context, p *pod, n int64) (admitted bool, level string) {
	body := `{"model":"gpt-4.1","max_tokens":` + strconv.FormatInt(n, 10) + `,"messages":[]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/tokens/v1/chat/completions", strings.NewReader(body))
	req.Host = "api.openai.com"
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, "probe failed: " + err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Only the local token limiter's refusal counts as one: it names the
	// token limit. A provider's 429 means the probe was admitted.
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("x-ratelimit-limit-tokens") == "" {
		return true, "-"
	}
	return false, resp.Header.Get("x-ratelimit-remaining-tokens")
}

// metrics sums shepherd_requests_total over both pods and collects the model
// labels of every shepherd series.
func (r *run) metrics() (uint64, map[string]bool) {
	var total float64
	models := map[string]bool{}
	for _, p := range r.pods {
		var buf bytes.Buffer
		p.host.WritePrometheus(&buf)
		for _, s := range promtext.Parse(&buf) {
			if m, ok := s.Labels[telemetry.LabelModel]; ok && strings.HasPrefix(s.Name, "shepherd_") {
				models[m] = true
			}
			if s.Name == telemetry.Requests {
				total += s.Value
			}
		}
	}
	return uint64(total), models
}
