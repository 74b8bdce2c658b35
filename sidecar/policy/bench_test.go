package policy_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/policy"
)

// BenchmarkReport measures applying a batch of 100 outcomes that touch a
// rollout, provider health and two budgets.
func BenchmarkReport(b *testing.B) {
	cfg, err := config.Parse([]byte(`
providers: [{name: openai}, {name: relay}]
canary: {routes: [{route: chat, baseline: openai, canary: relay, steps: [10, 100]}]}
budgets:
  routes: [{route: chat, monthly_usd: 1000000}]
  consumers: [{consumer: team-a, monthly_usd: 1000000}]
health: {min_requests: 1000000}
`))
	require.NoError(b, err)
	e, err := policy.New(context.Background(), cfg, policy.Options{})
	require.NoError(b, err)
	batch := make([]*policyv1.Outcome, 100)
	for i := range batch {
		batch[i] = &policyv1.Outcome{Route: "chat", Provider: []string{"openai", "relay"}[i%2], Consumer: "team-a",
			StatusCode: 200, LatencyMs: uint32(50 + i), CostMicroUsd: 10}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Report(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/outcome")
}
