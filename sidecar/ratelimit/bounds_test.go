package ratelimit_test

import (
	"context"
	"math"
	"strings"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// TestShouldRateLimitHostileHits sends the hit counts of issues 15 and 21
// to a counter at its limit (tokens: 100 a minute) on every store, with the
// service failing open on store errors as a fail-open route would: an
// absurd hits_addend is refused with INVALID_ARGUMENT and counts nothing;
// the largest accepted one is over the limit; and the key answers
// correctly afterwards (never OK by wrapping, never a store error).
func TestShouldRateLimitHostileHits(t *testing.T) {
	type call struct {
		hits uint64
		code codes.Code
		want want // when code is OK
	}
	cases := []struct {
		name  string
		calls []call
	}{
		{
			name: "2^64-101 on a counter at its limit",
			calls: []call{
				{100, codes.OK, want{ok, 100, min, 0, 50}},
				{math.MaxUint64 - 100, codes.InvalidArgument, want{}},
				{0, codes.OK, want{ok, 100, min, 0, 50}},
				{1, codes.OK, want{over, 100, min, 0, 50}},
			},
		},
		{
			name: "2^63-1 on a fresh key",
			calls: []call{
				{math.MaxInt64, codes.InvalidArgument, want{}},
				{1, codes.OK, want{ok, 100, min, 99, 50}},
				{1, codes.OK, want{ok, 100, min, 98, 50}},
			},
		},
		{
			name: "MaxHitsAddend is over every limit and the key keeps answering",
			calls: []call{
				{ratelimit.MaxHitsAddend, codes.OK, want{over, 100, min, 0, 50}},
				{ratelimit.MaxHitsAddend, codes.OK, want{over, 100, min, 0, 50}},
				{ratelimit.MaxHitsAddend + 1, codes.InvalidArgument, want{}},
				{0, codes.OK, want{over, 100, min, 0, 50}},
				{1, codes.OK, want{over, 100, min, 0, 50}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for kind, newStore := range storeKinds(t) {
				clock := &fakeClock{}
				clock.set(t0 + 10)
				reg := prometheus.NewRegistry()
				svc := ratelimit.NewService(loadTestConfig(t), newStore(), ratelimit.Options{Clock: clock.now, FailureMode: ratelimit.FailOpen, Registerer: reg})
				client := server(t, svc)
				refused := 0
				for i, c := range tc.calls {
					resp, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
						Domain: "llm", Descriptors: descs(withHits(desc("tokens=t"), c.hits)),
					})
					require.Equal(t, c.code, status.Code(err), "%s call %d: %v", kind, i, err)
					if c.code != codes.OK {
						refused++
						require.ErrorContains(t, err, "descriptor 0: hits_addend")
						continue
					}
					require.Equal(t, []want{c.want}, statusesOf(resp), "%s call %d", kind, i)
				}
				m := gather(t, reg)
				require.Equal(t, 0.0, m["shepherd_ratelimit_store_errors_total"], kind)
				require.Equal(t, float64(refused), m["shepherd_ratelimit_invalid_requests_total"], kind)
			}
		})
	}
}

// TestShouldRateLimitBounds: a request beyond the bounds on descriptors,
// entries and lengths is refused with INVALID_ARGUMENT naming what is too
// big but not echoing it, and counts nothing; one at the bounds is served.
func TestShouldRateLimitBounds(t *testing.T) {
	entries := func(n int) *commonrl.RateLimitDescriptor {
		d := &commonrl.RateLimitDescriptor{}
		for range n {
			d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: "k", Value: "v"})
		}
		return d
	}
	many := func(n int) []*commonrl.RateLimitDescriptor {
		var ds []*commonrl.RateLimitDescriptor
		for range n {
			ds = append(ds, desc("user=alice"))
		}
		return ds
	}
	secret := "sk-" + strings.Repeat("x", ratelimit.MaxValueBytes)
	cases := []struct {
		name   string
		domain string
		descs  []*commonrl.RateLimitDescriptor
		err    string // "" when served
	}{
		{"descriptors at the bound", "llm", many(ratelimit.MaxDescriptors), ""},
		{"one descriptor too many", "llm", many(ratelimit.MaxDescriptors + 1), "rate limit request has 65 descriptors, more than 64"},
		{"entries at the bound", "llm", descs(entries(ratelimit.MaxEntries)), ""},
		{"one entry too many", "llm", descs(desc("user=a"), entries(ratelimit.MaxEntries+1)), "descriptor 1 has 33 entries, more than 32"},
		{"key too long", "llm", descs(desc(strings.Repeat("k", ratelimit.MaxKeyBytes+1) + "=v")), "descriptor 0 entry 0: key is 257 bytes, more than 256"},
		{"value at the bound", "llm", descs(desc("user=" + strings.Repeat("v", ratelimit.MaxValueBytes))), ""},
		{"value too long", "llm", descs(desc("user=a", "model="+secret)), "descriptor 0 entry 1: value is 1027 bytes, more than 1024"},
		{"domain too long", strings.Repeat("d", ratelimit.MaxDomainBytes+1), descs(desc("user=a")), "rate limit domain is 257 bytes, more than 256"},
	}
	clock := &fakeClock{}
	clock.set(t0 + 10)
	mem := store.NewMemory(store.MemoryOptions{})
	client := server(t, ratelimit.NewService(loadTestConfig(t), mem, ratelimit.Options{Clock: clock.now}))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := mem.Len()
			_, err := client.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: tc.domain, Descriptors: tc.descs})
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			require.Equal(t, tc.err, status.Convert(err).Message())
			require.NotContains(t, err.Error(), "sk-")
			require.Equal(t, before, mem.Len(), "a refused request creates no counter")
		})
	}
}
