package policy

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of the spend-by-consumer series.
const (
	// SpendTopConsumers is how many consumers have a series of their own in
	// shepherd_sidecar_consumer_spent_usd; the rest are summed in "other".
	SpendTopConsumers = 20
	// maxSpendConsumers bounds the consumers whose spend is kept apart; the
	// spend of any later one counts as "other" until the month ends.
	maxSpendConsumers = 10_000
	// maxSpendConsumerLen bounds a consumer value used as a label; a longer
	// one counts as "other".
	maxSpendConsumerLen = 128
	// OtherConsumer is the label of the spend of every consumer without a
	// series of its own.
	OtherConsumer = "other"
)

// consumerSpend is the month-to-date spend of each consumer reports name,
// bounded: the first maxSpendConsumers consumers of the month are kept apart,
// the rest are summed in other.
type consumerSpend struct {
	month int
	by    map[string]int64
	other int64
	dirty bool
}

// add counts micro-USD spent by consumer at now; called with the engine's lock.
func (s *consumerSpend) add(consumer string, micro int64, now time.Time) {
	if m := monthOf(now); m != s.month || s.by == nil {
		s.month, s.by, s.other = m, map[string]int64{}, 0
	}
	s.dirty = true
	if consumer == OtherConsumer || len(consumer) > maxSpendConsumerLen {
		s.other = addSat(s.other, micro)
		return
	}
	if _, ok := s.by[consumer]; !ok && len(s.by) >= maxSpendConsumers {
		s.other = addSat(s.other, micro)
		return
	}
	s.by[consumer] = addSat(s.by[consumer], micro)
}

// top is the n biggest spenders, largest first (ties by name), and the sum of
// everyone else.
func (s *consumerSpend) top(n int) (names []string, spent []int64, other int64) {
	names = make([]string, 0, len(s.by))
	for c := range s.by {
		names = append(names, c)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := s.by[names[i]], s.by[names[j]]
		if a != b {
			return a > b
		}
		return names[i] < names[j]
	})
	other = s.other
	for _, c := range names[min(n, len(names)):] {
		other = addSat(other, s.by[c])
	}
	names = names[:min(n, len(names))]
	spent = make([]int64, len(names))
	for i, c := range names {
		spent[i] = s.by[c]
	}
	return names, spent, other
}

// export replaces the gauge's series with the top spenders and "other".
func (s *consumerSpend) export(g *prometheus.GaugeVec, now time.Time) {
	if s.by != nil && monthOf(now) != s.month {
		s.month, s.by, s.other, s.dirty = monthOf(now), map[string]int64{}, 0, true
	}
	if !s.dirty {
		return
	}
	s.dirty = false
	g.Reset()
	names, spent, other := s.top(SpendTopConsumers)
	for i, c := range names {
		g.WithLabelValues(c).Set(float64(spent[i]) / 1e6)
	}
	g.WithLabelValues(OtherConsumer).Set(float64(other) / 1e6)
}
