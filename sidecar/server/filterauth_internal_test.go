package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"
)

// BenchmarkFilterTokenCheck: the cost of one token check (metadata lookup,
// SHA-256 of the presented token, constant-time comparison with two accepted
// digests) on an incoming call's context.
func BenchmarkFilterTokenCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("0123456789abcdef0123456789abcdef\nfedcba9876543210fedcba9876543210\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	f := newFilterAuth(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	if err := f.load(path); err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(FilterTokenMetadata, "fedcba9876543210fedcba9876543210"))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !f.ok(ctx) {
			b.Fatal("refused")
		}
	}
}
