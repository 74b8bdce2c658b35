// Package limits holds the filter's token buckets: per (route, consumer, kind)
// request and token limits kept in proxy-wasm shared data so that every worker VM
// of one Envoy draws from the same buckets. It is pure: the shared data store and
// the time are passed in, nothing here reads a clock or calls the ABI.
package limits

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
)

// Kind is what a bucket counts.
type Kind uint8

// The kinds of bucket.
const (
	Requests Kind = iota // one unit per request
	Tokens               // one unit per model token
)

// String is the kind's name as it appears in OpenAI's header names.
func (k Kind) String() string {
	if k == Tokens {
		return "tokens"
	}
	return "requests"
}

// MaxPerMinute bounds PerMinute and Burst so that every quantity, kept in
// micro-units, fits an int64 with room for debt.
const MaxPerMinute = 1_000_000_000

// DefaultMaxRetries is how many compare-and-swap attempts Take and Settle make
// before giving up.
const DefaultMaxRetries = 8

// unit is the number of stored micro-units per token or request.
const unit = 1_000_000

// minuteMicro converts a refill rate: PerMinute units per minute refill
// PerMinute*unit micro-units per 60e9 ns, that is elapsed*PerMinute/60000 micro-units.
const minuteMicro = 60_000

// Rule configures one bucket: it refills continuously at PerMinute units per
// minute and holds at most Burst units (PerMinute when Burst is 0).
type Rule struct {
	PerMinute int64
	Burst     int64
}

// Validate reports whether r can make a bucket.
func (r Rule) Validate() error {
	if r.PerMinute <= 0 || r.PerMinute > MaxPerMinute {
		return errors.New("perMinute: must be between 1 and " + strconv.Itoa(MaxPerMinute))
	}
	if r.Burst < 0 || r.Burst > MaxPerMinute {
		return errors.New("burst: must be between 0 (same as perMinute) and " + strconv.Itoa(MaxPerMinute))
	}
	return nil
}

// Decision is the outcome of a Take.
type Decision struct {
	// Allowed reports whether the request may proceed. It is true when the
	// units were taken and also when the limiter failed open.
	Allowed bool
	// FailedOpen reports that the limiter could not decide (the store kept
	// changing under it for MaxRetries attempts, or failed) and allowed the
	// request without taking anything.
	FailedOpen bool
	// TooLarge reports that n exceeds the bucket's capacity: no wait helps.
	TooLarge bool
	// Limit is the bucket's capacity in units.
	Limit int64
	// Remaining is the whole units left after this decision (never negative).
	Remaining int64
	// ResetAfter is the time in ns until the bucket is full again, like
	// OpenAI's x-ratelimit-reset-* ("time until the limit resets").
	ResetAfter int64
	// RetryAfter is the time in ns until n units would be available; 0 when
	// Allowed. When TooLarge it equals ResetAfter.
	RetryAfter int64
}

// Limiter is one bucket configuration (a route and a kind) applied to any number
// of keys, one bucket per key. A Limiter belongs to one VM: it is not safe for
// concurrent use (it reuses an encoding buffer), while the buckets it works on are
// shared by all VMs through SharedData.
//
// Bucket creation: Envoy's shared data has no create-if-absent, so the first
// write of an absent key is unconditional. If two VMs create the same key at the
// same moment, the later creation can erase takes the other VM made in between.
// This happens at most once per key per Envoy process and can over-admit by at
// most the units taken by other VMs in that window; every later update is a
// checked compare-and-swap and never over-admits.
type Limiter struct {
	store      SharedData
	prefix     string
	routeKey   string
	overflow   string
	limit      int64 // units
	capacity   int64 // micro-units
	perMinute  int64
	maxRetries int
	buf        [stateSize]byte
}

