package server

import (
	"fmt"
	"log/slog"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// rls adapts ratelimit.Service to RateLimit.
type rls struct {
	svc *ratelimit.Service
	st  store.Store
}

// DefaultRateLimit is the RateLimitFactory with the ratelimit package's
// default options: its service counting in Redis when an address is given,
// else in memory.
func DefaultRateLimit(reg prometheus.Registerer, rdb redis.UniversalClient, log *slog.Logger) (RateLimit, error) {
	return RateLimitWith(ratelimit.Options{})(reg, rdb, log)
}

// RateLimitWith returns a RateLimitFactory for the ratelimit package's
// service with opts; the factory fills in Registerer and Logger.
func RateLimitWith(opts ratelimit.Options) RateLimitFactory {
	return func(reg prometheus.Registerer, rdb redis.UniversalClient, log *slog.Logger) (RateLimit, error) {
		var st store.Store
		if rdb != nil {
			st = store.NewRedis(rdb, store.RedisOptions{Registerer: reg})
		} else {
			st = store.NewMemory(store.MemoryOptions{})
		}
		opts.Registerer, opts.Logger = reg, log
		return &rls{svc: ratelimit.NewService(nil, st, opts), st: st}, nil
	}
}

// ParseFailureMode reads "error", "open" or "closed".
func ParseFailureMode(s string) (ratelimit.FailureMode, error) {
	for _, m := range []ratelimit.FailureMode{ratelimit.FailError, ratelimit.FailOpen, ratelimit.FailClosed} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("must be error, open or closed, got %q", s)
}

func (r *rls) Register(g grpc.ServiceRegistrar) { r.svc.Register(g) }

func (r *rls) ServiceName() string { return rlsv3.RateLimitService_ServiceDesc.ServiceName }

// Config is the rate limit config in force; the RLQS service shares it.
func (r *rls) Config() *ratelimit.Config { return r.svc.Config() }

func (r *rls) Reload(path string) error {
	cfg, err := ratelimit.LoadConfig(path)
	if err != nil {
		return err
	}
	r.svc.SetConfig(cfg)
	return nil
}

// Close releases the store. The Redis store does not own the client.
func (r *rls) Close() error { return r.st.Close() }
