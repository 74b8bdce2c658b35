// Package policy holds the sidecar's shared state — canary rollouts, provider
// health, budgets and credentials — and publishes it as versioned, immutable
// shepherd.policy.v1.Policy snapshots for the filters.
//
// An Engine is safe for concurrent use. Outcome reports, operator commands
// and Tick (called periodically by the server) change the state; every
// visible change produces a new version.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/canary"
	"github.com/shepherd-mesh/shepherd/sidecar/config"
)

// Errors returned by operator commands; test with errors.Is.
var (
	ErrUnknownRoute = errors.New("no canary plan for route")
	ErrInvalid      = errors.New("invalid request")
	// ErrConflict: another replica changed the rollout at the same time;
	// the command was not applied and may be retried.
	ErrConflict = errors.New("rollout changed by another replica; retry")
)

// Options configure an Engine. The zero value is usable.
type Options struct {
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the engine's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Store persists state; nil keeps it in memory only. A store that is
	// also a RolloutSharer or SpendSharer shares rollouts or spend with
	// other replicas.
	Store Store
	// SpendPublishInterval is how often accumulated spend alone produces a
	// new version (exhaustion always does at once). Default 10s.
	SpendPublishInterval time.Duration
}

// Engine is the sidecar's policy state.
type Engine struct {
	clock  func() time.Time
	log    *slog.Logger
	store  Store
	sharer RolloutSharer // set when the store shares rollouts
	m      *metrics
	spendN time.Duration

	saveMu sync.Mutex // serializes Store.Save calls

	mu          sync.Mutex
	cfg         *config.Config
	version     uint64
	snapshot    *policyv1.Policy
	changed     chan struct{}
	rollouts    map[string]*canary.Rollout
	synced      map[string]uint64 // per route, the rollout revision known to be in the shared store
	health      map[string]*providerHealth
	budgets     map[budgetID]*budget
	spend       consumerSpend
	creds       map[string]*credential
	lastPoll    time.Time
	spendDirty  bool
	lastPublish time.Time
	dirty       bool
}

// New builds an engine from a validated config (nil means config.Empty),
// restoring saved state from opts.Store. A store that cannot be read is an
// error. Credential files are read before New returns.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Engine, error) {
	if cfg == nil {
		cfg = config.Empty()
	}
	e := &Engine{
		clock:   opts.Clock,
		log:     opts.Logger,
		store:   opts.Store,
		spendN:  opts.SpendPublishInterval,
		changed: make(chan struct{}),
	}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.spendN <= 0 {
		e.spendN = 10 * time.Second
	}
	e.m = newMetrics(opts.Registerer)
	e.sharer, _ = e.store.(RolloutSharer)
	e.synced = map[string]uint64{}
	var saved Saved
	if e.store != nil {
		var err error
		if saved, err = e.store.Load(ctx); err != nil {
			return nil, err
		}
	}
	now := e.clock()
	e.version = max(saved.Version+1, uint64(now.UnixMilli()))
	e.rollouts = map[string]*canary.Rollout{}
	e.health = map[string]*providerHealth{}
	e.budgets = map[budgetID]*budget{}
	e.applyConfigLocked(cfg, now)
	for route, s := range saved.Rollouts {
		if r, ok := e.rollouts[route]; ok {
			e.rollouts[route] = canary.Restore(r.Plan(), s, now)
		}
	}
	for _, b := range e.budgets {
		if s, ok := saved.Budgets[b.id().String()]; ok {
			if m, ok := parsePeriod(s.Period); ok {
				b.month, b.spent = m, s.SpentMicroUSD
				b.roll(now)
			}
		}
	}
	for p, s := range saved.Cooldowns {
		if h, ok := e.health[p]; ok && s.UntilUnixMS > now.UnixMilli() {
			h.cooldownUntil, h.reason = time.UnixMilli(s.UntilUnixMS), s.Reason
		}
	}
	e.pollCredentials(now)
	e.mu.Lock()
	e.publishLocked(now)
	e.mu.Unlock()
	e.shareRollouts()
	e.syncSpend()
	return e, nil
}

