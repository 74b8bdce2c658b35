// Package server runs shepherd-sidecar: one gRPC listener serving Envoy's
// RateLimitService and RateLimitQuotaService (RLQS, sharing the rate limit
// config), shepherd.policy.v1.PolicyService and the gRPC health service, and one HTTP listener serving /metrics, /healthz and /readyz.
// It reloads its files on Reload (SIGHUP) and when they change, keeping the
// last good configuration when a new one is invalid, and drains in-flight
// calls when its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/policy"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
)

// RateLimit is the rate limit service the server hosts next to the policy
// API. Reload is called with the rate limit config path at start-up and on
// every reload; it must keep the previous config when it returns an error.
type RateLimit interface {
	Register(r grpc.ServiceRegistrar)
	Reload(path string) error
	// ServiceName is the gRPC service name reported by the health service.
	ServiceName() string
}

// configSource is a RateLimit whose config the sidecar's RLQS
// (rate_limit_quota) service shares: a bucket id maps to its descriptors.
type configSource interface {
	Config() *ratelimit.Config
}

// RateLimitFactory builds the RateLimit for a server. rdb is nil unless a
// Redis address was given.
type RateLimitFactory func(reg prometheus.Registerer, rdb redis.UniversalClient, log *slog.Logger) (RateLimit, error)

// Options configure a Server. Empty paths mean "not used".
type Options struct {
	GRPCListen string // default 127.0.0.1:8081
	HTTPListen string // default 127.0.0.1:8082
	// ConfigPath is the sidecar config (YAML); "" runs with config.Empty.
	ConfigPath string
	// RateLimitConfigPath is the envoyproxy/ratelimit-format file or directory.
	RateLimitConfigPath string
	// AdminTokenFile holds the admin token; "" disables admin calls.
	AdminTokenFile string
	// FilterTokenFile holds the filter tokens the policy API accepts: a
	// file (one per line) or a directory (one per file, as a mounted
	// Secret); at most two, for rotation. Required when the config has
	// providers, budgets or canary plans.
	FilterTokenFile string
	// RateLimitRequireFilterToken refuses rate limit calls without a filter
	// token too (Envoy's ratelimit filter can send it with
	// grpc_service.initial_metadata). Needs FilterTokenFile.
	RateLimitRequireFilterToken bool
	// StateFile persists rollout state when RedisAddr is "".
	StateFile string
	// RedisAddr, when set, holds rate limit counters and rollout state: one
	// address, or a comma-separated list for a cluster's seeds or the
	// Sentinels (see Redis).
	RedisAddr string
	// Redis is the kind of Redis at RedisAddr, its credentials and TLS.
	Redis Redis
	// RedisKey is the state hash; default policy.DefaultRedisKey.
	RedisKey string
	// GRPCTLS turns on TLS, or mTLS, for the gRPC listener.
	GRPCTLS TLS

	Logger *slog.Logger
	Clock  func() time.Time
	// Registry receives every metric; default a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	// RateLimit builds the RLS; nil serves no rate limit service.
	RateLimit RateLimitFactory
	// Quota tunes the RLQS service (served with a RateLimit that shares
	// its config); its clock, logger, registry and, with Redis, Share are
	// the server's.
	Quota rlqs.Options

	ReloadInterval  time.Duration // file polling; default 5s, negative disables
	TickInterval    time.Duration // engine tick; default 1s
	ShutdownTimeout time.Duration // drain limit; default 20s
}

// Server is a running sidecar. Create it with New, run it with Serve.
type Server struct {
	opts   Options
	log    *slog.Logger
	reg    *prometheus.Registry
	engine *policy.Engine
	rl     RateLimit
	quota  *rlqs.Service // nil unless rl shares its config (configSource)
	rdb    redis.UniversalClient

	grpcLis, httpLis net.Listener
	grpcSrv          *grpc.Server
	httpSrv          *http.Server
	health           *health.Server

	token    atomic.Pointer[string]
	filter   *filterAuth
	reports  *reportLimiter
	ready    atomic.Bool
	stopping chan struct{}

	reloadMu sync.Mutex
	prints   map[string]string // file fingerprints at the last reload
	reloads  *prometheus.CounterVec
}

