// Package fallback plans retries of failed upstream calls: which fallback chain
// entry to try next, after what delay, and when to give up; and a retry budget
// that caps retries to a share of a route's traffic. It is pure: time and
// randomness are passed in, and planning allocates nothing.
package fallback

import (
	"errors"
	"math/bits"
	"strconv"
	"time"
)

// DefaultStatuses are the upstream statuses retried when Policy.Statuses is empty.
var DefaultStatuses = []int{429, 500, 502, 503, 504}

// Policy defaults, applied by NewPlanner to zero fields.
const (
	DefaultMaxAttempts   = 3
	DefaultBaseBackoff   = int64(250 * time.Millisecond)
	DefaultMaxBackoff    = int64(5 * time.Second)
	DefaultRetryAfterCap = int64(10 * time.Second)
	DefaultBudget        = int64(60 * time.Second)
	DefaultJitter        = 0.5
	MaxAttemptsLimit     = 10
)

// Policy says when and how a failed request is retried. Durations are in ns.
type Policy struct {
	// Statuses are the upstream statuses worth retrying (DefaultStatuses when
	// empty). Failed callouts (no response at all) are always retried.
	Statuses []int
	// MaxAttempts counts every upstream attempt, the first included.
	MaxAttempts int
	// BaseBackoff is the first backoff; each later one doubles, up to MaxBackoff.
	BaseBackoff, MaxBackoff int64
	// RetryAfterCap is the longest Retry-After (or OpenAI reset hint) honoured;
	// longer hints wait only this long.
	RetryAfterCap int64
	// Budget is the total time from the start of the request after which no
	// new attempt starts.
	Budget int64
	// Jitter is the share of each backoff that is random, in (0, 1]: the delay
	// is uniform in [b*(1-Jitter), b]. 1 is "full jitter", 0.5 (the default)
	// is "equal jitter": it keeps a floor of half the backoff so a throttled
	// provider is not hit again at once, and still spreads the clients apart.
	// 0 selects the default; jitter cannot be turned off, as synchronized
	// retries are what it prevents.
	Jitter float64
}