// SetConfig applies a new validated, non-nil config. Rollouts whose plan kept its
// providers and steps keep their state; budgets keep their spend.
func (e *Engine) SetConfig(cfg *config.Config) {
	now := e.clock()
	e.mu.Lock()
	e.applyConfigLocked(cfg, now)
	e.lastPoll = time.Time{}
	e.mu.Unlock()
	e.pollCredentials(now)
	e.mu.Lock()
	e.publishLocked(now)
	e.mu.Unlock()
	e.save()
}

func (e *Engine) applyConfigLocked(cfg *config.Config, now time.Time) {
	e.cfg = cfg
	rollouts := map[string]*canary.Rollout{}
	for _, pc := range cfg.Canary.Routes {
		p := canary.PlanFromConfig(pc)
		if r, ok := e.rollouts[p.Route]; ok {
			r.SetPlan(p, now)
			rollouts[p.Route] = r
		} else {
			rollouts[p.Route] = canary.NewRollout(p, now)
		}
	}
	e.rollouts = rollouts
	health := map[string]*providerHealth{}
	for _, p := range cfg.Providers {
		if h, ok := e.health[p.Name]; ok {
			health[p.Name] = h
		} else {
			health[p.Name] = &providerHealth{windowStart: now}
		}
	}
	e.health = health
	budgets := map[budgetID]*budget{}
	add := func(route, consumer string, usd float64) {
		k := budgetID{route, consumer}
		b, ok := e.budgets[k]
		if !ok {
			b = &budget{route: route, consumer: consumer, month: monthOf(now)}
		}
		b.limit = usdToMicro(usd)
		budgets[k] = b
	}
	for _, b := range cfg.Budgets.Routes {
		add(b.Route, "", b.MonthlyUSD)
	}
	for _, b := range cfg.Budgets.Consumers {
		add("", b.Consumer, b.MonthlyUSD)
	}
	e.budgets = budgets
	e.creds = newCredentials(cfg, e.creds)
	e.dirty = true
}

// Policy returns the current snapshot. Callers must not modify it; it holds
// credentials and must never be logged.
func (e *Engine) Policy() *policyv1.Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snapshot
}

// Version returns the current policy version.
func (e *Engine) Version() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version
}

// Watch returns the current snapshot and a channel that is closed when a
// newer one is published.
func (e *Engine) Watch() (*policyv1.Policy, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.snapshot, e.changed
}

// Report applies a batch of outcomes and returns the policy version after
// it. Outcomes for routes, providers and budgets the config does not name
// only count in metrics, so the state stays bounded. What the batch may add
// to budgets is capped (reports.max_outcome_usd per outcome,
// reports.max_report_usd for the batch); clipped costs are counted and
// logged.
func (e *Engine) Report(outcomes []*policyv1.Outcome) uint64 {
	now := e.clock()
	e.mu.Lock()
	defer e.mu.Unlock()
	publish := false
	maxOutcome := usdToMicro(e.cfg.Reports.MaxOutcomeUSD)
	left := usdToMicro(e.cfg.Reports.MaxReportUSD)
	var clippedOutcome, clippedReport int
	var dropped int64 // micro-USD cut by either cap
	for _, o := range outcomes {
		if o == nil {
			continue
		}
		e.m.outcomes.Inc()
		if r, ok := e.rollouts[o.Route]; ok {
			r.Observe(o.Provider, o.StatusCode, o.LatencyMs)
		}
		if h, ok := e.health[o.Provider]; ok {
			if h.expire(now) {
				publish = true
			}
			if cause := h.observe(e.cfg.Health, o, now); cause != causeNone {
				publish = true
				e.m.cooldowns.WithLabelValues(o.Provider, string(cause)).Inc()
				e.log.Warn("provider cooldown", "provider", o.Provider, "until", h.cooldownUntil, "reason", h.reason)
			}
		}
		cost := o.CostMicroUsd
		if cost > maxOutcome {
			clippedOutcome++
			dropped = addSat(dropped, cost-maxOutcome)
			cost = maxOutcome
		}
		if cost > left {
			clippedReport++
			dropped = addSat(dropped, cost-left)
			cost = left
		}
		if cost > 0 {
			left -= cost
			if o.Consumer != "" {
				e.spend.add(o.Consumer, cost, now)
			}
			// A workload's spend counts against its own budget and its
			// namespace's ("team-a/chat" and "team-a/*").
			for _, k := range [3]budgetID{{route: o.Route}, {consumer: o.Consumer}, {consumer: NamespaceOf(o.Consumer)}} {
				if k == (budgetID{}) {
					continue
				}
				if b, ok := e.budgets[k]; ok {
					if b.spend(cost, now) {
						publish = true
						if b.exhausted() {
							e.log.Warn("budget exhausted", "route", b.route, "consumer", b.consumer, "period", b.period())
						}
					}
					e.spendDirty = true
					e.dirty = true
				}
			}
		}
	}
	if clippedOutcome+clippedReport > 0 {
		e.m.clipped.WithLabelValues("outcome").Add(float64(clippedOutcome))
		e.m.clipped.WithLabelValues("report").Add(float64(clippedReport))
		e.log.Warn("report clipped: outcome costs above the caps were not added to budgets",
			"outcomes", len(outcomes), "clipped_by_max_outcome_usd", clippedOutcome, "clipped_by_max_report_usd", clippedReport,
			"dropped_usd", float64(dropped)/1e6, "max_outcome_usd", e.cfg.Reports.MaxOutcomeUSD, "max_report_usd", e.cfg.Reports.MaxReportUSD)
	}
	if publish {
		e.publishLocked(now)
	}
	return e.version
}

