package fallback

import (
	"errors"
	"strconv"
	"time"
)

// BudgetConfig configures a RetryBudget.
type BudgetConfig struct {
	// Percent is how many retries may be made per 100 original requests.
	Percent int
	// Window is the sliding window the shares are measured over, in ns
	// (DefaultBudgetWindow when 0).
	Window int64
	// MinPerSecond is a floor of retries per second per VM that is always
	// allowed, so a quiet route can still retry. 0 means no floor.
	MinPerSecond float64
}

// DefaultBudgetWindow is the window used when BudgetConfig.Window is 0.
const DefaultBudgetWindow = int64(10 * time.Second)

// Validate reports the first field of c that cannot be used.
func (c BudgetConfig) Validate() error {
	switch {
	case c.Percent < 0 || c.Percent > 1000:
		return errors.New("fallback: retryBudget.percent: must be between 0 and 1000")
	case c.Window < 0:
		return errors.New("fallback: retryBudget.window: must not be negative")
	case c.Window > 0 && c.Window < int64(time.Second):
		return errors.New("fallback: retryBudget.window: must be at least 1s, got " + strconv.FormatInt(c.Window, 10) + "ns")
	case !(c.MinPerSecond >= 0 && c.MinPerSecond <= 1e6):
		return errors.New("fallback: retryBudget.minPerSecond: must be between 0 and 1000000")
	}
	return nil
}

// RetryBudget caps the retries of one route to Percent of its original requests
// over a sliding window, plus a floor of MinPerSecond. Record every original
// request; ask Allow before every retry (Allow counts the retry when it says yes).
//
// The counts are kept per VM, not in shared data. The share is scale-free: each
// worker sees a like share of the route's traffic, so per-worker percentages add
// up to the same percentage for the process, while a shared counter would turn
// every request on the route into a compare-and-swap on one hot key contended by
// all workers. The floor is per VM, so a process allows workers × MinPerSecond.
//
// The window slides by weighting the previous fixed window's counts by the part
// of it still inside the sliding window (the usual two-counter approximation of
// a sliding log). A RetryBudget is not safe for concurrent use.
type RetryBudget struct {
	percent float64
	window  int64
	floor   float64 // retries per window always allowed

	start                 int64 // start of the current fixed window
	reqs, retries         float64
	prevReqs, prevRetries float64
	started               bool
}

// NewRetryBudget validates c and returns an empty budget.
func NewRetryBudget(c BudgetConfig) (*RetryBudget, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Window == 0 {
		c.Window = DefaultBudgetWindow
	}
	return &RetryBudget{
		percent: float64(c.Percent) / 100,
		window:  c.Window,
		floor:   c.MinPerSecond * float64(c.Window) / float64(time.Second),
	}, nil
}

// Record counts one original request at now (ns).
func (b *RetryBudget) Record(now int64) {
	b.advance(now)
	b.reqs++
}

// Allow reports whether one more retry fits the budget at now (ns), and counts
// it if so.
func (b *RetryBudget) Allow(now int64) bool {
	w := b.advance(now)
	reqs := b.prevReqs*w + b.reqs
	retries := b.prevRetries*w + b.retries
	if retries+1 > max(reqs*b.percent, b.floor) {
		return false
	}
	b.retries++
	return true
}

// advance rolls the fixed windows forward to now and returns the weight of the
// previous window. Time going backwards is treated as no time passing.
func (b *RetryBudget) advance(now int64) float64 {
	if !b.started {
		b.start, b.started = now, true
	}
	if now < b.start {
		now = b.start
	}
	if elapsed := now - b.start; elapsed >= b.window {
		if elapsed < 2*b.window {
			b.prevReqs, b.prevRetries = b.reqs, b.retries
		} else {
			b.prevReqs, b.prevRetries = 0, 0
		}
		b.reqs, b.retries = 0, 0
		b.start = now - elapsed%b.window
	}
	return float64(b.window-(now-b.start)) / float64(b.window)
}
