//go:build !wasip1

package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/config"
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