// Tick runs the periodic work: canary analysis, cooldown expiry, budget
// month rollover, credential polling, publishing accumulated spend, and
// saving state. The server calls it about once a second.
func (e *Engine) Tick() {
	now := e.clock()
	e.mu.Lock()
	poll := e.lastPoll.IsZero() || now.Sub(e.lastPoll) >= time.Duration(e.cfg.Credentials.PollInterval)
	e.mu.Unlock()
	credsChanged := false
	if poll {
		credsChanged = e.pollCredentials(now)
	}
	e.shareRollouts()
	e.mu.Lock()
	e.spend.export(e.m.consumerSpent, now)
	publish := credsChanged
	stepped := false
	for route, r := range e.rollouts {
		v, changed := r.Evaluate(now)
		if changed {
			stepped = true
			e.m.verdicts.WithLabelValues(route, v.Decision.String()).Inc()
			publish = true
			e.log.Info("canary step", "route", route, "verdict", v.Decision.String(), "reason", v.Reason,
				"state", r.State().String(), "weight_bp", r.Weight())
		}
	}
	for p, h := range e.health {
		if h.expire(now) {
			publish = true
			e.log.Info("provider cooldown over", "provider", p)
		}
	}
	for _, b := range e.budgets {
		if b.roll(now) {
			publish = true
		}
	}
	if e.spendDirty && now.Sub(e.lastPublish) >= e.spendN {
		publish = true
	}
	if publish {
		e.publishLocked(now)
	}
	e.mu.Unlock()
	if stepped {
		e.shareRollouts()
	}
	e.syncSpend()
	e.mu.Lock()
	dirty := e.dirty
	e.mu.Unlock()
	if dirty {
		e.save()
	}
}

// syncSpend adds the spend recorded here since the last sync to a shared
// store (when the store is a SpendSharer) and takes over the totals that
// every replica's spend adds up to. A failure is logged; the spend stays
// pending and is added at the next sync.
func (e *Engine) syncSpend() {
	sh, ok := e.store.(SpendSharer)
	if !ok {
		return
	}
	type item struct {
		b       *budget
		month   int
		flushed int64
	}
	e.mu.Lock()
	var items []item
	var deltas []SpendDelta
	for _, b := range sortedBudgets(e.budgets) {
		items = append(items, item{b, b.month, b.pending})
		deltas = append(deltas, SpendDelta{Budget: b.id().String(), Period: b.period(), MicroUSD: b.pending})
	}
	e.mu.Unlock()
	if len(items) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	totals, err := sh.AddSpend(ctx, deltas)
	if err != nil {
		e.m.saveErrors.Inc()
		e.log.Error("sharing budget spend failed; will retry", "error", err)
		return
	}
	now := e.clock()
	e.mu.Lock()
	defer e.mu.Unlock()
	publish := false
	for i, it := range items {
		b := it.b
		if cur, ok := e.budgets[b.id()]; !ok || cur != b || b.month != it.month {
			continue // reconfigured or a new month meanwhile
		}
		before := b.exhausted()
		b.pending -= it.flushed
		if spent := totals[i] + b.pending; spent != b.spent {
			b.spent = spent
			e.spendDirty = true
			e.dirty = true
		}
		if b.exhausted() != before {
			publish = true
			if b.exhausted() {
				e.log.Warn("budget exhausted", "route", b.route, "consumer", b.consumer, "period", b.period())
			}
		}
	}
	if publish {
		e.publishLocked(now)
	}
}