// New returns the Limiter for route's kind buckets under rule r, stored in store.
func New(store SharedData, route string, kind Kind, r Rule) (*Limiter, error) {
	if err := r.Validate(); err != nil {
		return nil, errors.New("limits: route " + strconv.Quote(route) + " " + kind.String() + ": " + err.Error())
	}
	if store == nil {
		return nil, errors.New("limits: nil shared data store")
	}
	burst := r.Burst
	if burst == 0 {
		burst = r.PerMinute
	}
	// The route is length-prefixed so no route name can forge another's keys.
	prefix := "shepherd.rl/" + kind.String() + "/" + strconv.Itoa(len(route)) + ":" + route + "/"
	return &Limiter{
		store:      store,
		prefix:     prefix,
		routeKey:   prefix + "*",
		overflow:   prefix + "other",
		limit:      burst,
		capacity:   burst * unit,
		perMinute:  r.PerMinute,
		maxRetries: DefaultMaxRetries,
	}, nil
}

// Key is the shared data key of consumer's bucket; consumer "" is the route-wide
// bucket. It allocates one string when consumer is not empty.
func (l *Limiter) Key(consumer string) string {
	if consumer == "" {
		return l.routeKey
	}
	return l.prefix + "=" + consumer
}

// OverflowKey is the key of the bucket shared by the consumers a Consumers
// tracker does not track. It differs from every Key(consumer).
func (l *Limiter) OverflowKey() string { return l.overflow }

// Limit is the bucket capacity in units.
func (l *Limiter) Limit() int64 { return l.limit }

// Take takes n units from key's bucket at time now (ns) if n are available, in a
// compare-and-swap loop. n <= 0 is always allowed and changes nothing. When the
// store keeps changing under it for DefaultMaxRetries attempts it fails open
// (Allowed and FailedOpen set, error nil); when the store fails it fails open and
// returns the error.
func (l *Limiter) Take(key string, n int64, now int64) (Decision, error) {
	if n > l.limit {
		st, _, err := l.load(key, now)
		if err != nil {
			return l.failOpen(), err
		}
		d := l.decide(st.tokens)
		d.TooLarge = true
		d.RetryAfter = d.ResetAfter
		return d, nil
	}
	for range l.maxRetries {
		st, cas, err := l.load(key, now)
		if err != nil {
			return l.failOpen(), err
		}
		if n <= 0 {
			d := l.decide(st.tokens)
			d.Allowed = true
			return d, nil
		}
		need := n * unit
		if st.tokens < need {
			d := l.decide(st.tokens)
			d.RetryAfter = mulDiv(need-st.tokens, minuteMicro, l.perMinute, true)
			return d, nil
		}
		st.tokens -= need
		err = l.store.Set(key, st.encode(l.buf[:]), cas)
		if err == nil {
			d := l.decide(st.tokens)
			d.Allowed = true
			return d, nil
		}
		if !errors.Is(err, ErrCasMismatch) {
			return l.failOpen(), wrap("limits: take", err)
		}
	}
	return l.failOpen(), nil
}

// ErrContended is returned by Settle when the bucket kept changing for
// DefaultMaxRetries attempts; the adjustment was not applied.
var ErrContended = errors.New("limits: bucket contended, adjustment dropped")

// Settle corrects a reservation made with Take(key, reserved, ...) once the real
// usage actual is known, at time now. When reserved > actual the difference is
// refunded (the bucket never exceeds its capacity). When actual > reserved the
// difference is charged even if that takes the bucket below zero: the debt delays
// later admissions until the refill pays it back. Debt is capped at one full bucket,
// so a single huge charge delays admissions by at most two refill periods.
// Call it after a Take that was allowed and did not fail open; a failed-open
// Take reserved nothing, so settle it with reserved 0 to charge the usage.
//
// Negative counts are taken as 0, so a settlement never refunds more than its
// reservation whatever actual says.
func (l *Limiter) Settle(key string, reserved, actual int64, now int64) error {
	// Both in [0, MaxInt64]: the difference cannot overflow.
	diff := max(reserved, 0) - max(actual, 0)
	if diff == 0 {
		return nil
	}
	// Clamp before scaling so the micro-unit arithmetic cannot overflow.
	diff = max(min(diff, l.limit), -2*l.limit)
	for range l.maxRetries {
		st, cas, err := l.load(key, now)
		if err != nil {
			return err
		}
		st.tokens = max(min(st.tokens+diff*unit, l.capacity), -l.capacity)
		err = l.store.Set(key, st.encode(l.buf[:]), cas)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrCasMismatch) {
			return wrap("limits: settle", err)
		}
	}
	return ErrContended
}