// WithDefaults returns p with zero fields set to the package defaults.
func (p Policy) WithDefaults() Policy {
	if len(p.Statuses) == 0 {
		p.Statuses = DefaultStatuses
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseBackoff == 0 {
		p.BaseBackoff = DefaultBaseBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = max(DefaultMaxBackoff, p.BaseBackoff)
	}
	if p.RetryAfterCap == 0 {
		p.RetryAfterCap = DefaultRetryAfterCap
	}
	if p.Budget == 0 {
		p.Budget = DefaultBudget
	}
	if p.Jitter == 0 {
		p.Jitter = DefaultJitter
	}
	return p
}

// Validate reports the first field of p that cannot be used, by its config name.
// Call it on p.WithDefaults() to check a config that may leave fields out.
func (p Policy) Validate() error {
	for _, s := range p.Statuses {
		if s < 400 || s > 599 {
			return errors.New("fallback: statuses: " + strconv.Itoa(s) + " is not a 4xx or 5xx status")
		}
	}
	switch {
	case len(p.Statuses) == 0:
		return errors.New("fallback: statuses: must not be empty")
	case p.MaxAttempts < 1 || p.MaxAttempts > MaxAttemptsLimit:
		return errors.New("fallback: maxAttempts: must be between 1 and " + strconv.Itoa(MaxAttemptsLimit))
	case p.BaseBackoff <= 0:
		return errors.New("fallback: baseBackoff: must be positive")
	case p.MaxBackoff < p.BaseBackoff:
		return errors.New("fallback: maxBackoff: must not be less than baseBackoff")
	case p.RetryAfterCap < 0:
		return errors.New("fallback: retryAfterCap: must not be negative")
	case p.Budget <= 0:
		return errors.New("fallback: budget: must be positive")
	case !(p.Jitter > 0 && p.Jitter <= 1): // also rejects NaN
		return errors.New("fallback: jitter: must be in (0, 1]")
	}
	return nil
}

// Failure describes how one upstream attempt failed.
type Failure struct {
	// Entry is the chain entry (0 = primary) the failed attempt went to.
	Entry int
	// Status is the upstream response status; ignored when CalloutFailed.
	Status int
	// CalloutFailed means no response came back (connect failure, reset,
	// timeout).
	CalloutFailed bool
	// RetryAfter is the response's Retry-After value, "" when absent.
	RetryAfter string
	// ResetHint is OpenAI's x-ratelimit-reset-requests or -tokens value for
	// the exhausted limit (the one whose x-ratelimit-remaining-* is 0), used on
	// a 429 without Retry-After; "" when absent.
	ResetHint string
}

// Reason says why a Step retries or gives up.
type Reason uint8

// The reasons.
const (
	Retry             Reason = iota // retry as planned
	NotRetryable                    // the status is not in Policy.Statuses
	AttemptsExhausted               // Policy.MaxAttempts reached
	OutOfTime                       // the delay does not fit in what is left of Policy.Budget
)

var reasonNames = [...]string{"retry", "not_retryable", "attempts_exhausted", "out_of_time"}

// String is the reason as a metric label value.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Step is a Planner's decision after a failure.
type Step struct {
	Retry  bool
	Entry  int   // the chain entry to try next, when Retry
	Delay  int64 // ns to wait before it, when Retry
	Reason Reason
}

// Planner plans retries under one Policy along a fallback chain of a fixed
// length. It is immutable and safe for concurrent use.
//
// Chain order: attempt k (counting from 0) goes to entry k mod chain length, so a
// failure moves to the next fallback and wraps around to the primary once all
// were tried. An entry's first visit starts at once (a fallback is a different
// model or provider; the failed one's backoff says nothing about it). A revisit
// waits an exponential backoff with jitter for the number of full passes made
// through the chain, and, when it retries the very entry that just failed, at
// least that entry's Retry-After (or reset hint) up to RetryAfterCap. Hints from
// earlier failures of other entries are not remembered.
type Planner struct {
	p        Policy
	chainLen int
	statuses [10]uint64 // bit per status 0..639
}

// NewPlanner validates p (with defaults applied) for a chain of chainLen entries,
// the primary included.
func NewPlanner(p Policy, chainLen int) (*Planner, error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if chainLen < 1 {
		return nil, errors.New("fallback: chain: must have at least one entry")
	}
	pl := &Planner{p: p, chainLen: chainLen}
	for _, s := range p.Statuses {
		pl.statuses[s/64] |= 1 << (s % 64)
	}
	return pl, nil
}

// Policy is the planner's policy with defaults applied.
func (pl *Planner) Policy() Policy { return pl.p }

// Retryable reports whether status is one the policy retries.
func (pl *Planner) Retryable(status int) bool {
	return status >= 0 && status < 640 && pl.statuses[status/64]&(1<<(status%64)) != 0
}

// Next decides what follows failure f of the attempts-th attempt (1 for the
// first), elapsed ns after the request started, at now (Unix ns, to read an
// HTTP-date Retry-After). rnd supplies the jitter; nil means no randomness
// (every delay at its lower bound). It gives up when the status is not
// retryable, when MaxAttempts is reached, or when the delay would not end before
// the time budget does. A retry that Next plans should still pass the route's
// RetryBudget.
func (pl *Planner) Next(attempts int, f Failure, elapsed, now int64, rnd func() uint64) Step {
	return pl.NextSkipping(attempts, 0, f, elapsed, now, rnd)
}

// NextSkipping is Next for a request that skipped skipped entries of the chain
// without attempting them (their providers were cooling down): the chain
// order moves on by that many entries, and they count towards the passes
// through the chain, but not as attempts.
func (pl *Planner) NextSkipping(attempts, skipped int, f Failure, elapsed, now int64, rnd func() uint64) Step {
	if !f.CalloutFailed && !pl.Retryable(f.Status) {
		return Step{Reason: NotRetryable}
	}
	if attempts >= pl.p.MaxAttempts {
		return Step{Reason: AttemptsExhausted}
	}
	attempts = max(attempts, 1)
	pos := attempts + max(skipped, 0)
	entry := pos % pl.chainLen
	var delay int64
	if round := pos / pl.chainLen; round > 0 {
		delay = pl.jitter(pl.backoff(round), rnd)
		if entry == f.Entry && !f.CalloutFailed {
			delay = max(delay, pl.hint(f, now))
		}
	}
	if remaining := pl.p.Budget - elapsed; delay >= remaining {
		return Step{Reason: OutOfTime}
	}
	return Step{Retry: true, Entry: entry, Delay: delay, Reason: Retry}
}

// backoff is BaseBackoff doubled round-1 times, at most MaxBackoff.
func (pl *Planner) backoff(round int) int64 {
	b := pl.p.BaseBackoff
	for i := 1; i < round && b < pl.p.MaxBackoff; i++ {
		b <<= 1
	}
	return min(b, pl.p.MaxBackoff)
}

// jitter draws the delay uniformly from [b-span, b] with span = b*Jitter.
func (pl *Planner) jitter(b int64, rnd func() uint64) int64 {
	span := int64(float64(b) * pl.p.Jitter)
	if span <= 0 || rnd == nil {
		return b - span
	}
	// The high word of r*(span+1) is uniform enough in [0, span] and has no
	// modulo bias worth the name for spans far below 2^64.
	x, _ := bits.Mul64(rnd(), uint64(span)+1)
	return b - span + int64(x)
}

// hint is the delay the failed response asked for, capped at RetryAfterCap.
func (pl *Planner) hint(f Failure, now int64) int64 {
	d, ok := ParseRetryAfter(f.RetryAfter, now)
	if !ok && f.Status == 429 {
		d, ok = ParseResetHint(f.ResetHint)
	}
	if !ok {
		return 0
	}
	return min(d, pl.p.RetryAfterCap)
}
