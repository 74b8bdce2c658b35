package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/soak"
)

// TestSoakShort runs the soak (package soak: two pods of two worker VMs, the
// sidecar, two faulty providers, randomized clients) for a few seconds and
// asserts every invariant. make soak runs the same for minutes. It is the
// suite's longest test: go test -short leaves it out (make test runs it).
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the soak runs for 10 s; make test runs it")
	}
	res, err := soak.Run(context.Background(), soak.Options{
		Module: module(t), CompilationCache: compileCache,
		// Bounded by time, not by a request count: with providers that
		// throttle, many answers are shepherd's own instant 429s, and a
		// count would end the traffic before the sidecar outage and the
		// heap samples that the invariants need.
		Duration: 10 * time.Second, Clients: 8, Seed: 1,
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
