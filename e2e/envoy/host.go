// Package envoy is a proxy-wasm host on wazero that behaves like Envoy (1.33 and
// later) does for a proxy-wasm module: one VM per worker, Envoy's plugin lifecycle and
// host calls (ABI 0.2.0/0.2.1), WASI as proxy-wasm-cpp-host provides it, http and gRPC
// callouts to named clusters over the network, shared data and queues, tick timers,
// stats with Envoy's naming and Prometheus text, and plugin logs. Host.ServeHTTP is
// the HTTP filter chain plus Envoy's router. Each emulated behaviour names the Envoy or
// proxy-wasm-cpp-host source it follows; differences are stated where they are.
package envoy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Config describes a plugin as an Envoy wasm HTTP filter would be configured
// (the fields of Istio's WasmPlugin that matter) plus the clusters and routes around it.
type Config struct {
	Module       []byte // the .wasm
	PluginName   string
	RootID       string
	VMID         string
	PluginConfig []byte
	VMConfig     []byte
	Workers      int               // VMs (Envoy workers); default 1
	Clusters     map[string]string // cluster name -> host:port (plain HTTP/1.1 or gRPC over h2c)
	// ClusterTLS makes the HTTP requests and callouts to a cluster TLS with this
	// configuration (Envoy's UpstreamTlsContext transport socket).
	ClusterTLS map[string]*tls.Config
	Routes     map[string]string // :authority (host, port optional) -> cluster
	// DefaultCluster takes requests no route matches; empty means 404 like Envoy
	// without a matching route.
	DefaultCluster string
	// VirtualHosts, when set, route instead of Routes and DefaultCluster: Envoy's
	// route_config (domains with wildcards, prefix/path/regex matches, direct
	// responses, per-route timeouts and metadata).
	VirtualHosts []VirtualHost
	// Paths is the connection manager's path normalisation (none by default).
	Paths PathOptions
	// RouteTimeout is the timeout of routes that set none (Envoy's route.timeout,
	// 15 s by default): from the end of the downstream request to the end of the
	// upstream response. 0 means 15 s; negative disables it.
	RouteTimeout time.Duration
	StatsTags    []StatsTag
	// FailOpen is the plugin's fail_open: after the VM failed, streams continue without
	// the plugin; otherwise they get a 503 local reply.
	FailOpen bool
	// FailReload replaces a failed VM on the next request (Envoy's FAIL_RELOAD failure
	// policy) instead of keeping it failed until the next configuration.
	FailReload bool
	// AllowOnHeadersStopIteration is Envoy 1.35's PluginConfig.allow_on_headers_stop_iteration
	// (Istio's WasmPlugin does not expose it): a Pause from a headers callback holds
	// the headers but still delivers the body. Off (Envoy's default), a Pause stops
	// everything, body callbacks included, until proxy_continue_stream.
	AllowOnHeadersStopIteration bool
	// BufferLimitBytes caps a body the plugin buffers (Pause in a body callback):
	// more ends the request with 413, or resets a response, like Envoy's
	// per_connection_buffer_limit_bytes. 0 means Envoy's default of 1 MiB.
	BufferLimitBytes int
	// CalloutBufferLimitBytes caps the answer of an http callout the host
	// buffers, like Envoy's async client (runtime key
	// http.async_response_buffer_limit, source/common/http/async_client_impl.h
	// kBufferLimitForResponse): a larger answer fails the callout. 0 means
	// Envoy's default of 32 MiB.
	CalloutBufferLimitBytes int
	// StreamIdleTimeout ends a stream the plugin holds (paused) longer than this with
	// a 408 local reply, like Envoy's stream_idle_timeout. 0 means Envoy's default of
	// 5 minutes; negative disables it.
	StreamIdleTimeout time.Duration
	// LegacyWASI answers poll_oneoff with ENOSYS like Envoy before envoyproxy/envoy#45756.
	LegacyWASI bool
	// TimeHostCalls adds up the time of the proxy-wasm host functions the plugin
	// calls (VMStat.HostTime), at two clock reads per call.
	TimeHostCalls bool
	Env           map[string]string // environment of the VM (Istio's vmConfig.env)
	// NodeID and NodeCluster are the bootstrap's node (the node.id and node.cluster
	// properties); empty means an Istio-like sidecar identity.
	NodeID, NodeCluster string
	// NodeMetadata is the node's metadata, a serialized google.protobuf.Struct.
	NodeMetadata []byte
	LogWriter    io.Writer // plugin and host log lines; stderr by default
	// LogLevel is Envoy's wasm logger level ("trace" ... "critical"); default "info".
	// Plugin lines below it are dropped, and proxy_get_log_level reports it.
	LogLevel string
	// CompilationCache, when set, is shared between hosts (tests compile once).
	CompilationCache wazero.CompilationCache
	// NoPlugin runs the filter chain without a plugin: each worker has no VM, the
	// streams go through the same router and no guest code runs. It is the
	// passthrough baseline of benchmarks; Module must be empty.
	NoPlugin bool
	// Filters are further wasm filters after the plugin above, in chain order
	// (several envoy.filters.http.wasm filters in one http_connection_manager).
	// A request passes through every filter's request callbacks in order, the
	// response through their response callbacks in reverse order, and the last
	// filter hands the request to the router. A filter whose vm_id, VM
	// configuration and code equal an earlier one's runs on the same VMs with
	// its own root context (Envoy's VM key, proxy-wasm-cpp-host src/wasm.cc
	// makeVmKey); shared data and queues are shared by vm_id across all of them.
	Filters []Filter
	// Services are wasm services (bootstrap_extensions envoy.bootstrap.wasm,
	// Envoy's WasmService): plugins outside any filter chain. A singleton runs
	// on a VM of its own (Envoy's main thread); otherwise it runs on each
	// worker, sharing the worker VMs of filters with its VM key. Their root
	// contexts share data and queues with the filters by vm_id.
	Services []Service
	// Listeners are further listeners of the same process (a bootstrap's
	// static_resources.listeners after the first): each its own route
	// configuration, path options and HTTP filter chain, served by the handler
	// Host.Listeners returns. Their wasm filters share VMs with every filter of
	// the same VM key, and shared data and queues by vm_id, as Envoy's one
	// process does: the VM cache is keyed by makeVmKey, not by listener
	// (proxy-wasm-cpp-host src/wasm.cc createWasm, Envoy
	// source/extensions/common/wasm/wasm.cc createWasm), and shared data and
	// queues are process-wide (source/extensions/common/wasm/context.cc,
	// proxy-wasm-cpp-host src/shared_data.cc, src/shared_queue.cc).
	Listeners []Listener
}