// streamWorkers is how many gRPC calls the sidecar runs at once on kept
// goroutines: more than the rate limit calls usually in flight (32 callers
// in docs/RATELIMIT.md's benchmarks), few enough that their stacks cost
// about a megabyte.
const streamWorkers = 64

// New loads every configured file (failing on an invalid one), restores
// state and opens both listeners. Serve must be called to serve.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.GRPCListen == "" {
		opts.GRPCListen = "127.0.0.1:8081"
	}
	if opts.HTTPListen == "" {
		opts.HTTPListen = "127.0.0.1:8082"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = 5 * time.Second
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 20 * time.Second
	}
	s := &Server{opts: opts, log: opts.Logger, reg: opts.Registry, stopping: make(chan struct{}), prints: map[string]string{}}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
		s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "shepherd_sidecar", Name: "config_reloads_total",
		Help: "Config reloads by file and result (ok, error)."}, []string{"file", "result"})
	s.reg.MustRegister(s.reloads)

	ok := false
	defer func() {
		if !ok {
			s.closeResources()
		}
	}()

	cfg := config.Empty()
	if opts.ConfigPath != "" {
		var err error
		if cfg, err = config.Load(opts.ConfigPath); err != nil {
			return nil, err
		}
	}
	if err := s.loadToken(); err != nil {
		return nil, err
	}
	s.filter = newFilterAuth(s.reg, s.log, opts.Clock)
	if opts.FilterTokenFile != "" {
		if err := s.filter.load(opts.FilterTokenFile); err != nil {
			return nil, err
		}
	}
	if err := s.checkFilterToken(cfg); err != nil {
		return nil, err
	}
	if opts.RateLimitRequireFilterToken && opts.FilterTokenFile == "" {
		return nil, errors.New("--ratelimit-require-filter-token needs --filter-token-file (SHEPHERD_SIDECAR_FILTER_TOKEN_FILE)")
	}
	s.reports = newReportLimiter(s.reg, s.log)
	s.reports.setRate(cfg.Reports.PerCallerPerSecond)
	var store policy.Store
	if opts.RedisAddr != "" {
		var err error
		if s.rdb, err = opts.Redis.NewClient(opts.RedisAddr); err != nil {
			return nil, err
		}
		store = policy.RedisStore{Client: s.rdb, Key: opts.RedisKey}
	} else if opts.StateFile != "" {
		store = policy.FileStore{Path: opts.StateFile}
	} else {
		s.log.Warn("no state file and no redis: rollout state, spend and cooldowns will not survive a restart")
	}
	var err error
	s.engine, err = policy.New(ctx, cfg, policy.Options{Clock: opts.Clock, Logger: s.log, Registerer: s.reg, Store: store})
	if err != nil {
		return nil, err
	}
	if opts.RateLimit != nil {
		if s.rl, err = opts.RateLimit(s.reg, s.rdb, s.log); err != nil {
			return nil, fmt.Errorf("rate limit service: %w", err)
		}
		if err := s.rl.Reload(opts.RateLimitConfigPath); err != nil {
			return nil, err
		}
		if src, ok := s.rl.(configSource); ok {
			qo := opts.Quota
			qo.Clock, qo.Logger, qo.Registerer = opts.Clock, s.log, s.reg
			if s.rdb != nil {
				// Replicas share Redis: they divide each limit together.
				qo.Share = rlqs.NewRedisShare(s.rdb, "")
			}
			s.quota = rlqs.New(qo)
			s.quota.SetConfig(src.Config())
		}
	}
	for _, f := range s.files() {
		s.prints[f] = fingerprint(f)
	}

	grpcOpts := []grpc.ServerOption{
		// Long-lived WatchPolicy streams: ping idle clients so dead ones go
		// away, and accept the keepalives Envoy's gRPC clients may send.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Calls run on goroutines that are kept, instead of a new one per
		// call whose stack grows from 2 KiB by copying (12% of the CPU of a
		// sidecar answering ShouldRateLimit from memory). With every worker
		// busy (a call waiting for Redis, a long-lived stream holds one)
		// gRPC starts a goroutine for the call as before.
		grpc.NumStreamWorkers(streamWorkers),
	}
	// The gRPC metrics come first, so that refused calls are counted too.
	gm := newGRPCMetrics(s.reg)
	grpcOpts = append(grpcOpts, grpc.ChainUnaryInterceptor(gm.unary()), grpc.ChainStreamInterceptor(gm.stream()))
	creds, err := opts.GRPCTLS.serverOption()
	if err != nil {
		return nil, err
	}
	if creds != nil {
		grpcOpts = append(grpcOpts, creds)
	}
	if opts.RateLimitRequireFilterToken && s.rl != nil {
		grpcOpts = append(grpcOpts, grpc.ChainUnaryInterceptor(s.filter.unaryFor(s.rl.ServiceName(), "ShouldRateLimit")))
	}
	if s.quota != nil {
		grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(s.filter.streamFor(rlqs.ServiceName, "StreamRateLimitQuotas")))
	}
	s.grpcSrv = grpc.NewServer(grpcOpts...)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)
	policyv1.RegisterPolicyServiceServer(s.grpcSrv, &policyAPI{engine: s.engine, token: &s.token, filter: s.filter,
		reports: s.reports, clock: opts.Clock, stopping: s.stopping})
	s.health.SetServingStatus(policyv1.PolicyService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if s.rl != nil {
		s.rl.Register(s.grpcSrv)
		s.health.SetServingStatus(s.rl.ServiceName(), healthpb.HealthCheckResponse_SERVING)
	}
	if s.quota != nil {
		s.quota.Register(s.grpcSrv)
		s.health.SetServingStatus(rlqs.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	gm.initialize(s.grpcSrv)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	if s.grpcLis, err = net.Listen("tcp", opts.GRPCListen); err != nil {
		return nil, fmt.Errorf("grpc listen: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", opts.HTTPListen); err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	ok = true
	return s, nil
}

// GRPCAddr is the gRPC listener's address (useful with port 0).
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the HTTP listener's address.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Engine is the policy engine the server publishes.
func (s *Server) Engine() *policy.Engine { return s.engine }

// Registry is the registry /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Serve serves until ctx ends, then shuts down gracefully: /readyz and the
// health service turn NOT_SERVING, watch streams end, in-flight calls get
// up to ShutdownTimeout to finish, and state is saved. It returns nil after
// a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.grpcSrv.Serve(s.grpcLis) }()
	go func() {
		if err := s.httpSrv.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	s.ready.Store(true)
	s.log.Info("sidecar serving", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(),
		"config", s.opts.ConfigPath, "ratelimit_config", s.opts.RateLimitConfigPath, "redis", s.opts.RedisAddr != "", "redis_type", s.opts.Redis.typeName())

	stopQuota := func() {}
	if s.quota != nil {
		qctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.quota.Run(qctx); close(done) }()
		stopQuota = func() { cancel(); <-done }
	}
	tick := time.NewTicker(s.opts.TickInterval)
	defer tick.Stop()
	var poll <-chan time.Time
	if s.opts.ReloadInterval > 0 {
		t := time.NewTicker(s.opts.ReloadInterval)
		defer t.Stop()
		poll = t.C
	}
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			serveErr = fmt.Errorf("serve: %w", err)
			break loop
		case <-tick.C:
			s.engine.Tick()
			if s.quota != nil {
				s.quota.Sweep()
			}
		case <-poll:
			s.reloadChanged()
		}
	}
	stopQuota()
	s.shutdown()
	return serveErr
}

