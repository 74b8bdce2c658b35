// Package canary holds rollout plans and their analysis: a Plan moves a
// route's traffic from a baseline provider to a canary provider in steps, a
// Rollout is one plan's state machine, and Analyze is the pure function that
// decides from one window of outcomes whether a step advances, waits or rolls
// back.
package canary

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/shepherd-mesh/shepherd/sidecar/config"
)

// Plan is a validated rollout plan for one route.
type Plan struct {
	Route    string
	Baseline string
	Canary   string
	// Steps are percentages of traffic on the canary, strictly increasing.
	Steps        []uint32
	Interval     time.Duration
	MinRequests  uint64
	MaxErrorRate float64
	// MaxP99Ratio bounds canary p99 / baseline p99; 0 turns the check off.
	MaxP99Ratio float64
	StartPaused bool
	// Hold keeps the last step's weight instead of promoting past it.
	Hold bool
}

// PlanFromConfig converts a validated config plan.
func PlanFromConfig(c config.Plan) Plan {
	return Plan{
		Route:        c.Route,
		Baseline:     c.Baseline,
		Canary:       c.Canary,
		Steps:        append([]uint32(nil), c.Steps...),
		Interval:     time.Duration(c.Interval),
		MinRequests:  c.MinRequests,
		MaxErrorRate: *c.MaxErrorRate,
		MaxP99Ratio:  *c.MaxP99Ratio,
		StartPaused:  c.Paused,
		Hold:         c.Hold,
	}
}

// Fingerprint identifies the parts of a plan that make a saved rollout state
// meaningless when they change (providers and steps); thresholds may change
// without restarting a rollout.
func (p Plan) Fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%v", p.Route, p.Baseline, p.Canary, p.Steps)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Decision is what a step does after an analysis.
type Decision int

// Decisions.
const (
	Wait Decision = iota
	Advance
	Rollback
)

// String returns "advance", "rollback" or "wait".
func (d Decision) String() string {
	switch d {
	case Advance:
		return "advance"
	case Rollback:
		return "rollback"
	default:
		return "wait"
	}
}

// Window is the evidence gathered during the current step.
type Window struct {
	Canary   Stats
	Baseline Stats
	// Elapsed is the time since the step started.
	Elapsed time.Duration
}

// Verdict is the result of Analyze.
type Verdict struct {
	Decision Decision
	Reason   string
}

// Analyze decides a step's fate from its window alone:
//   - rollback as soon as the canary has MinRequests outcomes and its error
//     rate is above MaxErrorRate;
//   - wait until Interval has elapsed and the canary has MinRequests outcomes;
//   - rollback when the canary's p99 latency exceeds MaxP99Ratio times the
//     baseline's (checked only when the baseline has outcomes to compare with);
//   - otherwise advance.
func Analyze(p Plan, w Window) Verdict {
	c, b := &w.Canary, &w.Baseline
	if c.Requests >= p.MinRequests && c.Requests > 0 && c.ErrorRate() > p.MaxErrorRate {
		return Verdict{Rollback, fmt.Sprintf("canary error rate %.2f%% (%d of %d) is above %.2f%%",
			100*c.ErrorRate(), c.Errors, c.Requests, 100*p.MaxErrorRate)}
	}
	if w.Elapsed < p.Interval {
		return Verdict{Wait, fmt.Sprintf("step interval not over (%s of %s)",
			w.Elapsed.Truncate(time.Second), p.Interval)}
	}
	if c.Requests < p.MinRequests {
		return Verdict{Wait, fmt.Sprintf("canary has %d of %d requests", c.Requests, p.MinRequests)}
	}
	if p.MaxP99Ratio > 0 && b.Requests > 0 {
		cp, bp := c.P99(), b.P99()
		if float64(cp) > p.MaxP99Ratio*float64(bp) {
			return Verdict{Rollback, fmt.Sprintf("canary p99 %dms is above %.2f x baseline p99 %dms",
				cp, p.MaxP99Ratio, bp)}
		}
	}
	return Verdict{Advance, fmt.Sprintf("canary healthy: %d requests, error rate %.2f%%",
		c.Requests, 100*c.ErrorRate())}
}