// Listener is a further listener of Config.Listeners: an http_connection_manager
// with its own routes and filter chain. Clusters, workers, stats, node and
// timeouts other than the stream idle timeout are the process's (Config's).
type Listener struct {
	Name string
	// VirtualHosts, Routes and DefaultCluster route as Config's do.
	VirtualHosts   []VirtualHost
	Routes         map[string]string
	DefaultCluster string
	Paths          PathOptions
	// StreamIdleTimeout is this connection manager's (see Config).
	StreamIdleTimeout time.Duration
	// NoPlugin: the chain has no wasm filter, only the router.
	NoPlugin bool
	// Filter is the first wasm filter (unless NoPlugin), Filters the further
	// ones in chain order.
	Filter
	Filters []Filter
}

// Service is a wasm service of Config.Services.
type Service struct {
	Filter
	Singleton bool
}

// Filter is one further envoy.filters.http.wasm filter of Config.Filters: its
// plugin (PluginConfig) and the VM it runs on (Module, VMID, VMConfig, Env).
type Filter struct {
	Module       []byte
	PluginName   string
	RootID       string
	VMID         string
	PluginConfig []byte
	VMConfig     []byte
	Env          map[string]string
	FailOpen     bool
}

// Host runs one plugin (and the further filters of Config.Filters) on Workers VMs.
// It is safe for concurrent use.
type Host struct {
	cfg           Config
	ctx           context.Context
	cancel        context.CancelFunc
	rt            wazero.Runtime
	compiled      wazero.CompiledModule
	logs          *logRing
	logLevel      LogLevel
	stats         *statsStore
	shared        *sharedData
	queues        *sharedQueues
	transport     *http.Transport
	tlsTransports map[string]*http.Transport // per TLS cluster (Config.ClusterTLS)
	environ       []string
	nodeID        string
	nodeCluster   string
	nodeMetadata  *structpb.Struct
	idleTimeout   time.Duration
	bufferLimit   int
	// calloutLimit is what one http callout's answer may buffer.
	calloutLimit int
	routes       *routeTable // nil: Config.Routes and DefaultCluster route
	// routeTimeout is the default route timeout (0: none).
	routeTimeout time.Duration

	vmSeq atomic.Uint64
	rr    atomic.Uint64

	mu           sync.RWMutex
	vms          []*vm
	gen          uint64
	pluginConfig []byte
	closed       bool

	inflight sync.WaitGroup

	grpcMu    sync.Mutex
	grpcConns map[string]*grpc.ClientConn

	createdVMs *metric
	activeVMs  *metric

	// trace, when set before requests run, sees every guest export call (tests).
	trace atomic.Pointer[func(ctxID uint32, export string)]

	// The filter chain (Config.Filters). Each filter is a Host: first is the
	// chain's first (nil on the first itself), next the filter after this one
	// (nil on the last, which routes), chain every filter (on the first).
	// owner is the earlier filter whose VMs this one's plugin shares.
	first, next, owner *Host
	chain              []*Host
	logPrefix          string
	// root is the process's first host (nil on itself), whose stores every
	// other filter, service and listener shares; listeners are the heads of
	// Config.Listeners' chains (on the root).
	root      *Host
	listeners []*Host
}

