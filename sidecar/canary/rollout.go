package canary

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// State is where a rollout is.
type State int

// States. The numeric values match shepherd.policy.v1.RolloutState.
const (
	Progressing State = 1
	Paused      State = 2
	Promoted    State = 3
	RolledBack  State = 4
	Manual      State = 5
)

// String returns the state in lower case, e.g. "rolled_back".
func (s State) String() string {
	switch s {
	case Progressing:
		return "progressing"
	case Paused:
		return "paused"
	case Promoted:
		return "promoted"
	case RolledBack:
		return "rolled_back"
	case Manual:
		return "manual"
	}
	return "unknown"
}

// FullWeight is 100% in basis points.
const FullWeight = 10000

// ErrInvalidWeight is returned by SetWeight for a weight above FullWeight.
var ErrInvalidWeight = errors.New("weight must be between 0 and 10000 basis points")

// Saved is the part of a Rollout that survives a restart.
type Saved struct {
	Fingerprint string `json:"fingerprint"`
	State       State  `json:"state"`
	StepIndex   int    `json:"step_index"`
	WeightBP    uint32 `json:"weight_bp"`
	StepStarted int64  `json:"step_started_unix_ms"`
	LastVerdict string `json:"last_verdict,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// Rev counts the rollout's transitions; replicas sharing state use it to
	// order and detect concurrent changes.
	Rev uint64 `json:"rev,omitempty"`
}

// Rollout is one plan's state machine. It is not safe for concurrent use;
// the caller serializes calls.
type Rollout struct {
	plan        Plan
	state       State
	step        int
	weight      uint32
	stepStarted time.Time
	lastVerdict string
	reason      string
	rev         uint64
	window      Window
}

// NewRollout starts a plan at its first step (paused when the plan says so).
func NewRollout(p Plan, now time.Time) *Rollout {
	r := &Rollout{plan: p, state: Progressing}
	if p.StartPaused {
		r.state = Paused
	}
	r.enterStep(0, now)
	return r
}

// Restore rebuilds a rollout from saved state; when the plan's fingerprint
// changed since it was saved, the rollout starts afresh.
func Restore(p Plan, s Saved, now time.Time) *Rollout {
	if s.Fingerprint != p.Fingerprint() || s.State < Progressing || s.State > Manual ||
		s.StepIndex < 0 || s.StepIndex > len(p.Steps) || s.WeightBP > FullWeight {
		return NewRollout(p, now)
	}
	return &Rollout{
		plan: p, state: s.State, step: s.StepIndex, weight: s.WeightBP,
		stepStarted: time.UnixMilli(s.StepStarted), lastVerdict: s.LastVerdict, reason: s.Reason, rev: s.Rev,
	}
}

// Save returns the state to persist.
func (r *Rollout) Save() Saved {
	return Saved{
		Fingerprint: r.plan.Fingerprint(), State: r.state, StepIndex: r.step, WeightBP: r.weight,
		StepStarted: r.stepStarted.UnixMilli(), LastVerdict: r.lastVerdict, Reason: r.reason, Rev: r.rev,
	}
}

// SetPlan replaces the plan's thresholds in place when the fingerprint is
// unchanged, or restarts the rollout when it is not. It reports whether the
// rollout restarted.
func (r *Rollout) SetPlan(p Plan, now time.Time) bool {
	if p.Fingerprint() == r.plan.Fingerprint() {
		r.plan = p
		return false
	}
	rev := r.rev
	*r = *NewRollout(p, now)
	r.rev = rev + 1
	return true
}

// Rev counts the rollout's transitions (state, step or weight changes),
// starting at 1; a restarted plan continues the count.
func (r *Rollout) Rev() uint64 { return r.rev }

// Rebase sets the revision counter; a replica uses it to order its own
// state after another replica's when both must be kept apart.
func (r *Rollout) Rebase(rev uint64) { r.rev = rev }

// Plan returns the rollout's plan.
func (r *Rollout) Plan() Plan { return r.plan }

// State returns the rollout state.
func (r *Rollout) State() State { return r.state }

// Step returns the index of the current step (len(Steps) once promoted past
// the last step).
func (r *Rollout) Step() int { return r.step }

// Weight returns the canary's share of traffic in basis points.
func (r *Rollout) Weight() uint32 { return r.weight }

// StepStarted returns when the current step (or state) began.
func (r *Rollout) StepStarted() time.Time { return r.stepStarted }

// LastVerdict and Reason describe the last analysis or command.
func (r *Rollout) LastVerdict() string { return r.lastVerdict }

// Reason is the explanation of the last analysis or command.
func (r *Rollout) Reason() string { return r.reason }

// Window returns the evidence gathered since the step started.
func (r *Rollout) Window(now time.Time) Window {
	w := r.window
	w.Elapsed = now.Sub(r.stepStarted)
	return w
}

// Observe adds one outcome for provider to the current window; outcomes for
// providers outside the plan are ignored.
func (r *Rollout) Observe(provider string, status, latencyMs uint32) {
	switch provider {
	case r.plan.Canary:
		r.window.Canary.Add(status, latencyMs)
	case r.plan.Baseline:
		r.window.Baseline.Add(status, latencyMs)
	}
}

// Evaluate runs the analysis when the rollout is progressing and applies
// its verdict. It reports whether the weight or state changed.
func (r *Rollout) Evaluate(now time.Time) (Verdict, bool) {
	if r.state != Progressing {
		return Verdict{Wait, "rollout is " + r.state.String()}, false
	}
	v := Analyze(r.plan, r.Window(now))
	r.lastVerdict, r.reason = v.Decision.String(), v.Reason
	switch v.Decision {
	case Advance:
		if r.plan.Hold && r.step == len(r.plan.Steps)-1 && r.plan.Steps[r.step] < 100 {
			// A plan that holds stays at its last weight; each window is
			// analysed again, so a canary that turns bad still rolls back.
			r.resetWindow(now)
			v = Verdict{Wait, "holding at " + strconv.FormatUint(uint64(r.plan.Steps[r.step]), 10) + "% (the plan holds at its last step): " + v.Reason}
			r.lastVerdict, r.reason = "hold", v.Reason
			return v, false
		}
		r.enterStep(r.step+1, now)
		r.lastVerdict, r.reason = v.Decision.String(), v.Reason
		return v, true
	case Rollback:
		r.state = RolledBack
		r.weight = 0
		r.resetWindow(now)
		return v, true
	}
	return v, false
}

// enterStep moves to step i; past the last step, or at a 100% step, the
// rollout is promoted.
func (r *Rollout) enterStep(i int, now time.Time) {
	r.step = i
	if i >= len(r.plan.Steps) || r.plan.Steps[i] >= 100 {
		r.state = Promoted
		r.weight = FullWeight
		if i < len(r.plan.Steps) {
			r.step = len(r.plan.Steps)
		}
	} else {
		r.weight = r.plan.Steps[i] * 100
	}
	r.resetWindow(now)
}

// resetWindow starts a new window; every transition goes through it, so it
// also counts the transition.
func (r *Rollout) resetWindow(now time.Time) {
	r.rev++
	r.window = Window{}
	r.stepStarted = now
}

// Pause holds the current weight. Valid while progressing or paused.
func (r *Rollout) Pause(now time.Time) error {
	if r.state != Progressing && r.state != Paused {
		return fmt.Errorf("cannot pause a rollout that is %s", r.state)
	}
	r.state = Paused
	r.lastVerdict, r.reason = "", "paused by operator"
	r.resetWindow(now)
	return nil
}

// Resume continues stepping: from a pause at the same step; after a manual
// weight at the first step whose weight is at least the current one; after a
// rollback or promotion from the first step.
func (r *Rollout) Resume(now time.Time) error {
	switch r.state {
	case Progressing:
		return nil
	case Paused:
		r.state = Progressing
		r.resetWindow(now)
	case Manual:
		i := 0
		for i < len(r.plan.Steps) && r.plan.Steps[i]*100 < r.weight {
			i++
		}
		r.state = Progressing
		r.enterStep(i, now)
	default:
		r.state = Progressing
		r.enterStep(0, now)
	}
	r.lastVerdict, r.reason = "", "resumed by operator"
	return nil
}

// Promote sends all traffic to the canary.
func (r *Rollout) Promote(now time.Time) {
	r.state = Promoted
	r.step = len(r.plan.Steps)
	r.weight = FullWeight
	r.lastVerdict, r.reason = "", "promoted by operator"
	r.resetWindow(now)
}

// Rollback sends all traffic to the baseline.
func (r *Rollout) Rollback(now time.Time) {
	r.state = RolledBack
	r.weight = 0
	r.lastVerdict, r.reason = "", "rolled back by operator"
	r.resetWindow(now)
}

// SetWeight pins the canary weight (basis points) and stops stepping.
func (r *Rollout) SetWeight(bp uint32, now time.Time) error {
	if bp > FullWeight {
		return ErrInvalidWeight
	}
	r.state = Manual
	r.weight = bp
	r.lastVerdict, r.reason = "", fmt.Sprintf("weight set to %d bp by operator", bp)
	r.resetWindow(now)
	return nil
}
