package server_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shepherd-mesh/shepherd/internal/testutil"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

// blockingRLS answers ShouldRateLimit only when released.
type blockingRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	entered chan struct{}
	release chan struct{}
}

func (b *blockingRLS) ShouldRateLimit(ctx context.Context, _ *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

func (b *blockingRLS) Register(r grpc.ServiceRegistrar) { rlsv3.RegisterRateLimitServiceServer(r, b) }
func (b *blockingRLS) Reload(string) error              { return nil }
func (b *blockingRLS) ServiceName() string              { return rlsv3.RateLimitService_ServiceDesc.ServiceName }

// TestShutdownDrainsInFlightCalls stops the server while a call is being
// handled: the call still completes, and Serve returns only afterwards.
func TestShutdownDrainsInFlightCalls(t *testing.T) {
	b := &blockingRLS{entered: make(chan struct{}), release: make(chan struct{})}
	srv, err := server.New(context.Background(), server.Options{
		GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", ReloadInterval: -1,
		ShutdownTimeout: time.Minute,
		Logger:          slog.New(slog.DiscardHandler),
		RateLimit: func(prometheus.Registerer, redis.UniversalClient, *slog.Logger) (server.RateLimit, error) {
			return b, nil
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	cc, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	called := make(chan error, 1)
	go func() {
		_, err := rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d"})
		called <- err
	}()
	testutil.Receive(t, b.entered, time.Minute)
	cancel()
	select {
	case <-served:
		t.Fatal("Serve returned with a call in flight")
	case err := <-called:
		t.Fatalf("in-flight call ended early: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(b.release)
	require.NoError(t, testutil.Receive(t, called, time.Minute), "the in-flight call completes")
	require.NoError(t, testutil.Receive(t, served, time.Minute))
}
