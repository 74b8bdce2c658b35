package rlqs

import (
	"math"
	"math/bits"
)

// Record is one bucket's state in shared data: its assignment and the usage
// since the last report. Every worker VM of an Envoy admits requests against
// it with compare-and-swap; the VM holding the quota stream reads and
// clears the usage for its reports and writes the assignments it receives.
type Record struct {
	Rule Rule
	// Expiry is when the assignment (or, for Pending, the wait for one)
	// ends, in ns.
	Expiry int64
	// The token bucket: Tokens micro-requests at Last (ns), at most Max,
	// PerFill more every Interval ns (micro-requests).
	Tokens, Last, Max, PerFill, Interval int64
	// Allowed and Denied count the requests since the last report
	// (saturating).
	Allowed, Denied uint64
}

// unit is the number of stored micro-units per request: refills of a
// fraction of a request add up.
const unit = 1_000_000

// RecordSize is the encoded size of a Record.
const RecordSize = 1 + 9*8

// Encode writes r into buf and returns the bytes used.
func (r *Record) Encode(buf *[RecordSize]byte) []byte {
	buf[0] = byte(r.Rule)
	b := buf[1:]
	for i, v := range [...]uint64{uint64(r.Expiry), uint64(r.Tokens), uint64(r.Last), uint64(r.Max),
		uint64(r.PerFill), uint64(r.Interval), r.Allowed, r.Denied} {
		put64(b[i*8:], v)
	}
	return buf[:]
}

// Decode reads an encoded Record; false when b is not one.
func (r *Record) Decode(b []byte) bool {
	if len(b) != RecordSize || Rule(b[0]) > TokenBucket {
		return false
	}
	r.Rule = Rule(b[0])
	b = b[1:]
	r.Expiry, r.Tokens, r.Last = int64(get64(b)), int64(get64(b[8:])), int64(get64(b[16:]))
	r.Max, r.PerFill, r.Interval = int64(get64(b[24:])), int64(get64(b[32:])), int64(get64(b[40:]))
	r.Allowed, r.Denied = get64(b[48:]), get64(b[56:])
	return true
}

func put64(b []byte, v uint64) {
	_ = b[7]
	b[0], b[1], b[2], b[3] = byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32)
	b[4], b[5], b[6], b[7] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func get64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// NewRecord is a bucket seen for the first time at now: no assignment, and
// requests admitted until now+wait (Envoy's rate_limit_quota filter admits
// a new bucket's requests until its first assignment arrives, its default
// no_assignment_behavior). The request that creates it is counted.
func NewRecord(now, wait int64) Record {
	return Record{Rule: Pending, Expiry: satAdd(now, wait), Allowed: 1}
}

// Verdict is what Admit decided.
type Verdict uint8

// The verdicts.
const (
	// Admitted: the request proceeds; the record counts it.
	Admitted Verdict = iota
	// Denied: over the assignment; the record counts it.
	Denied
	// Expired: the assignment (or the wait for the first one) has ended
	// without a new one: the route's failure mode decides. The record is
	// unchanged.
	Expired
)

// Admit decides one request at now and updates r (the caller stores it with
// compare-and-swap). For Denied it also returns the time until a request
// would be admitted, in ns.
func (r *Record) Admit(now int64) (Verdict, int64) {
	v, wait := r.Peek(now)
	if v != Admitted {
		return v, wait
	}
	if r.Rule == TokenBucket {
		r.Tokens -= unit // Peek refilled the bucket and found a whole token
	}
	r.Allowed = satInc(r.Allowed)
	return Admitted, 0
}

// Peek decides whether a request may start at now without taking anything
// (the token descriptor's admission: its usage is charged when the response
// ends). A refusal is counted in r; an admission leaves r unchanged.
func (r *Record) Peek(now int64) (Verdict, int64) {
	if now >= r.Expiry {
		return Expired, 0
	}
	switch r.Rule {
	case DenyAll:
		r.Denied = satInc(r.Denied)
		return Denied, r.Expiry - now
	case TokenBucket:
		r.refill(now)
		if r.Tokens < unit {
			r.Denied = satInc(r.Denied)
			return Denied, r.wait(unit - r.Tokens)
		}
	}
	return Admitted, 0
}