// New compiles the module once and starts Workers VMs, each through Envoy's start
// sequence. A start failure (a trap, proxy_on_vm_start or proxy_on_configure returning
// false, a missing import) is returned with the plugin's log lines of that start.
func New(ctx context.Context, cfg Config) (*Host, error) {
	filters, services, listeners := cfg.Filters, cfg.Services, cfg.Listeners
	cfg.Filters, cfg.Services, cfg.Listeners = nil, nil, nil
	if len(filters)+len(services) > 0 {
		switch {
		case cfg.NoPlugin:
			return nil, errors.New("config.no_plugin: further filters and services need a plugin in the first filter")
		case cfg.FailReload:
			return nil, errors.New("config.fail_reload: not supported with several filters or services")
		}
	}
	if len(listeners) > 0 && cfg.FailReload {
		return nil, errors.New("config.fail_reload: not supported with several listeners")
	}
	h, err := build(ctx, cfg, nil, nil, false)
	if err != nil {
		return nil, err
	}
	h.chain = []*Host{h}
	if err := h.buildChain(ctx, cfg, h, filters); err != nil {
		_ = h.Close(context.Background())
		return nil, err
	}
	for i, l := range listeners {
		c := cfg
		c.VirtualHosts, c.Routes, c.DefaultCluster, c.Paths = l.VirtualHosts, l.Routes, l.DefaultCluster, l.Paths
		c.StreamIdleTimeout, c.NoPlugin = l.StreamIdleTimeout, l.NoPlugin
		c.Module, c.PluginName, c.RootID, c.VMID = l.Module, l.PluginName, l.RootID, l.VMID
		c.PluginConfig, c.VMConfig, c.Env, c.FailOpen = l.PluginConfig, l.VMConfig, l.Env, l.FailOpen
		if l.NoPlugin && len(l.Filters) > 0 {
			_ = h.Close(context.Background())
			return nil, fmt.Errorf("config.listeners[%d].no_plugin: further filters need a plugin in the first filter", i)
		}
		head, err := build(ctx, c, h, nil, true)
		if err != nil {
			_ = h.Close(context.Background())
			return nil, fmt.Errorf("config.listeners[%d]: %w", i, err)
		}
		h.chain = append(h.chain, head)
		h.listeners = append(h.listeners, head)
		if err := h.buildChain(ctx, c, head, l.Filters); err != nil {
			_ = h.Close(context.Background())
			return nil, fmt.Errorf("config.listeners[%d]: %w", i, err)
		}
	}
	for i, s := range services {
		c := cfg
		c.Module, c.PluginName, c.RootID, c.VMID = s.Module, s.PluginName, s.RootID, s.VMID
		c.PluginConfig, c.VMConfig, c.Env, c.FailOpen = s.PluginConfig, s.VMConfig, s.Env, s.FailOpen
		if s.Singleton {
			c.Workers = 1
		}
		sub, err := build(ctx, c, h, h, !s.Singleton)
		if err != nil {
			_ = h.Close(context.Background())
			return nil, fmt.Errorf("config.services[%d]: %w", i, err)
		}
		// Not in the request path; closed and counted with the chain.
		h.chain = append(h.chain, sub)
	}
	return h, nil
}