// pollCredentials re-reads every credential file (outside the engine lock)
// and reports whether any value changed. Read errors keep the last value.
func (e *Engine) pollCredentials(now time.Time) bool {
	e.mu.Lock()
	e.lastPoll = now
	type job struct {
		c    *credential
		file string
	}
	var jobs []job
	for _, c := range e.creds {
		jobs = append(jobs, job{c, c.file})
	}
	e.mu.Unlock()
	type result struct {
		c   *credential
		v   Secret
		err error
	}
	results := make([]result, 0, len(jobs))
	for _, j := range jobs {
		v, err := readCredential(j.file)
		results = append(results, result{j.c, v, err})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := false
	for _, r := range results {
		if cur, ok := e.creds[r.c.provider]; !ok || cur != r.c {
			continue // the config changed meanwhile
		}
		if r.err != nil {
			e.m.credErrors.WithLabelValues(r.c.provider).Inc()
			if msg := r.err.Error(); msg != r.c.lastErr {
				r.c.lastErr = msg
				e.log.Error("credential not loaded; keeping the last value", "provider", r.c.provider, "error", msg)
			}
			continue
		}
		r.c.lastErr = ""
		if r.v != r.c.value {
			if r.c.value != "" {
				e.log.Info("credential reloaded", "provider", r.c.provider, "file", r.c.file)
			} else {
				e.log.Info("credential loaded", "provider", r.c.provider, "file", r.c.file)
			}
			r.c.value = r.v
			e.m.credReloads.WithLabelValues(r.c.provider).Inc()
			changed = true
		}
	}
	return changed
}

// publishLocked makes a new version and snapshot and wakes watchers.
func (e *Engine) publishLocked(now time.Time) {
	e.version++
	p := &policyv1.Policy{Version: e.version, GeneratedUnixMs: now.UnixMilli()}
	for _, route := range sortedKeys(e.rollouts) {
		r := e.rollouts[route]
		plan := r.Plan()
		p.Weights = append(p.Weights,
			&policyv1.RouteWeight{Route: route, Provider: plan.Baseline, WeightBp: canary.FullWeight - r.Weight()},
			&policyv1.RouteWeight{Route: route, Provider: plan.Canary, WeightBp: r.Weight()})
	}
	for _, name := range sortedKeys(e.health) {
		h := e.health[name]
		ph := &policyv1.ProviderHealth{Provider: name}
		if h.cooling(now) {
			ph.CooldownUntilUnixMs, ph.Reason = h.cooldownUntil.UnixMilli(), h.reason
		}
		p.Health = append(p.Health, ph)
	}
	for _, b := range sortedBudgets(e.budgets) {
		b.roll(now)
		p.Budgets = append(p.Budgets, &policyv1.Budget{
			Route: b.route, Consumer: b.consumer, Period: b.period(),
			SpentMicroUsd: b.spent, LimitMicroUsd: b.limit, Exhausted: b.exhausted(),
		})
	}
	for _, name := range sortedKeys(e.creds) {
		c := e.creds[name]
		if c.value == "" {
			continue
		}
		p.Credentials = append(p.Credentials, &policyv1.Credential{
			Provider: name, Header: c.header, Value: c.prefix + string(c.value),
		})
	}
	e.snapshot = p
	e.spendDirty = false
	e.lastPublish = now
	e.dirty = true
	close(e.changed)
	e.changed = make(chan struct{})
	e.m.update(e, now)
}

// save persists the state when a store is set; failures are logged and
// retried at the next Tick.
func (e *Engine) save() {
	if e.store == nil {
		return
	}
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	e.mu.Lock()
	s := e.savedLocked()
	e.dirty = false
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.store.Save(ctx, s); err != nil {
		e.m.saveErrors.Inc()
		e.log.Error("saving state failed; will retry", "error", err)
		e.mu.Lock()
		e.dirty = true
		e.mu.Unlock()
	}
}

// Flush shares pending spend and saves the state now (for shutdown).
func (e *Engine) Flush() {
	e.syncSpend()
	e.save()
}

func (e *Engine) savedLocked() Saved {
	s := Saved{
		Version:   e.version,
		Rollouts:  map[string]canary.Saved{},
		Budgets:   map[string]SavedBudget{},
		Cooldowns: map[string]SavedCooldown{},
	}
	for k, r := range e.rollouts {
		s.Rollouts[k] = r.Save()
	}
	for k, b := range e.budgets {
		s.Budgets[k.String()] = SavedBudget{Period: b.period(), SpentMicroUSD: b.spent}
	}
	for k, h := range e.health {
		if !h.cooldownUntil.IsZero() {
			s.Cooldowns[k] = SavedCooldown{UntilUnixMS: h.cooldownUntil.UnixMilli(), Reason: h.reason}
		}
	}
	return s
}

// CanaryStatus returns the status of one route's rollout, or of every
// route's when route is "".
func (e *Engine) CanaryStatus(route string) ([]*policyv1.CanaryStatus, error) {
	now := e.clock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if route != "" {
		r, ok := e.rollouts[route]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownRoute, route)
		}
		return []*policyv1.CanaryStatus{status(route, r, now)}, nil
	}
	var out []*policyv1.CanaryStatus
	for _, k := range sortedKeys(e.rollouts) {
		out = append(out, status(k, e.rollouts[k], now))
	}
	return out, nil
}

