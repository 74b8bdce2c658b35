package policy

import (
	"math"
	"time"
)

// budget is one route's or consumer's month-to-date spend.
type budget struct {
	route, consumer string
	limit           int64 // micro-USD
	period          string
	spent           int64
}

// periodOf is the budget period (UTC calendar month) containing t.
func periodOf(t time.Time) string { return t.UTC().Format("2006-01") }

func (b *budget) exhausted() bool { return b.spent >= b.limit }

// roll starts a new period when now is past the current one; it reports
// whether the budget's published state changed.
func (b *budget) roll(now time.Time) bool {
	p := periodOf(now)
	if b.period == p {
		return false
	}
	changed := b.spent != 0
	b.period, b.spent = p, 0
	return changed
}

// spend adds cost and reports whether the exhausted flag flipped.
func (b *budget) spend(cost int64, now time.Time) bool {
	b.roll(now)
	before := b.exhausted()
	if cost > 0 && b.spent <= math.MaxInt64-cost {
		b.spent += cost
	}
	return b.exhausted() != before
}

func usdToMicro(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

func budgetKey(route, consumer string) string {
	if consumer != "" {
		return "consumer/" + consumer
	}
	return "route/" + route
}