// load reads key's bucket and refills it up to now. An absent or undecodable
// value reads as a full bucket.
func (l *Limiter) load(key string, now int64) (state, uint32, error) {
	v, cas, err := l.store.Get(key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return state{tokens: l.capacity, last: now}, 0, nil
		}
		return state{}, 0, wrap("limits: read bucket", err)
	}
	st, ok := decodeState(v)
	if !ok {
		// Not ours or from an incompatible build: start over, still under CAS.
		return state{tokens: l.capacity, last: now}, cas, nil
	}
	return l.refill(st, now), cas, nil
}

// refill adds what the bucket earned since st.last. A clock that goes backwards
// earns nothing and does not move last back. last advances only by the time the
// credited micro-units took, so frequent updates of a slow bucket lose nothing
// to rounding (at most a nanosecond per update).
func (l *Limiter) refill(st state, now int64) state {
	// A smaller capacity from a new config applies at once.
	st.tokens = min(st.tokens, l.capacity)
	st.tokens = max(st.tokens, -l.capacity)
	if now <= st.last {
		return st
	}
	elapsed := now - st.last
	deficit := l.capacity - st.tokens
	if deficit <= 0 || elapsed >= mulDiv(deficit, minuteMicro, l.perMinute, true) {
		st.tokens, st.last = l.capacity, now
		return st
	}
	gain := mulDiv(elapsed, l.perMinute, minuteMicro, false)
	st.tokens += gain
	st.last += mulDiv(gain, minuteMicro, l.perMinute, true)
	return st
}

func (l *Limiter) decide(tokens int64) Decision {
	d := Decision{Limit: l.limit}
	if tokens > 0 {
		d.Remaining = tokens / unit
	}
	if deficit := l.capacity - tokens; deficit > 0 {
		d.ResetAfter = mulDiv(deficit, minuteMicro, l.perMinute, true)
	}
	return d
}

func (l *Limiter) failOpen() Decision {
	return Decision{Allowed: true, FailedOpen: true, Limit: l.limit}
}

// state is a bucket as stored: tokens in micro-units (negative means debt) and
// the time of the last refill in ns, 16 bytes.
type state struct {
	tokens int64
	last   int64
}

const stateSize = 16

func (s state) encode(buf []byte) []byte {
	putUint64(buf[0:8], uint64(s.tokens))
	putUint64(buf[8:16], uint64(s.last))
	return buf[:stateSize]
}

func decodeState(b []byte) (state, bool) {
	if len(b) != stateSize {
		return state{}, false
	}
	return state{
		tokens: int64(getUint64(b[0:8])),
		last:   int64(getUint64(b[8:16])),
	}, true
}

// The stored forms are big-endian. These helpers replace encoding/binary, which
// links reflect into the module.

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func getUint64(b []byte) uint64 {
	_ = b[7]
	var v uint64
	for i := range 8 {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func putUint16(b []byte, v uint16) { b[0], b[1] = byte(v>>8), byte(v) }

func getUint16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// mulDiv returns a*b/c for a, b >= 0 and c > 0 without intermediate overflow,
// rounded up when up is set, saturating at math.MaxInt64.
func mulDiv(a, b, c int64, up bool) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, uint64(c))
	if up && r != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// wrapError adds context to a store error and keeps it matchable with errors.Is.
type wrapError struct {
	msg string
	err error
}

func wrap(msg string, err error) error { return &wrapError{msg: msg, err: err} }

func (e *wrapError) Error() string { return e.msg + ": " + e.err.Error() }

func (e *wrapError) Unwrap() error { return e.err }
