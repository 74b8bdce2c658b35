package fallback

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func mustBudget(t testing.TB, c BudgetConfig) *RetryBudget {
	t.Helper()
	b, err := NewRetryBudget(c)
	require.NoError(t, err)
	return b
}

func TestBudgetConfigValidate(t *testing.T) {
	cases := []struct {
		c   BudgetConfig
		err string
	}{
		{BudgetConfig{Percent: 10}, ""},
		{BudgetConfig{Percent: 20, Window: 30 * second, MinPerSecond: 0.5}, ""},
		{BudgetConfig{Percent: -1}, "fallback: retryBudget.percent: must be between 0 and 1000"},
		{BudgetConfig{Percent: 1001}, "fallback: retryBudget.percent: must be between 0 and 1000"},
		{BudgetConfig{Window: -1}, "fallback: retryBudget.window: must not be negative"},
		{BudgetConfig{Window: 5 * ms}, "fallback: retryBudget.window: must be at least 1s, got 5000000ns"},
		{BudgetConfig{MinPerSecond: -1}, "fallback: retryBudget.minPerSecond: must be between 0 and 1000000"},
	}
	for _, tc := range cases {
		_, err := NewRetryBudget(tc.c)
		if tc.err == "" {
			require.NoError(t, err)
			continue
		}
		require.EqualError(t, err, tc.err)
	}
}

// simulate sends requests evenly spaced every gap ns against a provider that
// fails every attempt, retrying as the planner and the budget allow, and
// returns the retries made.
func simulate(t *testing.T, b *RetryBudget, requests int, gap int64) int {
	pl := mustPlanner(t, Policy{MaxAttempts: 3, BaseBackoff: ms, Jitter: 1}, 2)
	retries := 0
	at := now
	for range requests {
		at += gap
		b.Record(at)
		for attempt := 1; ; attempt++ {
			step := pl.Next(attempt, Failure{Entry: (attempt - 1) % 2, Status: 503}, 0, at, nil)
			if !step.Retry || !b.Allow(at+step.Delay) {
				break
			}
			retries++
		}
	}
	return retries
}

func TestBudgetBoundsRetriesUnderTotalFailure(t *testing.T) {
	cases := []struct {
		name     string
		gap      int64 // between requests
		percent  int
		floor    float64
		min, max int
	}{
		// 1000 requests inside one 10 s window: exactly 10% may retry.
		{"one window", 10 * ms, 10, 0, 100, 100},
		// The floor does not add to a busy route's share.
		{"floor below share", 10 * ms, 10, 1, 100, 100},
		// 1000 requests over 100 s: 10% overall, give or take the
		// two-window approximation at window edges (one request's retries).
		{"ten windows", 100 * ms, 10, 0, 98, 102},
		{"percent 25", 100 * ms, 25, 0, 248, 252},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := mustBudget(t, BudgetConfig{Percent: tc.percent, MinPerSecond: tc.floor})
			got := simulate(t, b, 1000, tc.gap)
			require.GreaterOrEqual(t, got, tc.min)
			require.LessOrEqual(t, got, tc.max)
		})
	}
}

func TestBudgetFloorLetsQuietRouteRetry(t *testing.T) {
	b := mustBudget(t, BudgetConfig{Percent: 10, MinPerSecond: 0.5}) // 5 per 10 s window
	// 4 requests in the window, each wanting 2 retries: 10% of 4 allows none,
	// the floor allows 5.
	require.Equal(t, 5, simulate(t, b, 4, second))

	none := mustBudget(t, BudgetConfig{Percent: 10})
	require.Equal(t, 0, simulate(t, none, 4, second))
}

func TestBudgetSlides(t *testing.T) {
	b := mustBudget(t, BudgetConfig{Percent: 50, Window: 10 * second})
	for i := range 10 {
		b.Record(now + int64(i)*ms)
	}
	for range 5 {
		require.True(t, b.Allow(now+10*ms))
	}
	require.False(t, b.Allow(now+10*ms))
	// Halfway into the next window the old counts weigh half: 5 requests and
	// 2.5 retries, so no retry fits.
	require.False(t, b.Allow(now+15*second))
	// Once the old window has slid out entirely, with 10 new requests, 5
	// retries fit again.
	for i := range 10 {
		b.Record(now + 20*second + int64(i)*ms)
	}
	require.True(t, b.Allow(now+20*second+10*ms))
	// After a long silence only the new requests count: 2 requests at 50%
	// allow one retry.
	b.Record(now + 60*second)
	b.Record(now + 60*second)
	require.True(t, b.Allow(now+60*second))
	require.False(t, b.Allow(now+60*second))
}

func TestBudgetClockGoingBack(t *testing.T) {
	b := mustBudget(t, BudgetConfig{Percent: 100})
	b.Record(now)
	require.True(t, b.Allow(now-second))
	require.False(t, b.Allow(now-second))
}

func TestBudgetAllocatesNothing(t *testing.T) {
	b := mustBudget(t, BudgetConfig{Percent: 10, MinPerSecond: 1})
	at := now
	allocs := testing.AllocsPerRun(1000, func() {
		at += ms
		b.Record(at)
		b.Allow(at)
	})
	require.Zero(t, allocs)
}
