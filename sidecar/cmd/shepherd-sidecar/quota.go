package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
)

// quotaFlags are the RLQS (quota assignment) tuning flags; docs/RATELIMIT.md,
// "Quota assignments (RLQS)", says what each one changes.
type quotaFlags struct {
	burst, minTTL, maxTTL, defaultTTL, abandonAfter, shareInterval, demandWindow time.Duration
	ttlIntervals, idleShare, hysteresis                                          float64
}

func (q *quotaFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&q.burst, "rlqs-burst", 500*time.Millisecond,
		"how much of its rate a client's token bucket holds (max_tokens; at least 1 token, at most one fill); each change of a share may admit this much beyond the limit")
	fs.Float64Var(&q.ttlIntervals, "rlqs-ttl-intervals", 3, "assignment_time_to_live in client reporting intervals (at least 2)")
	fs.DurationVar(&q.minTTL, "rlqs-min-ttl", 2*time.Second, "shortest assignment_time_to_live (whole seconds, at least 1s)")
	fs.DurationVar(&q.maxTTL, "rlqs-max-ttl", 5*time.Minute, "longest assignment_time_to_live (whole seconds, at most 24h)")
	fs.DurationVar(&q.defaultTTL, "rlqs-default-ttl", 10*time.Second,
		"assignment_time_to_live until a client's reporting interval is known (whole seconds, between --rlqs-min-ttl and --rlqs-max-ttl)")
	fs.DurationVar(&q.abandonAfter, "rlqs-abandon-after", 5*time.Minute,
		"a client that reports no request in a bucket for this long is told to abandon it (at least 1s)")
	fs.DurationVar(&q.demandWindow, "rlqs-demand-window", 500*time.Millisecond,
		"a client's demand is measured over at least this long (reports closer together add up); shorter follows demand sooner, noisier (100ms to 1m)")
	fs.Float64Var(&q.idleShare, "rlqs-idle-share", 0.02, "least fraction of an equal share every live client gets, above 0 and at most 1")
	fs.Float64Var(&q.hysteresis, "rlqs-hysteresis", 0.02,
		"shares are not revised while none would move by more than this fraction of the limit (above 0, at most 0.5)")
	fs.DurationVar(&q.shareInterval, "rlqs-share-interval", time.Second,
		"with --redis: how often each replica publishes its clients' demand and renews its claims (100ms to 1m)")
}

// options validates the flags into rlqs.Options, naming the flag at fault.
func (q *quotaFlags) options() (rlqs.Options, error) {
	whole := func(name string, d time.Duration) error {
		if d%time.Second != 0 {
			return fmt.Errorf("--%s: must be whole seconds (Envoy reads only the seconds), got %s", name, d)
		}
		return nil
	}
	switch {
	case q.burst <= 0 || q.burst > time.Hour:
		return rlqs.Options{}, fmt.Errorf("--rlqs-burst: must be above 0 and at most 1h, got %s", q.burst)
	case !(q.ttlIntervals >= 2 && q.ttlIntervals <= 1000):
		return rlqs.Options{}, fmt.Errorf("--rlqs-ttl-intervals: must be from 2 to 1000, got %g", q.ttlIntervals)
	case q.minTTL < time.Second:
		return rlqs.Options{}, fmt.Errorf("--rlqs-min-ttl: must be at least 1s, got %s", q.minTTL)
	case q.maxTTL < q.minTTL || q.maxTTL > 24*time.Hour:
		return rlqs.Options{}, fmt.Errorf("--rlqs-max-ttl: must be from --rlqs-min-ttl (%s) to 24h, got %s", q.minTTL, q.maxTTL)
	case q.defaultTTL < q.minTTL || q.defaultTTL > q.maxTTL:
		return rlqs.Options{}, fmt.Errorf("--rlqs-default-ttl: must be from --rlqs-min-ttl (%s) to --rlqs-max-ttl (%s), got %s", q.minTTL, q.maxTTL, q.defaultTTL)
	case q.abandonAfter < time.Second:
		return rlqs.Options{}, fmt.Errorf("--rlqs-abandon-after: must be at least 1s, got %s", q.abandonAfter)
	case q.demandWindow < 100*time.Millisecond || q.demandWindow > time.Minute:
		return rlqs.Options{}, fmt.Errorf("--rlqs-demand-window: must be from 100ms to 1m, got %s", q.demandWindow)
	case !(q.idleShare > 0 && q.idleShare <= 1):
		return rlqs.Options{}, fmt.Errorf("--rlqs-idle-share: must be above 0 and at most 1, got %g", q.idleShare)
	case !(q.hysteresis > 0 && q.hysteresis <= 0.5):
		return rlqs.Options{}, fmt.Errorf("--rlqs-hysteresis: must be above 0 and at most 0.5, got %g", q.hysteresis)
	case q.shareInterval < 100*time.Millisecond || q.shareInterval > time.Minute:
		return rlqs.Options{}, fmt.Errorf("--rlqs-share-interval: must be from 100ms to 1m, got %s", q.shareInterval)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"rlqs-min-ttl", q.minTTL}, {"rlqs-max-ttl", q.maxTTL}, {"rlqs-default-ttl", q.defaultTTL}} {
		if err := whole(d.name, d.v); err != nil {
			return rlqs.Options{}, err
		}
	}
	return rlqs.Options{Burst: q.burst, TTLIntervals: q.ttlIntervals, MinTTL: q.minTTL, MaxTTL: q.maxTTL, DefaultTTL: q.defaultTTL,
		AbandonAfter: q.abandonAfter, MinDemandWindow: q.demandWindow, IdleShare: q.idleShare, Hysteresis: q.hysteresis, ShareInterval: q.shareInterval}, nil
}
