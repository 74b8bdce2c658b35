package policy_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/policy"
)

// consumerSpend is shepherd_sidecar_consumer_spent_usd by consumer label.
func consumerSpend(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "shepherd_sidecar_consumer_spent_usd" {
			continue
		}
		for _, m := range mf.Metric {
			out[m.Label[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestConsumerSpendSeriesAreBounded: spend per consumer is on the sidecar's
// metrics for the biggest SpendTopConsumers consumers; everyone else, and
// values too long to be a label, are summed in "other", so no report can add
// series without bound.
func TestConsumerSpendSeriesAreBounded(t *testing.T) {
	f := newFixture(t, nil)
	var outcomes []*policyv1.Outcome
	// Consumer i spends i+1 cents, so the biggest are the last ones.
	n := policy.SpendTopConsumers + 30
	for i := range n {
		outcomes = append(outcomes, &policyv1.Outcome{Route: "chat", Provider: "openai", StatusCode: 200,
			Consumer: "team-" + strconv.Itoa(i) + "/chat", CostMicroUsd: int64(i+1) * 10_000})
	}
	outcomes = append(outcomes,
		&policyv1.Outcome{Route: "chat", Provider: "openai", StatusCode: 200, Consumer: strings.Repeat("x", 200), CostMicroUsd: 5_000},
		&policyv1.Outcome{Route: "chat", Provider: "openai", StatusCode: 200, CostMicroUsd: 7_000}) // no consumer: not counted
	f.engine.Report(outcomes)
	f.engine.Tick()

	got := consumerSpend(t, f.reg)
	require.Len(t, got, policy.SpendTopConsumers+1, "the top consumers and other")
	for i := n - policy.SpendTopConsumers; i < n; i++ {
		require.InDelta(t, float64(i+1)/100, got["team-"+strconv.Itoa(i)+"/chat"], 1e-9)
	}
	other := 0.005 // the over-long value
	for i := range n - policy.SpendTopConsumers {
		other += float64(i+1) / 100
	}
	require.InDelta(t, other, got[policy.OtherConsumer], 1e-9)
}