func status(route string, r *canary.Rollout, now time.Time) *policyv1.CanaryStatus {
	p := r.Plan()
	w := r.Window(now)
	return &policyv1.CanaryStatus{
		Route:             route,
		CanaryProvider:    p.Canary,
		BaselineProvider:  p.Baseline,
		State:             policyv1.RolloutState(r.State()),
		WeightBp:          r.Weight(),
		StepIndex:         uint32(r.Step()),
		StepsTotal:        uint32(len(p.Steps)),
		StepStartedUnixMs: r.StepStarted().UnixMilli(),
		LastVerdict:       r.LastVerdict(),
		Reason:            r.Reason(),
		CanaryRequests:    w.Canary.Requests,
		CanaryErrors:      w.Canary.Errors,
		CanaryP99Ms:       w.Canary.P99(),
		BaselineRequests:  w.Baseline.Requests,
		BaselineErrors:    w.Baseline.Errors,
		BaselineP99Ms:     w.Baseline.P99(),
	}
}

// command applies an operator command to a route's rollout, publishes and
// saves the result before returning, so it survives an immediate restart.
func (e *Engine) command(route, what string, f func(r *canary.Rollout, now time.Time) error) (*policyv1.CanaryStatus, error) {
	e.shareRollouts() // start from the other replicas' latest state
	now := e.clock()
	e.mu.Lock()
	r, ok := e.rollouts[route]
	if !ok {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w %q", ErrUnknownRoute, route)
	}
	if err := f(r, now); err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	e.log.Info("canary command", "route", route, "command", what, "state", r.State().String(), "weight_bp", r.Weight())
	e.publishLocked(now)
	st := status(route, r, now)
	saved, prev := r.Save(), e.synced[route]
	e.mu.Unlock()
	if e.sharer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, err := e.sharer.SwapRollout(ctx, route, prev, saved)
		cancel()
		switch {
		case err != nil:
			// Applied here; shared at a later tick once the store answers.
			e.log.Error("sharing rollout failed; will retry", "route", route, "error", err)
		case !ok:
			e.shareRollouts() // take the other replica's change
			return nil, fmt.Errorf("%w: route %q", ErrConflict, route)
		default:
			e.markSynced(route, saved.Rev)
		}
	}
	e.save()
	return st, nil
}

func (e *Engine) markSynced(route string, rev uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.rollouts[route]; ok && r.Rev() >= rev {
		e.synced[route] = rev
	}
}

