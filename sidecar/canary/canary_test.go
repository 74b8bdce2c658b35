package canary_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/sidecar/canary"
)

func plan() canary.Plan {
	return canary.Plan{
		Route: "chat", Baseline: "openai", Canary: "relay",
		Steps: []uint32{10, 25, 50, 100}, Interval: time.Minute,
		MinRequests: 10, MaxErrorRate: 0.1, MaxP99Ratio: 1.5,
	}
}

// stats builds a window side: n outcomes, the first errs failing, with the
// given latency.
func stats(n, errs int, latency uint32) canary.Stats {
	var s canary.Stats
	for i := 0; i < n; i++ {
		status := uint32(200)
		if i < errs {
			status = 503
		}
		s.Add(status, latency)
	}
	return s
}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name     string
		w        canary.Window
		decision canary.Decision
		reason   string
	}{
		{"interval not over", canary.Window{Canary: stats(20, 0, 100), Elapsed: 30 * time.Second},
			canary.Wait, "step interval not over (30s of 1m0s)"},
		{"too few requests", canary.Window{Canary: stats(9, 0, 100), Elapsed: 2 * time.Minute},
			canary.Wait, "canary has 9 of 10 requests"},
		{"healthy", canary.Window{Canary: stats(20, 2, 100), Baseline: stats(100, 0, 100), Elapsed: time.Minute},
			canary.Advance, "canary healthy: 20 requests, error rate 10.00%"},
		{"errors roll back before the interval", canary.Window{Canary: stats(20, 3, 100), Elapsed: time.Second},
			canary.Rollback, "canary error rate 15.00% (3 of 20) is above 10.00%"},
		{"errors below min requests wait", canary.Window{Canary: stats(5, 5, 100), Elapsed: time.Hour},
			canary.Wait, "canary has 5 of 10 requests"},
		{"slow canary rolls back", canary.Window{Canary: stats(20, 0, 400), Baseline: stats(50, 0, 200), Elapsed: time.Minute},
			canary.Rollback, "canary p99 400ms is above 1.50 x baseline p99 200ms"},
		{"no baseline skips latency", canary.Window{Canary: stats(20, 0, 5000), Elapsed: time.Minute},
			canary.Advance, "canary healthy: 20 requests, error rate 0.00%"},
		{"429 counts as error", canary.Window{Canary: func() canary.Stats {
			s := stats(10, 0, 1)
			s.Add(429, 1)
			s.Add(429, 1)
			return s
		}(), Elapsed: time.Minute},
			canary.Rollback, "canary error rate 16.67% (2 of 12) is above 10.00%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := canary.Analyze(plan(), tt.w)
			require.Equal(t, tt.decision, v.Decision)
			require.Equal(t, tt.reason, v.Reason)
		})
	}
}

func TestAnalyzeLatencyOff(t *testing.T) {
	p := plan()
	p.MaxP99Ratio = 0
	v := canary.Analyze(p, canary.Window{Canary: stats(20, 0, 900), Baseline: stats(20, 0, 10), Elapsed: time.Minute})
	require.Equal(t, canary.Advance, v.Decision)
}

func TestStatsQuantileWithinFivePercent(t *testing.T) {
	var s canary.Stats
	for i := uint32(1); i <= 1000; i++ {
		s.Add(200, i)
	}
	require.Equal(t, uint64(1000), s.Requests)
	require.InDelta(t, 990, float64(s.P99()), 990*0.05)
	require.InDelta(t, 500, float64(s.Quantile(0.5)), 500*0.05)
	var empty canary.Stats
	require.Zero(t, empty.P99())
	require.Zero(t, empty.ErrorRate())
}

func feed(r *canary.Rollout, provider string, n int, status, latency uint32) {
	for i := 0; i < n; i++ {
		r.Observe(provider, status, latency)
	}
}

func TestRolloutAdvancesToPromotion(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	r := canary.NewRollout(plan(), t0)
	require.Equal(t, canary.Progressing, r.State())
	require.Equal(t, uint32(1000), r.Weight())

	now := t0
	for _, want := range []uint32{2500, 5000, 10000} {
		feed(r, "relay", 10, 200, 100)
		feed(r, "openai", 10, 200, 100)
		_, changed := r.Evaluate(now.Add(30 * time.Second))
		require.False(t, changed, "must wait for the interval")
		now = now.Add(time.Minute)
		v, changed := r.Evaluate(now)
		require.True(t, changed)
		require.Equal(t, canary.Advance, v.Decision)
		require.Equal(t, want, r.Weight())
	}
	require.Equal(t, canary.Promoted, r.State())
	require.Equal(t, 4, r.Step())
	_, changed := r.Evaluate(now.Add(time.Hour))
	require.False(t, changed)
}

func TestRolloutRollsBackOnErrors(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := canary.NewRollout(plan(), t0)
	feed(r, "relay", 8, 200, 100)
	feed(r, "relay", 2, 500, 100)
	feed(r, "other", 100, 500, 100) // not part of the plan
	v, changed := r.Evaluate(t0.Add(time.Second))
	require.True(t, changed)
	require.Equal(t, canary.Rollback, v.Decision)
	require.Equal(t, canary.RolledBack, r.State())
	require.Zero(t, r.Weight())
	require.Equal(t, "rollback", r.LastVerdict())
}

