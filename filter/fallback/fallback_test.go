package fallback

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	ms     = int64(time.Millisecond)
	second = int64(time.Second)
)

// now is Fri, 27 Nov 2026 04:00:00.250 GMT.
var now = time.Date(2026, 11, 27, 4, 0, 0, 250_000_000, time.UTC).UnixNano()

func constRand(v uint64) func() uint64 { return func() uint64 { return v } }

// splitmix64 is a deterministic random source for tests.
func splitmix64(seed uint64) func() uint64 {
	return func() uint64 {
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
}

func mustPlanner(t testing.TB, p Policy, chainLen int) *Planner {
	t.Helper()
	pl, err := NewPlanner(p, chainLen)
	require.NoError(t, err)
	return pl
}

func TestPolicyValidate(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Policy)
		err    string
	}{
		{"defaults", func(*Policy) {}, ""},
		{"2xx status", func(p *Policy) { p.Statuses = []int{200} }, "fallback: statuses: 200 is not a 4xx or 5xx status"},
		{"status out of range", func(p *Policy) { p.Statuses = []int{429, 600} }, "fallback: statuses: 600 is not a 4xx or 5xx status"},
		{"attempts", func(p *Policy) { p.MaxAttempts = 11 }, "fallback: maxAttempts: must be between 1 and 10"},
		{"negative attempts", func(p *Policy) { p.MaxAttempts = -1 }, "fallback: maxAttempts: must be between 1 and 10"},
		{"base", func(p *Policy) { p.BaseBackoff = -1 }, "fallback: baseBackoff: must be positive"},
		{"max below base", func(p *Policy) { p.BaseBackoff, p.MaxBackoff = 2*second, second }, "fallback: maxBackoff: must not be less than baseBackoff"},
		{"retry-after cap", func(p *Policy) { p.RetryAfterCap = -1 }, "fallback: retryAfterCap: must not be negative"},
		{"budget", func(p *Policy) { p.Budget = -second }, "fallback: budget: must be positive"},
		{"jitter above 1", func(p *Policy) { p.Jitter = 1.5 }, "fallback: jitter: must be in (0, 1]"},
		{"negative jitter", func(p *Policy) { p.Jitter = -0.5 }, "fallback: jitter: must be in (0, 1]"},
		{"NaN jitter", func(p *Policy) { p.Jitter = math.NaN() }, "fallback: jitter: must be in (0, 1]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p Policy
			tc.change(&p)
			_, err := NewPlanner(p, 1)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tc.err)
		})
	}
	_, err := NewPlanner(Policy{}, 0)
	require.EqualError(t, err, "fallback: chain: must have at least one entry")
}

func TestDefaults(t *testing.T) {
	p := mustPlanner(t, Policy{}, 1).Policy()
	require.Equal(t, Policy{
		Statuses: []int{429, 500, 502, 503, 504}, MaxAttempts: 3,
		BaseBackoff: 250 * ms, MaxBackoff: 5 * second, RetryAfterCap: 10 * second,
		Budget: 60 * second, Jitter: 0.5,
	}, p)
}

func TestBackoffSequence(t *testing.T) {
	policy := Policy{MaxAttempts: 8, BaseBackoff: 100 * ms, MaxBackoff: time.Second.Nanoseconds(), Jitter: 0.5}
	cases := []struct {
		name string
		rnd  func() uint64
		want []int64 // delays after attempts 1..7
	}{
		{"lowest draw", constRand(0), []int64{50, 100, 200, 400, 500, 500, 500}},
		{"highest draw", constRand(math.MaxUint64), []int64{100, 200, 400, 800, 1000, 1000, 1000}},
		{"half draw", constRand(1 << 63), []int64{75, 150, 300, 600, 750, 750, 750}},
		{"no random source", nil, []int64{50, 100, 200, 400, 500, 500, 500}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pl := mustPlanner(t, policy, 1)
			var got []int64
			for a := 1; a < 8; a++ {
				s := pl.Next(a, Failure{Status: 503}, 0, now, tc.rnd)
				require.Equal(t, Retry, s.Reason)
				require.True(t, s.Retry)
				require.Zero(t, s.Entry)
				got = append(got, s.Delay/ms)
			}
			require.Equal(t, tc.want, got)
			require.Equal(t, Step{Reason: AttemptsExhausted}, pl.Next(8, Failure{Status: 503}, 0, now, tc.rnd))
		})
	}
}

