package policy

import (
	"fmt"
	"time"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/canary"
	"github.com/shepherd-mesh/shepherd/sidecar/config"
)

// providerHealth tracks one provider's recent outcomes and its cooldown.
type providerHealth struct {
	windowStart   time.Time
	requests      uint64
	errors        uint64
	cooldownUntil time.Time
	reason        string
}

// cooling reports whether the provider is in cooldown at now.
func (h *providerHealth) cooling(now time.Time) bool {
	return !h.cooldownUntil.IsZero() && now.Before(h.cooldownUntil)
}

// expire clears a cooldown that is over; it reports whether it did.
func (h *providerHealth) expire(now time.Time) bool {
	if h.cooldownUntil.IsZero() || now.Before(h.cooldownUntil) {
		return false
	}
	h.cooldownUntil, h.reason = time.Time{}, ""
	h.windowStart, h.requests, h.errors = now, 0, 0
	return true
}

// cooldownCause classifies why a cooldown started, for metrics.
type cooldownCause string

const (
	causeNone      cooldownCause = ""
	causeStorm     cooldownCause = "error_storm"
	causeRemaining cooldownCause = "ratelimit_remaining"
)

// observe applies one outcome and reports whether a cooldown started.
func (h *providerHealth) observe(cfg config.Health, o *policyv1.Outcome, now time.Time) cooldownCause {
	h.expire(now)
	if h.cooling(now) {
		return causeNone // outcomes still in flight when the cooldown began
	}
	window := time.Duration(cfg.Window)
	if now.Sub(h.windowStart) >= window || now.Before(h.windowStart) {
		h.windowStart, h.requests, h.errors = now, 0, 0
	}
	h.requests++
	if canary.IsError(o.StatusCode) {
		h.errors++
	}
	cooldown := time.Duration(cfg.Cooldown)
	if ra := time.Duration(o.RetryAfterMs) * time.Millisecond; ra > cooldown {
		cooldown = min(ra, time.Duration(cfg.MaxCooldown))
	}
	minRemaining := *cfg.MinRatelimitRemaining
	if o.HasRatelimitRemaining && minRemaining >= 0 && o.RatelimitRemaining < minRemaining {
		h.start(now, cooldown, fmt.Sprintf("x-ratelimit-remaining %d is below %d", o.RatelimitRemaining, minRemaining))
		return causeRemaining
	}
	if h.requests >= cfg.MinRequests && float64(h.errors) >= *cfg.MaxErrorRate*float64(h.requests) {
		h.start(now, cooldown, fmt.Sprintf("%d of %d outcomes failed (429/5xx) within %s", h.errors, h.requests, window))
		return causeStorm
	}
	return causeNone
}

func (h *providerHealth) start(now time.Time, d time.Duration, reason string) {
	h.cooldownUntil, h.reason = now.Add(d), reason
	h.windowStart, h.requests, h.errors = now, 0, 0
}