func TestRolloutCommands(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := plan()
	r := canary.NewRollout(p, t0)

	require.NoError(t, r.Pause(t0))
	require.Equal(t, canary.Paused, r.State())
	feed(r, "relay", 50, 200, 1)
	_, changed := r.Evaluate(t0.Add(time.Hour))
	require.False(t, changed, "a paused rollout does not step")
	require.Equal(t, uint32(1000), r.Weight())

	require.NoError(t, r.Resume(t0))
	require.Equal(t, canary.Progressing, r.State())
	require.Equal(t, uint32(1000), r.Weight())

	require.NoError(t, r.SetWeight(3000, t0))
	require.Equal(t, canary.Manual, r.State())
	require.Equal(t, uint32(3000), r.Weight())
	require.ErrorIs(t, r.SetWeight(10001, t0), canary.ErrInvalidWeight)
	require.Error(t, r.Pause(t0), "manual weight cannot be paused")

	require.NoError(t, r.Resume(t0))
	require.Equal(t, uint32(5000), r.Weight(), "resume from manual goes to the first step at or above the weight")
	require.Equal(t, 2, r.Step())

	r.Promote(t0)
	require.Equal(t, canary.Promoted, r.State())
	require.Equal(t, uint32(10000), r.Weight())

	r.Rollback(t0)
	require.Equal(t, canary.RolledBack, r.State())
	require.Zero(t, r.Weight())

	require.NoError(t, r.Resume(t0))
	require.Equal(t, canary.Progressing, r.State())
	require.Equal(t, uint32(1000), r.Weight())
}

func TestRolloutSaveRestore(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	p := plan()
	r := canary.NewRollout(p, t0)
	require.NoError(t, r.SetWeight(4200, t0))
	s := r.Save()

	require.Equal(t, uint64(2), s.Rev, "start and set weight")
	back := canary.Restore(p, s, t0.Add(time.Hour))
	require.Equal(t, uint64(2), back.Rev())
	require.Equal(t, canary.Manual, back.State())
	require.Equal(t, uint32(4200), back.Weight())
	require.Equal(t, t0, back.StepStarted())

	changed := p
	changed.Canary = "another"
	fresh := canary.Restore(changed, s, t0)
	require.Equal(t, canary.Progressing, fresh.State())
	require.Equal(t, uint32(1000), fresh.Weight())

	// Thresholds may change without restarting the rollout.
	looser := p
	looser.MaxErrorRate = 0.5
	require.False(t, back.SetPlan(looser, t0))
	require.Equal(t, uint32(4200), back.Weight())
	require.Equal(t, uint64(2), back.Rev(), "threshold changes are not transitions")
	require.True(t, back.SetPlan(changed, t0))
	require.Equal(t, uint32(1000), back.Weight())
	require.Equal(t, uint64(3), back.Rev(), "a restarted plan continues the count")
}

func TestStartPaused(t *testing.T) {
	p := plan()
	p.StartPaused = true
	r := canary.NewRollout(p, time.Unix(0, 0))
	require.Equal(t, canary.Paused, r.State())
	require.Equal(t, uint32(1000), r.Weight())
}

func TestStepsWithoutHundredPromoteAfterLast(t *testing.T) {
	p := plan()
	p.Steps = []uint32{50}
	t0 := time.Unix(0, 0)
	r := canary.NewRollout(p, t0)
	feed(r, "relay", 10, 200, 1)
	_, changed := r.Evaluate(t0.Add(time.Minute))
	require.True(t, changed)
	require.Equal(t, canary.Promoted, r.State())
	require.Equal(t, uint32(10000), r.Weight())
}

// TestHoldStaysAtTheLastStep: a plan that holds (a fixed canary percentage)
// stays at its last weight after passing analyses, and still rolls back when
// the canary turns bad.
func TestHoldStaysAtTheLastStep(t *testing.T) {
	p := plan()
	p.Steps, p.Hold = []uint32{10}, true
	t0 := time.Unix(0, 0)
	r := canary.NewRollout(p, t0)
	now := t0
	for range 3 {
		feed(r, "relay", 10, 200, 1)
		feed(r, "openai", 10, 200, 1)
		now = now.Add(time.Minute)
		v, changed := r.Evaluate(now)
		require.False(t, changed)
		require.Equal(t, canary.Wait, v.Decision)
		require.Contains(t, v.Reason, "holding at 10%")
		require.Equal(t, canary.Progressing, r.State())
		require.Equal(t, uint32(1000), r.Weight())
		require.Equal(t, "hold", r.LastVerdict())
	}
	feed(r, "relay", 10, 500, 1)
	v, changed := r.Evaluate(now.Add(time.Second))
	require.True(t, changed)
	require.Equal(t, canary.Rollback, v.Decision)
	require.Zero(t, r.Weight())
}
