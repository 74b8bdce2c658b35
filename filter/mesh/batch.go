package mesh

import (
	"github.com/shepherd-mesh/shepherd/filter/policywire"
	"github.com/shepherd-mesh/shepherd/filter/rls"
)

// MaxTokenKeys bounds the distinct token descriptors a batch holds between
// two flushes; usage for further keys is dropped (and counted by the caller).
const MaxTokenKeys = 1024

// MaxHitsAddend is the largest hits_addend a descriptor carries: the
// sidecar refuses a larger one (ratelimit.MaxHitsAddend, the largest
// requests_per_unit, so one such hit is over every limit already). A sum
// saturates there instead of wrapping.
const MaxHitsAddend = 1<<32 - 1

// TokenBatch sums a VM's token usage per token descriptor until the plugin's
// tick sends it as one ShouldRateLimit per domain, each descriptor with the
// summed usage as its hits_addend. Not safe for concurrent use (one VM).
type TokenBatch struct {
	items []tokenItem
}

type tokenItem struct {
	domain string
	d      Descriptor
	tokens uint64
}

// Add adds tokens to d's sum in domain, saturating at MaxHitsAddend. It
// reports false when the batch is full and d is a new key.
func (b *TokenBatch) Add(domain string, d *Descriptor, tokens uint64) bool {
	if tokens == 0 {
		return true
	}
	tokens = min(tokens, MaxHitsAddend)
	for i := range b.items {
		it := &b.items[i]
		if it.domain == domain && it.d == *d {
			it.tokens = min(it.tokens+tokens, MaxHitsAddend) // both ≤ 2^32: no wrap
			return true
		}
	}
	if len(b.items) >= MaxTokenKeys {
		return false
	}
	b.items = append(b.items, tokenItem{domain: domain, d: *d, tokens: tokens})
	return true
}

// Len is the number of descriptors waiting.
func (b *TokenBatch) Len() int { return len(b.items) }

// Next appends the settlement request of the first waiting domain to dst,
// removes that domain's items, and returns the request and false when
// nothing waits. hits_addend 0 of the request is ignored: every descriptor
// carries its own.
func (b *TokenBatch) Next(dst []byte, scratch []rls.Descriptor) ([]byte, bool) {
	if len(b.items) == 0 {
		return dst, false
	}
	domain := b.items[0].domain
	scratch = scratch[:0]
	for i := range b.items {
		it := &b.items[i]
		if it.domain == domain {
			scratch = append(scratch, rls.Descriptor{Entries: it.d.Tokens(), HitsAddend: it.tokens})
		}
	}
	dst = rls.AppendRequest(dst, domain, scratch, 0)
	kept := b.items[:0]
	for _, it := range b.items {
		if it.domain != domain {
			kept = append(kept, it)
		}
	}
	clear(b.items[len(kept):])
	b.items = kept
	return dst, true
}

// Outcomes queue a VM's finished requests for ReportOutcomes, bounded.
type Outcomes struct {
	max   int
	items []policywire.Outcome
}

// NewOutcomes makes a queue that holds at most max outcomes.
func NewOutcomes(max int) *Outcomes { return &Outcomes{max: max} }

// Add queues o; it reports false (and drops o) when the queue is full.
func (q *Outcomes) Add(o policywire.Outcome) bool {
	if len(q.items) >= q.max {
		return false
	}
	q.items = append(q.items, o)
	return true
}

// Len is the number of outcomes waiting.
func (q *Outcomes) Len() int { return len(q.items) }

// Full reports whether the queue holds a whole batch.
func (q *Outcomes) Full(batch int) bool { return len(q.items) >= batch }

// Take appends a ReportOutcomesRequest of up to batch waiting outcomes to dst
// and removes them from the queue.
func (q *Outcomes) Take(dst []byte, batch int) []byte {
	n := min(batch, len(q.items))
	dst = policywire.AppendReportOutcomesRequest(dst, q.items[:n])
	rest := copy(q.items, q.items[n:])
	clear(q.items[rest:])
	q.items = q.items[:rest]
	return dst
}
