package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/soak"
)

// TestSoakShort runs the soak (package soak: two pods of two worker VMs, the
// sidecar, two faulty providers, randomized clients) for a few seconds and
// asserts every invariant. make soak runs the same for minutes.
func TestSoakShort(t *testing.T) {
	res, err := soak.Run(context.Background(), soak.Options{
		Module: module(t), CompilationCache: compileCache,
		Duration: 12 * time.Second, Requests: 3000, Clients: 8, Seed: 1,
		// A few seconds of samples tell only a gross leak (kilobytes per
		// request); make soak's minutes hold the default bound.
		MaxHeapPerRequest: 4096,
	})
	require.NoError(t, err)
	var table strings.Builder
	res.Table(&table)
	t.Logf("\n%s", table.String())
	require.Positive(t, res.Requests)
	for _, kind := range []string{"reset", "malformed", "delay", "client-disconnect-early", "relay:429", "sidecar-outage"} {
		require.Positive(t, res.Faults[kind], "no %s fault injected", kind)
	}
	for _, inv := range res.Invariants {
		require.True(t, inv.Held, "invariant %s: %s", inv.Name, inv.Detail)
	}
	require.True(t, res.OK())
}