func (s *Server) shutdown() {
	s.log.Info("sidecar shutting down", "drain_timeout", s.opts.ShutdownTimeout.String())
	s.ready.Store(false)
	s.health.Shutdown()
	close(s.stopping)
	if s.quota != nil {
		s.quota.Shutdown()
		// The clients reconnect to the other replicas, which may take this
		// one's claims at once.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := s.quota.Release(ctx); err != nil {
			s.log.Warn("rlqs: cannot release this replica's claims; they lapse with its clients' assignments", "error", err)
		}
		cancel()
	}
	drained := make(chan struct{})
	go func() { s.grpcSrv.GracefulStop(); close(drained) }()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	select {
	case <-drained:
	case <-ctx.Done():
		s.log.Warn("drain timed out; closing remaining calls")
		s.grpcSrv.Stop()
		<-drained
	}
	if err := s.httpSrv.Shutdown(ctx); err != nil {
		s.httpSrv.Close()
	}
	s.engine.Flush()
	s.closeResources()
	s.log.Info("sidecar stopped")
}

func (s *Server) closeResources() {
	if c, ok := s.rl.(interface{ Close() error }); ok && s.rl != nil {
		_ = c.Close()
	}
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if s.grpcLis != nil {
		_ = s.grpcLis.Close()
	}
	if s.httpLis != nil {
		_ = s.httpLis.Close()
	}
}

