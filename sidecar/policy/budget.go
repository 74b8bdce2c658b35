package policy

import (
	"fmt"
	"math"
	"time"
)

// budget is one route's or consumer's month-to-date spend.
type budget struct {
	route, consumer string
	limit           int64 // micro-USD
	month           int   // the budget period: UTC year*12 + month-1
	spent           int64
	// pending is spend recorded here and not yet added to a shared store
	// (see SpendSharer); it is part of spent.
	pending int64
}

// monthOf is the budget period (UTC calendar month) containing t.
func monthOf(t time.Time) int {
	y, m, _ := t.UTC().Date()
	return y*12 + int(m) - 1
}

// period formats the budget's month as "2006-01".
func (b *budget) period() string {
	return fmt.Sprintf("%04d-%02d", b.month/12, b.month%12+1)
}

// parsePeriod reads "2006-01"; ok is false for anything else.
func parsePeriod(s string) (int, bool) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return 0, false
	}
	return monthOf(t), true
}

func (b *budget) exhausted() bool { return b.spent >= b.limit }

// roll starts a new period when now is past the current one; it reports
// whether the budget's published state changed.
func (b *budget) roll(now time.Time) bool {
	m := monthOf(now)
	if b.month == m {
		return false
	}
	changed := b.spent != 0
	b.month, b.spent, b.pending = m, 0, 0
	return changed
}

// MaxOutcomeCostMicroUSD bounds the cost one reported outcome adds to a
// budget: $1,000,000, far above any single model call. A larger cost (a
// broken or hostile reporter) counts as this much, so no report can wrap a
// budget's spend or push it where later additions overflow.
const MaxOutcomeCostMicroUSD = 1_000_000_000_000

// spend adds cost (at most MaxOutcomeCostMicroUSD; the sums saturate) and
// reports whether the exhausted flag flipped.
func (b *budget) spend(cost int64, now time.Time) bool {
	b.roll(now)
	before := b.exhausted()
	if cost > 0 {
		cost = min(cost, MaxOutcomeCostMicroUSD)
		b.spent = addSat(b.spent, cost)
		b.pending = addSat(b.pending, cost)
	}
	return b.exhausted() != before
}

// addSat is a+b for b >= 0, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func usdToMicro(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

// budgetID names a budget: a route's (consumer empty) or a consumer's
// (route empty).
type budgetID struct{ route, consumer string }

// String is the budget's key in saved state: "route/<r>" or "consumer/<c>".
func (id budgetID) String() string {
	if id.consumer != "" {
		return "consumer/" + id.consumer
	}
	return "route/" + id.route
}

func (b *budget) id() budgetID { return budgetID{b.route, b.consumer} }
