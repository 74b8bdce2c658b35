package server

import (
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

// DefaultRateLimit is the RateLimitFactory of the shepherd-sidecar binary:
// the ratelimit package's service counting in Redis when an address is
// given, else in memory.
func DefaultRateLimit(reg prometheus.Registerer, rdb redis.UniversalClient, log *slog.Logger) (RateLimit, error) {
	var st store.Store
	if rdb != nil {
		st = store.NewRedis(rdb, store.RedisOptions{})
	} else {
		st = store.NewMemory(store.MemoryOptions{})
	}
	svc := ratelimit.NewService(nil, st, ratelimit.Options{Registerer: reg, Logger: log})
	return &rls{svc: svc, st: st}, nil
}

func (r *rls) Register(g grpc.ServiceRegistrar) { r.svc.Register(g) }

func (r *rls) ServiceName() string { return rlsv3.RateLimitService_ServiceDesc.ServiceName }

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