// buildChain builds the further filters after head (the first filter of one
// listener's chain) with cfg's routes, appending them to the root's chain.
func (h *Host) buildChain(ctx context.Context, cfg Config, head *Host, filters []Filter) error {
	prev := head
	for i, f := range filters {
		c := cfg
		c.Module, c.PluginName, c.RootID, c.VMID = f.Module, f.PluginName, f.RootID, f.VMID
		c.PluginConfig, c.VMConfig, c.Env, c.FailOpen = f.PluginConfig, f.VMConfig, f.Env, f.FailOpen
		c.NoPlugin = false
		sub, err := build(ctx, c, h, head, true)
		if err != nil {
			return fmt.Errorf("config.filters[%d]: %w", i, err)
		}
		prev.next = sub
		prev = sub
		h.chain = append(h.chain, sub)
	}
	return nil
}

// Listeners returns the handlers of Config.Listeners, in order: each runs its
// listener's filter chain and routes.
func (h *Host) Listeners() []http.Handler {
	out := make([]http.Handler, len(h.listeners))
	for i, l := range h.listeners {
		out[i] = l
	}
	return out
}

// vmShareKey is what decides whether two filters share VMs, as Envoy's
// proxy_wasm::makeVmKey(vm_id, vm_configuration, code) does.
func vmShareKey(c *Config) string {
	sum := sha256.Sum256(c.Module)
	return c.VMID + "\x00" + string(c.VMConfig) + "\x00" + string(sum[:])
}