// shareRollouts reconciles the local rollouts with a RolloutSharer: it
// adopts the rollouts another replica changed (dropping a local transition
// not yet shared, which the analysis will reach again if still due) and
// shares local transitions with a compare-and-swap. A replica whose plan
// differs from the stored one (during a config change) stores its own.
func (e *Engine) shareRollouts() {
	if e.sharer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shared, err := e.sharer.Rollouts(ctx)
	if err != nil {
		e.m.saveErrors.Inc()
		e.log.Error("reading shared rollouts failed", "error", err)
		return
	}
	type push struct {
		route string
		prev  uint64
		s     canary.Saved
	}
	var pushes []push
	now := e.clock()
	e.mu.Lock()
	publish := false
	for route, r := range e.rollouts {
		sh, stored := shared[route]
		synced := e.synced[route]
		switch {
		case stored && sh.Fingerprint != r.Plan().Fingerprint():
			r.Rebase(max(r.Rev(), sh.Rev) + 1)
			pushes = append(pushes, push{route, sh.Rev, r.Save()})
		case stored && sh.Rev != synced:
			if sh.Rev != r.Rev() || sh.State != r.State() || sh.WeightBP != r.Weight() {
				e.rollouts[route] = canary.Restore(r.Plan(), sh, now)
				publish = true
				e.log.Info("canary state from another replica", "route", route, "state", sh.State.String(), "weight_bp", sh.WeightBP)
			}
			e.synced[route] = sh.Rev
		case !stored:
			pushes = append(pushes, push{route, 0, r.Save()})
		case r.Rev() != synced:
			pushes = append(pushes, push{route, synced, r.Save()})
		}
	}
	if publish {
		e.publishLocked(now)
	}
	e.mu.Unlock()
	for _, p := range pushes {
		ok, err := e.sharer.SwapRollout(ctx, p.route, p.prev, p.s)
		if err != nil {
			e.m.saveErrors.Inc()
			e.log.Error("sharing rollout failed; will retry", "route", p.route, "error", err)
			continue
		}
		if ok {
			e.markSynced(p.route, p.s.Rev)
		}
	}
}

// SetCanaryWeight pins a route's canary weight in basis points (0..10000).
func (e *Engine) SetCanaryWeight(route string, bp uint32) (*policyv1.CanaryStatus, error) {
	return e.command(route, "set-weight", func(r *canary.Rollout, now time.Time) error { return r.SetWeight(bp, now) })
}

// PauseRollout holds a route's rollout at its current weight.
func (e *Engine) PauseRollout(route string) (*policyv1.CanaryStatus, error) {
	return e.command(route, "pause", func(r *canary.Rollout, now time.Time) error { return r.Pause(now) })
}

// ResumeRollout continues a paused, manual, promoted or rolled back rollout.
func (e *Engine) ResumeRollout(route string) (*policyv1.CanaryStatus, error) {
	return e.command(route, "resume", func(r *canary.Rollout, now time.Time) error { return r.Resume(now) })
}

// PromoteCanary sends all of a route's traffic to its canary.
func (e *Engine) PromoteCanary(route string) (*policyv1.CanaryStatus, error) {
	return e.command(route, "promote", func(r *canary.Rollout, now time.Time) error { r.Promote(now); return nil })
}

// RollbackCanary sends all of a route's traffic to its baseline.
func (e *Engine) RollbackCanary(route string) (*policyv1.CanaryStatus, error) {
	return e.command(route, "rollback", func(r *canary.Rollout, now time.Time) error { r.Rollback(now); return nil })
}

func sortedBudgets(m map[budgetID]*budget) []*budget {
	out := make([]*budget, 0, len(m))
	for _, b := range m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id().String() < out[j].id().String() })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// NamespaceOf is the namespace budget a consumer of the form
// "<namespace>/<name>" also spends ("team-a/*" for "team-a/chat"), "" for
// other consumers and for namespace budgets themselves.
func NamespaceOf(consumer string) string {
	i := strings.IndexByte(consumer, '/')
	if i <= 0 || i == len(consumer)-1 || consumer[i+1:] == "*" {
		return ""
	}
	return consumer[:i+1] + "*"
}
