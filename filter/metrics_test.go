//go:build !wasip1

package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/limits"
)

// TestMetricKeyPacking checks that packing keeps every field apart, at the
// largest indexes a valid config can produce.
func TestMetricKeyPacking(t *testing.T) {
	const top = config.MaxEntries // "other" model index of a config with MaxEntries models
	keys := []metricKey{
		{},
		{kind: mDropped, extra: 15},
		{route: top - 1},
		{provider: top - 1},
		{model: top},
		{model2: top},
		{kind: 1}, {extra: 1}, {route: 1}, {provider: 1}, {model: 1}, {model2: 1},
		{kind: mFallbacks, route: top - 1, provider: top - 1, model: top, model2: top, extra: 15},
	}
	seen := map[uint64]metricKey{}
	for _, k := range keys {
		p := k.packed()
		prev, dup := seen[p]
		require.False(t, dup, "%+v and %+v pack alike", prev, k)
		seen[p] = k
	}
	require.Less(t, int(mFallbacksDenied), 16)
	for _, labels := range [][]string{codeClasses, tokenTypes, limitKinds, failModes, fallbackReasons, sidecarCalls, dropKinds, localReasons, denyReasons} {
		require.LessOrEqual(t, len(labels), 16)
	}
}

// TestLabelIndexesNameTheirLabels: each named label index picks the label
// value it stands for, so a reordered table cannot relabel a metric.
func TestLabelIndexesNameTheirLabels(t *testing.T) {
	for _, tc := range []struct {
		labels []string
		index  uint8
		want   string
	}{
		{codeClasses, codeIndex(200), "2xx"},
		{codeClasses, codeIndex(503), "5xx"},
		{codeClasses, codeIndex(0), "other"},
		{codeClasses, codeIndex(600), "other"},
		{codeClasses, codeOther, "other"},
		{codeClasses, codeReset, "reset"},
		{codeClasses, codeTimeout, "timeout"},
		{tokenTypes, tokenInput, "input"},
		{tokenTypes, tokenOutput, "output"},
		{limitKinds, limitLabel(limits.Requests, false), "requests"},
		{limitKinds, limitLabel(limits.Tokens, false), "tokens"},
		{limitKinds, limitLabel(limits.Requests, true), "global_requests"},
		{limitKinds, limitLabel(limits.Tokens, true), "global_tokens"},
		{limitKinds, limitGlobalRequests, "global_requests"},
		{limitKinds, limitGlobalTokens, "global_tokens"},
		{limitKinds, limitBudget, "budget"},
		{failModes, failOpen, "open"},
		{failModes, failClosed, "closed"},
		{sidecarCalls, callCheck, "check"},
		{sidecarCalls, callQuota, "quota"},
		{dropKinds, dropOutcomes, "outcomes"},
		{dropKinds, dropTokens, "tokens"},
		{denyReasons, denyRetryBudget, "retry_budget"},
		{denyReasons, denyCooling, "cooling"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			require.Less(t, int(tc.index), len(tc.labels))
			require.Equal(t, tc.want, tc.labels[tc.index])
		})
	}
}