// build makes one filter's (or service's, or listener's) host; root, when set,
// is the process's first host, whose stores (stats, logs, shared data and
// queues, transports) it shares, and with share its plugin runs on the VMs of
// an earlier one with the same VM key. first, when set, is the first filter of
// the chain this one is a later filter of.
func build(ctx context.Context, cfg Config, root, first *Host, share bool) (*Host, error) {
	switch {
	case cfg.NoPlugin && len(cfg.Module) > 0:
		return nil, errors.New("config.module: must be empty without a plugin")
	case !cfg.NoPlugin && len(cfg.Module) == 0:
		return nil, errors.New("config.module: must not be empty")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	for name, addr := range cfg.Clusters {
		if name == "" {
			return nil, errors.New("config.clusters: cluster name must not be empty")
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("config.clusters[%s]: %w", name, err)
		}
	}
	for name := range cfg.ClusterTLS {
		if _, ok := cfg.Clusters[name]; !ok {
			return nil, fmt.Errorf("config.cluster_tls[%s]: unknown cluster", name)
		}
	}
	for auth, c := range cfg.Routes {
		if _, ok := cfg.Clusters[c]; !ok {
			return nil, fmt.Errorf("config.routes[%s]: unknown cluster %q", auth, c)
		}
	}
	if cfg.DefaultCluster != "" {
		if _, ok := cfg.Clusters[cfg.DefaultCluster]; !ok {
			return nil, fmt.Errorf("config.default_cluster: unknown cluster %q", cfg.DefaultCluster)
		}
	}
	var routes *routeTable
	if len(cfg.VirtualHosts) > 0 {
		if len(cfg.Routes) > 0 || cfg.DefaultCluster != "" {
			return nil, errors.New("config.virtual_hosts: set either virtual hosts or routes and a default cluster")
		}
		vhs := make([]VirtualHost, len(cfg.VirtualHosts))
		for i, vh := range cfg.VirtualHosts {
			vh.Routes = append([]Route(nil), vh.Routes...)
			vhs[i] = vh
		}
		var err error
		if routes, err = compileRoutes(vhs, cfg.Clusters); err != nil {
			return nil, err
		}
		cfg.VirtualHosts = vhs
	}
	level, err := ParseLogLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("config.log_level: %w", err)
	}
	stats, err := newStatsStore(cfg.StatsTags)
	if err != nil {
		return nil, fmt.Errorf("config.%w", err)
	}
	hctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		cfg: cfg, ctx: hctx, cancel: cancel,
		logs: newLogRing(cfg.LogWriter, cfg.PluginName, cfg.RootID, cfg.VMID), logLevel: level,
		stats: stats, shared: newSharedData(), queues: newSharedQueues(),
		transport: &http.Transport{
			Proxy:               nil,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     60 * time.Second,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
		grpcConns:    map[string]*grpc.ClientConn{},
		pluginConfig: cfg.PluginConfig,
		nodeID:       "sidecar~127.0.0.1~shepherd-local.default~default.svc.cluster.local",
		nodeCluster:  "shepherd-local.default",
	}
	h.routes = routes
	h.logPrefix = logPrefix(cfg.PluginName, cfg.RootID, cfg.VMID)
	h.first = first
	if root != nil {
		h.root = root
		h.logs, h.stats, h.shared, h.queues = root.logs, root.stats, root.shared, root.queues
		h.transport = root.transport
	}
	if cfg.NodeID != "" {
		h.nodeID = cfg.NodeID
	}
	if cfg.NodeCluster != "" {
		h.nodeCluster = cfg.NodeCluster
	}
	if len(cfg.NodeMetadata) > 0 {
		h.nodeMetadata = &structpb.Struct{}
		if err := proto.Unmarshal(cfg.NodeMetadata, h.nodeMetadata); err != nil {
			cancel()
			return nil, fmt.Errorf("config.node_metadata: %w", err)
		}
	}
	for name, tc := range cfg.ClusterTLS {
		if root != nil {
			h.tlsTransports = root.tlsTransports
			break
		}
		t := h.transport.Clone()
		t.TLSClientConfig = tc.Clone()
		t.ForceAttemptHTTP2 = true
		if h.tlsTransports == nil {
			h.tlsTransports = map[string]*http.Transport{}
		}
		h.tlsTransports[name] = t
	}
	switch {
	case cfg.RouteTimeout == 0:
		h.routeTimeout = 15 * time.Second // Envoy's default route timeout
	case cfg.RouteTimeout > 0:
		h.routeTimeout = cfg.RouteTimeout
	}
	h.bufferLimit = cfg.BufferLimitBytes
	if h.bufferLimit <= 0 {
		h.bufferLimit = 1 << 20
	}
	h.calloutLimit = cfg.CalloutBufferLimitBytes
	if h.calloutLimit <= 0 {
		h.calloutLimit = DefaultCalloutBufferLimit
	}
	switch {
	case cfg.StreamIdleTimeout == 0:
		h.idleTimeout = 5 * time.Minute
	case cfg.StreamIdleTimeout > 0:
		h.idleTimeout = cfg.StreamIdleTimeout
	}
	for k, v := range cfg.Env {
		h.environ = append(h.environ, k+"="+v)
	}
	sort.Strings(h.environ)
	// Envoy's runtime stats (source/extensions/common/wasm/stats_handler.cc): VMs created
	// and active, under the runtime's name (Istio runs V8).
	h.createdVMs = h.stats.get(metricCounter, "wasm.envoy.wasm.runtime.v8.created")
	h.activeVMs = h.stats.get(metricGauge, "wasm.envoy.wasm.runtime.v8.active")

	if root != nil && share && !cfg.NoPlugin {
		key := vmShareKey(&cfg)
		for _, o := range root.chain {
			if o.owner != nil || o.cfg.NoPlugin || o.cfg.Workers != cfg.Workers || vmShareKey(&o.cfg) != key {
				continue
			}
			// The same VM key: this plugin gets a root context on each of o's VMs.
			h.owner, h.rt, h.compiled, h.vms, h.gen = o, o.rt, o.compiled, o.vms, o.gen
			for _, v := range h.vms {
				v.mu.Lock()
				err := v.startRootLocked(h, cfg.PluginConfig, nil)
				v.mu.Unlock()
				if err != nil {
					cancel()
					return nil, &StartError{Err: fmt.Errorf("vm %d: %w", v.idx, err)}
				}
			}
			return h, nil
		}
	}
	rc := wazero.NewRuntimeConfig()
	if cfg.CompilationCache != nil {
		rc = rc.WithCompilationCache(cfg.CompilationCache)
	}
	h.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	fail := func(err error) (*Host, error) {
		_ = h.rt.Close(context.Background())
		cancel()
		return nil, err
	}
	if cfg.NoPlugin {
		h.vms, h.gen = h.pluginlessVMs(cfg.Workers, 1), 1
		return h, nil
	}
	h.compiled, err = h.rt.CompileModule(ctx, cfg.Module)
	if err != nil {
		return fail(fmt.Errorf("failed to load wasm module: %w", err))
	}
	abi := moduleABI(h.compiled)
	if abi == "" {
		// proxy-wasm-cpp-host src/wasm.cc WasmBase::load.
		return fail(errors.New("failed to load wasm module: missing or unknown proxy-wasm abi version"))
	}
	if err := h.buildEnv(ctx, abi); err != nil {
		return fail(fmt.Errorf("env host module: %w", err))
	}
	for _, m := range []string{"wasi_snapshot_preview1", "wasi_unstable"} {
		if err := h.buildWASI(ctx, m, cfg.LegacyWASI); err != nil {
			return fail(fmt.Errorf("wasi host module: %w", err))
		}
	}
	vms, err := h.startVMs(ctx, cfg.Workers, 1, cfg.PluginConfig)
	if err != nil {
		return fail(err)
	}
	h.vms, h.gen = vms, 1
	return h, nil
}