func TestJitterBounds(t *testing.T) {
	for _, jitter := range []float64{0.1, 0.5, 1} {
		pl := mustPlanner(t, Policy{MaxAttempts: 2, BaseBackoff: second, Jitter: jitter}, 1)
		lo, hi := second-int64(float64(second)*jitter), second
		rnd := splitmix64(42)
		var below, above int
		for range 10000 {
			d := pl.Next(1, Failure{Status: 429}, 0, now, rnd).Delay
			require.GreaterOrEqual(t, d, lo)
			require.LessOrEqual(t, d, hi)
			if d < (lo+hi)/2 {
				below++
			} else {
				above++
			}
		}
		// A uniform draw lands on each half about as often.
		require.InDelta(t, 5000, below, 300, "jitter %v", jitter)
		require.InDelta(t, 5000, above, 300, "jitter %v", jitter)
	}
}

func TestChainOrder(t *testing.T) {
	pl := mustPlanner(t, Policy{MaxAttempts: 7, BaseBackoff: 100 * ms, MaxBackoff: second, Jitter: 1}, 3)
	want := []Step{
		{Retry: true, Entry: 1, Delay: 0},        // fresh fallback: at once
		{Retry: true, Entry: 2, Delay: 0},        // fresh fallback: at once
		{Retry: true, Entry: 0, Delay: 100 * ms}, // second pass: backoff
		{Retry: true, Entry: 1, Delay: 100 * ms},
		{Retry: true, Entry: 2, Delay: 100 * ms},
		{Retry: true, Entry: 0, Delay: 200 * ms}, // third pass
		{Reason: AttemptsExhausted},
	}
	for a := 1; a <= 7; a++ {
		entry := (a - 1) % 3
		require.Equal(t, want[a-1], pl.Next(a, Failure{Entry: entry, Status: 500}, 0, now, constRand(math.MaxUint64)), "after attempt %d", a)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	policy := Policy{MaxAttempts: 3, BaseBackoff: 100 * ms, MaxBackoff: second, RetryAfterCap: 20 * second, Budget: 60 * second, Jitter: 1}
	date := func(d time.Duration) string {
		return time.Unix(0, now).Add(d).UTC().Format(imfFixdate)
	}
	cases := []struct {
		name    string
		f       Failure
		chain   int
		elapsed int64
		want    Step
	}{
		{"seconds", Failure{Status: 429, RetryAfter: "3"}, 1, 0, Step{Retry: true, Delay: 3 * second}},
		{"capped", Failure{Status: 429, RetryAfter: "3600"}, 1, 0, Step{Retry: true, Delay: 20 * second}},
		{"huge is capped", Failure{Status: 503, RetryAfter: "99999999999999999999999"}, 1, 0, Step{Retry: true, Delay: 20 * second}},
		{"shorter than backoff", Failure{Status: 429, RetryAfter: "0"}, 1, 0, Step{Retry: true, Delay: 100 * ms}},
		{"date", Failure{Status: 503, RetryAfter: date(5 * time.Second)}, 1, 0, Step{Retry: true, Delay: 5*second - 250*ms}},
		{"past date", Failure{Status: 503, RetryAfter: date(-time.Hour)}, 1, 0, Step{Retry: true, Delay: 100 * ms}},
		{"garbage", Failure{Status: 503, RetryAfter: "soon"}, 1, 0, Step{Retry: true, Delay: 100 * ms}},
		{"negative", Failure{Status: 503, RetryAfter: "-10"}, 1, 0, Step{Retry: true, Delay: 100 * ms}},
		{"reset hint on 429", Failure{Status: 429, ResetHint: "6m0s"}, 1, 0, Step{Retry: true, Delay: 20 * second}},
		{"short reset hint", Failure{Status: 429, ResetHint: "1.5s"}, 1, 0, Step{Retry: true, Delay: 1500 * ms}},
		{"retry-after wins over hint", Failure{Status: 429, RetryAfter: "2", ResetHint: "6m0s"}, 1, 0, Step{Retry: true, Delay: 2 * second}},
		{"reset hint ignored on 5xx", Failure{Status: 503, ResetHint: "6s"}, 1, 0, Step{Retry: true, Delay: 100 * ms}},
		{"other entry ignores hint", Failure{Status: 429, RetryAfter: "30"}, 2, 0, Step{Retry: true, Entry: 1}},
		{"delay beyond budget", Failure{Status: 429, RetryAfter: "10"}, 1, 50 * second, Step{Reason: OutOfTime}},
		{"delay just fits", Failure{Status: 429, RetryAfter: "10"}, 1, 50*second - 1, Step{Retry: true, Delay: 10 * second}},
		{"budget spent", Failure{Status: 500}, 2, 60 * second, Step{Reason: OutOfTime}},
		{"not retryable", Failure{Status: 400, RetryAfter: "1"}, 1, 0, Step{Reason: NotRetryable}},
		{"callout failure", Failure{CalloutFailed: true, RetryAfter: "9"}, 1, 0, Step{Retry: true, Delay: 100 * ms}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pl := mustPlanner(t, policy, tc.chain)
			require.Equal(t, tc.want, pl.Next(1, tc.f, tc.elapsed, now, constRand(math.MaxUint64)))
		})
	}
}