// maxCharge bounds one charge, in units (a request's usage is bounded far
// below it).
const maxCharge = 1 << 32

// Charge takes n units at now whatever is left (the bucket may go into
// debt, which later refills pay back) and counts them as allowed: the
// usage of a request already admitted.
func (r *Record) Charge(now int64, n uint64) {
	n = min(n, maxCharge)
	r.Allowed = satAddU(r.Allowed, n)
	if r.Rule != TokenBucket {
		return
	}
	r.refill(now)
	r.Tokens = max(r.Tokens-int64(n)*unit, -r.Max)
}

// refill adds the tokens of the time since Last, up to Max.
func (r *Record) refill(now int64) {
	if now <= r.Last || r.Interval <= 0 {
		return
	}
	el := now - r.Last
	add := mulDiv(uint64(el), uint64(r.PerFill), uint64(r.Interval))
	r.Last = now
	if add >= uint64(r.Max) || r.Tokens+int64(add) >= r.Max {
		r.Tokens = r.Max
		return
	}
	r.Tokens += int64(add)
}

// wait is the time until need micro-requests are refilled, rounded up.
func (r *Record) wait(need int64) int64 {
	if r.PerFill <= 0 {
		return math.MaxInt64
	}
	hi, lo := bits.Mul64(uint64(need), uint64(r.Interval))
	if hi >= uint64(r.PerFill) {
		return math.MaxInt64
	}
	q, rem := bits.Div64(hi, lo, uint64(r.PerFill))
	if rem != 0 {
		q++
	}
	return int64(min(q, math.MaxInt64))
}

// Limit is the assignment's capacity in whole requests (0 for rules
// without one).
func (r *Record) Limit() int64 { return r.Max / unit }

// TakeUsage returns the usage since the last report and clears it.
func (r *Record) TakeUsage() (allowed, denied uint64) {
	allowed, denied = r.Allowed, r.Denied
	r.Allowed, r.Denied = 0, 0
	return allowed, denied
}

// Apply applies an action received at now. An assignment of the token
// bucket the record already holds (unexpired) keeps its tokens and only
// moves the expiry, as Envoy's rate_limit_quota filter keeps a bucket's
// token bucket when a new assignment carries the same strategy
// (source/extensions/filters/http/rate_limit_quota/global_client_impl.cc).
// A different token bucket replacing a live one keeps the tokens left,
// at most its size; after any other rule, or an expired one, it starts
// full. An abandoned bucket starts over as a
// new one, waiting wait ns for its next assignment. Usage counts are kept.
func (r *Record) Apply(a *Action, now, wait int64) {
	if a.Kind == Abandon {
		r.Rule, r.Expiry = Pending, satAdd(now, wait)
		r.Tokens, r.Last, r.Max, r.PerFill, r.Interval = 0, 0, 0, 0, 0
		return
	}
	s := &a.Strategy
	expiry := satAdd(now, a.TTL)
	if s.Rule != TokenBucket {
		r.Rule, r.Expiry = s.Rule, expiry
		r.Tokens, r.Last, r.Max, r.PerFill, r.Interval = 0, 0, 0, 0, 0
		return
	}
	max, perFill := int64(s.Max)*unit, int64(s.PerFill)*unit
	live := r.Rule == TokenBucket && now < r.Expiry
	if live && r.Max == max && r.PerFill == perFill && r.Interval == s.Interval {
		r.Expiry = expiry
		return
	}
	tokens := max
	if live {
		// A changed share keeps the tokens left of the previous one
		// (refilled up to now), at most the new size: a server that moves
		// shares between Envoys as their demand changes hands out no tokens
		// by the move itself, only a faster or slower refill from then on.
		r.refill(now)
		tokens = min(r.Tokens, max)
	}
	r.Rule, r.Expiry = TokenBucket, expiry
	r.Max, r.PerFill, r.Interval = max, perFill, s.Interval
	r.Tokens, r.Last = tokens, now
}

// mulDiv is a*b/c rounded down, saturating at MaxUint64.
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}

func satInc(v uint64) uint64 {
	if v == math.MaxUint64 {
		return v
	}
	return v + 1
}

func satAddU(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