// StartError is a failed VM start with the plugin log lines written during it.
type StartError struct {
	Err  error
	Logs []LogLine
}

func (e *StartError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	for _, l := range e.Logs {
		b.WriteString("\n  ")
		b.WriteString(l.Text)
	}
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }

func (h *Host) startVMs(ctx context.Context, n int, gen uint64, pluginConfig []byte) ([]*vm, error) {
	before := len(h.logs.snapshot())
	var vms []*vm
	for i := 0; i < n; i++ {
		v, err := h.newVM(ctx, i, gen, pluginConfig)
		if err != nil {
			for _, o := range vms {
				o.shutdown()
				h.activeVMs.value.Add(-1)
			}
			lines := h.logs.snapshot()
			if before > len(lines) {
				before = 0
			}
			h.logs.host(i, LogError, "wasm vm start failed: "+err.Error())
			return nil, &StartError{Err: fmt.Errorf("vm %d: %w", i, err), Logs: lines[before:]}
		}
		h.createdVMs.value.Add(1)
		h.activeVMs.value.Add(1)
		vms = append(vms, v)
	}
	return vms, nil
}

// pickVM spreads requests over the workers round-robin. A failed VM stays in place
// (Envoy keeps serving the stream through fail_open/closed) unless FailReload is set.
func (h *Host) pickVM(worker int) *vm {
	h.mu.RLock()
	vms := h.vms
	h.mu.RUnlock()
	i := worker % len(vms)
	v := vms[i]
	if v.failed.Load() && h.cfg.FailReload {
		h.mu.Lock()
		if h.vms[i] == v && !h.closed {
			nv, err := h.newVM(h.ctx, i, h.gen, h.pluginConfig)
			if err == nil {
				h.createdVMs.value.Add(1)
				h.activeVMs.value.Add(1)
				h.vms[i] = nv
				h.logs.host(i, LogInfo, "wasm vm reloaded after failure")
				go h.retire(v)
			}
		}
		v = h.vms[i]
		h.mu.Unlock()
	}
	return v
}

// vmFailed is called (VM mutex held) when a VM traps.
func (h *Host) vmFailed(v *vm) {
	h.logs.host(v.idx, LogError, "wasm vm failed: further callbacks of this vm are not run")
}

// pluginLog records a plugin line at or above the configured level.
func (h *Host) pluginLog(v *vm, level LogLevel, msg string) {
	if level < h.logLevel {
		return
	}
	h.logs.plugin(h.logPrefix, v.idx, level, msg)
}

// upstream is how requests reach a cluster: the URL scheme and the transport.
func (h *Host) upstream(cluster string) (string, http.RoundTripper) {
	if t := h.tlsTransports[cluster]; t != nil {
		return "https://", t
	}
	return "http://", h.transport
}

// route maps an :authority to a cluster: exact match, then the host without its port,
// then the default cluster. The route name is the matched authority or "default".
func (h *Host) route(authority string) (cluster, routeName string, ok bool) {
	if c, ok := h.cfg.Routes[authority]; ok {
		return c, authority, true
	}
	host := authority
	if hh, _, err := net.SplitHostPort(authority); err == nil {
		host = hh
	}
	if c, ok := h.cfg.Routes[host]; ok {
		return c, host, true
	}
	if h.cfg.DefaultCluster != "" {
		return h.cfg.DefaultCluster, "default", true
	}
	return "", "", false
}