// files lists the files watched for changes.
func (s *Server) files() []string {
	var out []string
	for _, f := range []string{s.opts.ConfigPath, s.opts.RateLimitConfigPath, s.opts.AdminTokenFile, s.opts.FilterTokenFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Reload re-reads every file now (SIGHUP). Each file that fails to load
// keeps its last good content; the error is logged and returned.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var errs []error
	for _, f := range s.files() {
		s.prints[f] = fingerprint(f)
		if err := s.reloadFile(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reloadChanged reloads the files whose fingerprint changed.
func (s *Server) reloadChanged() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	for _, f := range s.files() {
		fp := fingerprint(f)
		if fp == s.prints[f] {
			continue
		}
		s.prints[f] = fp
		_ = s.reloadFile(f)
	}
}

func (s *Server) reloadFile(f string) error {
	var err error
	var kind string
	switch f {
	case s.opts.ConfigPath:
		kind = "sidecar"
		var cfg *config.Config
		if cfg, err = config.Load(f); err == nil {
			err = s.checkFilterToken(cfg)
		}
		if err == nil {
			s.engine.SetConfig(cfg)
			s.reports.setRate(cfg.Reports.PerCallerPerSecond)
		}
	case s.opts.RateLimitConfigPath:
		kind = "ratelimit"
		if s.rl != nil {
			err = s.rl.Reload(f)
		}
		if src, ok := s.rl.(configSource); ok && err == nil && s.quota != nil {
			s.quota.SetConfig(src.Config())
		}
	case s.opts.AdminTokenFile:
		kind = "admin_token"
		err = s.loadToken()
	case s.opts.FilterTokenFile:
		kind = "filter_token"
		err = s.filter.load(f)
	}
	if err != nil {
		s.reloads.WithLabelValues(kind, "error").Inc()
		s.log.Error("reload failed; keeping the last good config", "file", f, "kind", kind, "error", err)
		return err
	}
	s.reloads.WithLabelValues(kind, "ok").Inc()
	s.log.Info("reloaded", "file", f, "kind", kind)
	return nil
}

// checkFilterToken refuses a config that needs a filter token when none is
// configured: secure by default, the sidecar never serves credentials or
// takes reports that move budgets, rollouts or cooldowns from just anyone.
func (s *Server) checkFilterToken(cfg *config.Config) error {
	if s.filter.configured() {
		return nil
	}
	if field := cfg.NeedsFilterToken(); field != "" {
		return fmt.Errorf("sidecar config %s: %s needs a filter token: set --filter-token-file (SHEPHERD_SIDECAR_FILTER_TOKEN_FILE); "+
			"without it any workload that reaches the gRPC port could read provider credentials and forge outcome reports",
			s.opts.ConfigPath, field)
	}
	return nil
}

// loadToken reads the admin token file. The token is optional: a missing or
// empty file leaves admin calls refused and the service running (a
// Kubernetes Secret mounted with optional: true is an empty directory when the
// Secret does not exist). Once a token is in force, a file that goes missing
// or empty is an error and the last token stays. Any other read error is an
// error. The token never appears in errors or logs.
func (s *Server) loadToken() error {
	if s.opts.AdminTokenFile == "" {
		empty := ""
		s.token.Store(&empty)
		return nil
	}
	data, err := os.ReadFile(s.opts.AdminTokenFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		if cur := s.token.Load(); cur != nil && *cur != "" {
			return fmt.Errorf("admin token file %s: is missing or empty", s.opts.AdminTokenFile)
		}
		empty := ""
		s.token.Store(&empty)
		s.log.Warn("no admin token: admin calls are refused until the file holds one", "file", s.opts.AdminTokenFile)
		return nil
	}
	s.token.Store(&tok)
	return nil
}