func TestReasonString(t *testing.T) {
	require.Equal(t, "retry", Retry.String())
	require.Equal(t, "not_retryable", NotRetryable.String())
	require.Equal(t, "attempts_exhausted", AttemptsExhausted.String())
	require.Equal(t, "out_of_time", OutOfTime.String())
	require.Equal(t, "unknown", Reason(200).String())
}

func TestNextAllocatesNothing(t *testing.T) {
	pl := mustPlanner(t, Policy{MaxAttempts: 5}, 1)
	rnd := splitmix64(1)
	failures := []Failure{
		{Status: 503},
		{Status: 429, RetryAfter: "Fri, 27 Nov 2026 04:00:02 GMT"},
		{Status: 429, ResetHint: "6m0s"},
		{Status: 429, RetryAfter: "7"},
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, f := range failures {
			if !pl.Next(1, f, 0, now, rnd).Retry {
				panic("expected a retry")
			}
		}
	})
	require.Zero(t, allocs)
}

func BenchmarkPlannerNext(b *testing.B) {
	pl, err := NewPlanner(Policy{MaxAttempts: 5}, 2)
	require.NoError(b, err)
	rnd := splitmix64(1)
	for _, bc := range []struct {
		name string
		f    Failure
	}{
		{"status", Failure{Status: 503}},
		{"retry-after-seconds", Failure{Status: 429, RetryAfter: "7"}},
		{"retry-after-date", Failure{Status: 429, RetryAfter: "Fri, 27 Nov 2026 04:00:02 GMT"}},
		{"reset-hint", Failure{Status: 429, ResetHint: "6m0s"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pl.Next(2, bc.f, 0, now, rnd)
			}
		})
	}
}

// TestSkippingCoolingEntries: entries skipped because their provider cools
// down move the chain on without spending attempts, and count towards the
// passes that set the backoff.
func TestSkippingCoolingEntries(t *testing.T) {
	pl := mustPlanner(t, Policy{MaxAttempts: 3, BaseBackoff: 100 * ms, MaxBackoff: 100 * ms}, 3)
	fail := Failure{Status: 429}
	tests := []struct {
		name              string
		attempts, skipped int
		want              Step
	}{
		{"no skip", 1, 0, Step{Retry: true, Entry: 1, Reason: Retry}},
		{"entry 1 skipped", 1, 1, Step{Retry: true, Entry: 2, Reason: Retry}},
		{"started at entry 2: wraps to the primary, a revisit", 1, 2, Step{Retry: true, Entry: 0, Delay: 50 * ms, Reason: Retry}},
		{"skips spend no attempts", 2, 5, Step{Retry: true, Entry: 1, Delay: 50 * ms, Reason: Retry}},
		{"attempts still bound", 3, 0, Step{Reason: AttemptsExhausted}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, pl.NextSkipping(tc.attempts, tc.skipped, fail, 0, now, nil))
		})
	}
}