// Reconfigure applies a new plugin configuration like an xDS update: a canary VM is
// started and configured first and, if that fails, the error is returned and the old
// configuration stays in force. Otherwise new VMs replace the old ones, which finish
// their in-flight streams and are then drained.
//
// Difference from Envoy: Envoy may keep the VMs and start a new root context; here
// every VM is replaced (shared data and queues persist, they belong to the vm_id).
func (h *Host) Reconfigure(pluginConfig []byte) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errors.New("host is closed")
	}
	if len(h.chain) > 1 {
		h.mu.Unlock()
		return errors.New("reconfigure: a host with several filters is configured only at its start")
	}
	gen := h.gen + 1
	h.mu.Unlock()
	var vms []*vm
	if h.cfg.NoPlugin {
		vms = h.pluginlessVMs(h.cfg.Workers, gen)
	} else {
		var err error
		if vms, err = h.startVMs(h.ctx, h.cfg.Workers, gen, pluginConfig); err != nil {
			return err
		}
	}
	h.mu.Lock()
	old := h.vms
	h.vms, h.gen, h.pluginConfig = vms, gen, pluginConfig
	h.mu.Unlock()
	for _, v := range old {
		go h.retire(v)
	}
	return nil
}

// retire waits for a VM's streams to end, then drains it.
func (h *Host) retire(v *vm) {
	for {
		v.mu.Lock()
		n := len(v.streams)
		v.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	v.drain()
	if v.mod != nil {
		h.activeVMs.value.Add(-1)
	}
}

// Close stops all VMs (after proxy_on_done/proxy_on_delete on their root contexts),
// cancels callouts and releases the runtime. In-flight requests are waited for until
// ctx ends.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	vms := h.vms
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		h.inflight.Wait()
		for _, l := range h.listeners {
			l.inflight.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	h.cancel()
	for _, v := range vms {
		v.drain()
		if v.mod != nil {
			h.activeVMs.value.Add(-1)
		}
	}
	for _, sub := range h.chain[min(1, len(h.chain)):] {
		sub.cancel()
		if sub.owner != nil {
			continue // its root contexts were drained with the owner's VMs
		}
		for _, v := range sub.vms {
			v.drain()
			if v.mod != nil {
				h.activeVMs.value.Add(-1)
			}
		}
		_ = sub.rt.Close(context.Background())
	}
	h.grpcMu.Lock()
	for _, c := range h.grpcConns {
		_ = c.Close()
	}
	h.grpcMu.Unlock()
	h.transport.CloseIdleConnections()
	for _, t := range h.tlsTransports {
		t.CloseIdleConnections()
	}
	return h.rt.Close(context.Background())
}

// WritePrometheus writes all stats as Envoy's /stats/prometheus would.
func (h *Host) WritePrometheus(w io.Writer) { h.stats.writePrometheus(w) }

// Logs returns the most recent log lines (plugin and host), oldest first.
func (h *Host) Logs() []LogLine { return h.logs.snapshot() }

// VMStat describes one worker VM.
type VMStat struct {
	Index       int
	MemoryBytes uint64 // linear memory size (the guest's heap grows it, never shrinks)
	Callbacks   uint64 // guest exports called
	// GuestTime is the time spent in guest exports called by the host (the
	// host functions they call included; nested calls counted once).
	GuestTime time.Duration
	// HostTime is the part of GuestTime spent in proxy-wasm host functions,
	// with Config.TimeHostCalls (0 otherwise).
	HostTime time.Duration
	Traps    uint64
	Failed   bool
	Streams  int // live stream contexts
}

// VMStats reports each current worker VM.
func (h *Host) VMStats() []VMStat {
	h.mu.RLock()
	vms := h.vms
	h.mu.RUnlock()
	for _, sub := range h.chain[min(1, len(h.chain)):] {
		if sub.owner == nil {
			vms = append(vms[:len(vms):len(vms)], sub.vms...)
		}
	}
	out := make([]VMStat, len(vms))
	for i, v := range vms {
		v.mu.Lock()
		out[i] = VMStat{Index: v.idx, MemoryBytes: v.memoryBytes(), Callbacks: v.callbacks.Load(),
			GuestTime: time.Duration(v.guestNanos.Load()), HostTime: time.Duration(v.hostNanos.Load()),
			Traps: v.traps.Load(), Failed: v.failed.Load(), Streams: len(v.streams)}
		v.mu.Unlock()
	}
	return out
}
