package main

import (
	"strconv"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/mesh"
	"github.com/shepherd-mesh/shepherd/filter/model"
	"github.com/shepherd-mesh/shepherd/filter/openai"
	"github.com/shepherd-mesh/shepherd/filter/policywire"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/rls"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// The filter and shepherd-sidecar. A route with global limits asks the
// sidecar's rate limit service from the request-headers phase: the stream
// pauses, one ShouldRateLimit goes out as a gRPC callout, and its answer (on
// the plugin context; the binding switches to the stream) resumes the request,
// refuses it with 429, or, when no usable answer came, applies the route's
// failure mode. Everything else runs from the plugin's tick: one VM per Envoy,
// holding a lease in shared data, polls GetPolicy and stores the policy in
// shared data; every VM applies a new version when it sees one; token usage
// and outcomes are batched per VM and sent on the tick. mesh holds the
// decisions; this file carries them out.

// Sidecar call kinds, as the kind label of the sidecar error counter.
const (
	callCheck uint8 = iota
	callPolicy
	callReport
	callSettle
	callQuota
)

var sidecarCalls = []string{"check", "policy", "report", "settle", "quota"}

// What a full queue dropped, as the kind label of the drop counter.
const (
	dropOutcomes uint8 = iota
	dropTokens
)

var dropKinds = []string{"outcomes", "tokens"}

// sidecarState is a plugin's side of the sidecar conversation: its lease,
// the policy version it applied, and the batches waiting for the tick.
type sidecarState struct {
	owner    uint64 // lease owner id of this VM
	polling  bool   // a GetPolicy call is in flight
	denied   bool   // the last poll was refused with PERMISSION_DENIED (logged once)
	lastPoll int64
	lastSent int64
	tokens   mesh.TokenBatch
	outcomes *mesh.Outcomes
	buf      []byte
	scratch  []rls.Descriptor
	resp     rls.Response
	policy   policywire.PolicyResponse
}

// baseTick is the plugin's tick when no retry waits: the policy poll period
// when the config has a sidecar, capped at the idle tick.
func (p *plugin) baseTick() uint32 {
	t := uint32(idleTickMillis)
	if sc := p.policy.cfg.Sidecar; sc != nil {
		if sc.PolicyPollMs > 0 && sc.PolicyPollMs < t {
			t = sc.PolicyPollMs
		}
		if sc.ReportIntervalMs > 0 && sc.ReportIntervalMs < t {
			t = sc.ReportIntervalMs
		}
		if len(p.policy.quotaDomains) > 0 && sc.QuotaReportMs < t {
			t = sc.QuotaReportMs
		}
	}
	return t
}

// sidecarTick runs the plugin's periodic sidecar work.
func (p *plugin) sidecarTick(now int64) {
	p.quotaTick(now)
	sc := p.policy.cfg.Sidecar
	if sc == nil {
		return
	}
	const slack = 5_000_000 // ticks may come a little early
	if sc.PolicyPollMs > 0 && now-p.sc.lastPoll >= int64(sc.PolicyPollMs)*1e6-slack {
		p.sc.lastPoll = now
		p.applySharedPolicy()
		p.pollPolicy(sc, now)
	}
	if sc.ReportIntervalMs > 0 && (now-p.sc.lastSent >= int64(sc.ReportIntervalMs)*1e6-slack ||
		p.sc.outcomes.Full(sc.ReportBatch)) {
		p.sc.lastSent = now
		p.sendReports(sc)
	}
	p.settleTokens(sc)
}

// applySharedPolicy decodes the policy in shared data when its version is newer
// than the one this VM applied. Sidecar versions only grow (they start from the
// sidecar's clock), so an older policy stored late can never replace a newer one.
func (p *plugin) applySharedPolicy() {
	v, _, err := proxywasm.GetSharedData(mesh.VersionKey)
	if err != nil {
		return
	}
	version, ok := mesh.Uint64(v)
	if !ok || (p.policy.overlay != nil && version <= p.policy.overlay.Version) {
		return
	}
	raw, _, err := proxywasm.GetSharedData(mesh.PolicyKey)
	if err != nil {
		return
	}
	p.applyPolicy(raw)
}

// applyPolicy decodes an encoded Policy and makes it this VM's overlay.
func (p *plugin) applyPolicy(raw []byte) {
	pol, err := policywire.ParsePolicy(raw)
	if err != nil {
		proxywasm.LogWarn("shepherd: sidecar policy: " + err.Error())
		return
	}
	if p.policy.overlay != nil && pol.Version <= p.policy.overlay.Version {
		return
	}
	p.policy.overlay = mesh.NewOverlay(p.policy.cfg, &pol)
	proxywasm.LogDebug("shepherd: sidecar policy version " + strconv.FormatUint(pol.Version, 10) + " applied")
}

// pollPolicy takes or keeps the poller's lease and, holding it, asks the
// sidecar for the policy unless a poll is in flight.
func (p *plugin) pollPolicy(sc *config.Sidecar, now int64) {
	lease, cas, err := proxywasm.GetSharedData(mesh.LeaseKey)
	if err != nil && err != types.ErrorStatusNotFound {
		return
	}
	if !mesh.Claim(lease, p.sc.owner, now) {
		return
	}
	until := now + mesh.LeaseTicks*int64(sc.PolicyPollMs)*1e6
	if err := proxywasm.SetSharedData(mesh.LeaseKey, mesh.AppendLease(nil, p.sc.owner, until), cas); err != nil {
		return // another VM took it first
	}
	if p.sc.polling {
		return
	}
	known := uint64(0)
	if p.policy.overlay != nil {
		known = p.policy.overlay.Version
	}
	p.sc.buf = policywire.AppendGetPolicyRequest(p.sc.buf[:0], known)
	_, err = proxywasm.DispatchGrpcCall(sc.Cluster, policywire.Service, policywire.MethodGetPolicy, sc.Metadata, p.sc.buf,
		sc.TimeoutMs, proxywasm.GrpcCallbacks{OnMessage: p.onPolicy, OnClose: p.onPolicyClose})
	if err != nil {
		p.sidecarError(callPolicy)
		return
	}
	p.sc.polling = true
}

func (p *plugin) onPolicy(size int) {
	p.sc.polling = false
	p.sc.denied = false
	msg, err := proxywasm.GetGrpcCallResponseMessage(0, size)
	if err == nil {
		err = policywire.ParseGetPolicyResponse(msg, &p.sc.policy)
	}
	if err != nil {
		p.sidecarError(callPolicy)
		return
	}
	r := &p.sc.policy
	if r.NotModified || r.RawPolicy == nil {
		return
	}
	// The raw policy first, then its version: a VM that sees the new version
	// finds the policy that goes with it. The stored policy is replaced only by a
	// newer one, with compare-and-swap: a poll that was in flight when the lease
	// moved must not put an older policy back.
	cur, cas, err := proxywasm.GetSharedData(mesh.PolicyKey)
	if err == nil {
		if stored, perr := policywire.ParsePolicy(cur); perr == nil && stored.Version >= r.Policy.Version {
			p.applyPolicy(cur)
			return
		}
	} else {
		cas = 0 // absent: the first write is unconditional in Envoy
	}
	if err := proxywasm.SetSharedData(mesh.PolicyKey, r.RawPolicy, cas); err != nil {
		if err != types.ErrorStatusCasMismatch {
			proxywasm.LogWarn("shepherd: storing the sidecar policy: " + err.Error())
		}
		return // another VM stored one meanwhile; the tick applies whichever is newest
	}
	_ = proxywasm.SetSharedData(mesh.VersionKey, mesh.AppendUint64(nil, r.Policy.Version), 0)
	p.applyPolicy(r.RawPolicy)
}

// grpcPermissionDenied is gRPC's PERMISSION_DENIED status code.
const grpcPermissionDenied = 7

func (p *plugin) onPolicyClose(code uint32) {
	p.sc.polling = false
	p.sidecarError(callPolicy)
	if code == grpcPermissionDenied && !p.sc.denied {
		// Once per refusal spell: the poll repeats every policyPollMs.
		p.sc.denied = true
		proxywasm.LogWarn("shepherd: the sidecar refused the policy poll (PERMISSION_DENIED): sidecar.token is missing or not one the sidecar accepts (token source: " +
			p.policy.cfg.Sidecar.TokenSource + ")")
	}
}

// sendReports sends up to a batch of queued outcomes.
func (p *plugin) sendReports(sc *config.Sidecar) {
	if p.sc.outcomes.Len() == 0 {
		return
	}
	p.sc.buf = p.sc.outcomes.Take(p.sc.buf[:0], sc.ReportBatch)
	if _, err := proxywasm.DispatchGrpcCall(sc.Cluster, policywire.Service, policywire.MethodReportOutcomes, sc.Metadata, p.sc.buf,
		sc.TimeoutMs, proxywasm.GrpcCallbacks{OnClose: p.onReportClose}); err != nil {
		p.sidecarError(callReport)
	}
}

func (p *plugin) onReportClose(uint32) { p.sidecarError(callReport) }

// settleTokens sends the summed token usage, one ShouldRateLimit per domain.
func (p *plugin) settleTokens(sc *config.Sidecar) {
	for {
		var ok bool
		p.sc.buf, ok = p.sc.tokens.Next(p.sc.buf[:0], p.sc.scratch)
		if !ok {
			return
		}
		if _, err := proxywasm.DispatchGrpcCall(sc.Cluster, rls.Service, rls.Method, sc.Metadata, p.sc.buf,
			sc.TimeoutMs, proxywasm.GrpcCallbacks{OnClose: p.onSettleClose}); err != nil {
			p.sidecarError(callSettle)
		}
	}
}

func (p *plugin) onSettleClose(uint32) { p.sidecarError(callSettle) }

func (p *plugin) sidecarError(kind uint8) {
	p.policy.metrics.count(metricKey{kind: mSidecarErrors, extra: kind}, 1)
}

// checkGlobal sends the global limit check of a routed request and pauses it
// until the answer; without global limits the request goes on.
func (s *stream) checkGlobal() types.Action {
	g := s.decision.Route.GlobalLimits
	if g == nil || s.replied {
		return types.ActionContinue
	}
	name := ""
	if m := model.Priority(s.decision.Route, s.priority); m != nil {
		name = m.Name
	}
	s.desc = mesh.NewDescriptor(g, mesh.Values{Route: s.decision.Route.Name, Provider: s.provider.Name,
		Model: name, Consumer: s.descriptorConsumer()})
	if s.desc.Empty() {
		return types.ActionContinue
	}
	if g.Quota {
		return s.admitQuota(g)
	}
	sc := &s.plugin.sc
	sc.buf = mesh.AppendCheck(sc.buf[:0], g, &s.desc, sc.scratch)
	_, err := proxywasm.DispatchGrpcCall(s.policy.cfg.Sidecar.Cluster, rls.Service, rls.Method, s.policy.cfg.Sidecar.Metadata, sc.buf,
		g.TimeoutMs, proxywasm.GrpcCallbacks{OnMessage: s.onCheck, OnClose: s.onCheckClose})
	if err != nil {
		return s.globalFailed(false)
	}
	s.checked, s.checkPending = true, true
	return types.ActionPause
}

// descriptorConsumer is the consumer value the sidecar sees: the client's
// own while the route's bounded consumer set tracks it (the same set, and the
// same cap, as the local limits), mesh.OverflowConsumer beyond it, so client
// input cannot grow the sidecar's counters. Consumer budgets and outcome
// reports keep the raw value: the sidecar keeps state only for the consumers
// its config names.
func (s *stream) descriptorConsumer() string {
	c, set := s.meshConsumer, s.state.meshConsumers
	if c == "" || set == nil {
		return c
	}
	if c == mesh.OverflowConsumer {
		return c
	}
	if tracked, _ := set.Resolve(c); tracked {
		return c
	}
	return mesh.OverflowConsumer
}

// onCheck handles the rate limit service's answer.
func (s *stream) onCheck(size int) {
	if s.done {
		return
	}
	s.checkPending = false
	resp := &s.plugin.sc.resp
	msg, err := proxywasm.GetGrpcCallResponseMessage(0, size)
	if err == nil {
		err = rls.ParseResponse(msg, resp)
	}
	if err != nil {
		s.globalFailed(true)
		return
	}
	switch v, kind, d := mesh.Judge(resp); v {
	case mesh.Allow:
		_ = proxywasm.ResumeHttpRequest()
	case mesh.Deny:
		s.checked = false // nothing to settle
		s.rateLimitedAs(kind, d, limitLabel(kind, true), "global ")
	default:
		s.globalFailed(true)
	}
}

// onCheckClose handles a check that got no answer: an error status, the
// deadline, or the sidecar unreachable.
func (s *stream) onCheckClose(uint32) {
	s.checkPending = false
	if !s.done {
		s.globalFailed(true)
	}
}

// globalFailed applies the route's failure mode: closed answers 503 in
// OpenAI's shape, open lets the request go on under its local limits. Both
// are counted. async is true in a callout callback, where going on means
// resuming the paused request.
func (s *stream) globalFailed(async bool) types.Action {
	r := s.decision.Route
	p := s.plugin
	p.sidecarError(callCheck)
	s.checked = false // the sidecar did not count it: nothing to settle
	if r.GlobalLimits.FailClosed {
		s.policy.metrics.count(metricKey{kind: mGlobalFailures, route: int16(r.Index), extra: failClosed}, 1)
		s.localReason = localUnavailable
		return s.reply(503, nil, "the global rate limit service is unavailable for route "+r.Name, openai.TypeServer, "ratelimit_unavailable")
	}
	s.policy.metrics.count(metricKey{kind: mGlobalFailures, route: int16(r.Index), extra: failOpen}, 1)
	if async {
		_ = proxywasm.ResumeHttpRequest()
	}
	return types.ActionContinue
}

// budgetExhausted refuses a request whose route or consumer budget is spent,
// like OpenAI refuses an account over its quota: 429 insufficient_quota,
// without Retry-After, since waiting does not help before the budget resets.
func (s *stream) budgetExhausted(scope string) types.Action {
	r := s.decision.Route
	s.policy.metrics.count(metricKey{kind: mRateLimited, route: int16(r.Index), extra: limitBudget}, 1)
	s.localReason = localBudget
	return s.reply(429, nil, "the monthly budget of "+scope+" is spent", "insufficient_quota", "insufficient_quota")
}

// report queues the finished request's outcome and token usage for the
// sidecar.
func (s *stream) report(u int64, real bool, input, output uint64, cost int64, now int64) {
	sc := s.policy.cfg.Sidecar
	if sc == nil {
		return
	}
	p := s.plugin
	r := s.decision.Route
	if g := r.GlobalLimits; g != nil && g.Tokens && s.checked && u > 0 {
		if g.Quota {
			s.chargeQuotaTokens(g, uint64(u), now)
		} else if !p.sc.tokens.Add(g.Domain, &s.desc, uint64(u)) {
			s.policy.metrics.count(metricKey{kind: mDropped, extra: dropTokens}, 1)
		}
	}
	if sc.ReportIntervalMs == 0 || (s.replied && s.status == 0) {
		return // the filter answered itself: no provider outcome
	}
	o := policywire.Outcome{
		Route: r.Name, Provider: s.provider.Name, Model: s.policy.metrics.modelName(s.policy.metrics.modelIndex(s.model)),
		Consumer: s.meshConsumer, StatusCode: uint32(max(s.status, 0)),
		HasRatelimitRemaining: s.hasRemaining, RatelimitRemaining: s.remaining, RetryAfterMs: s.retryAfterMs,
	}
	if now > s.start {
		o.LatencyMs = uint32(min((now-s.start)/1e6, 1<<31))
	}
	if real {
		o.InputTokens, o.OutputTokens, o.CostMicroUSD = input, output, cost
	}
	if !p.sc.outcomes.Add(o) {
		s.policy.metrics.count(metricKey{kind: mDropped, extra: dropOutcomes}, 1)
	}
}

// reportsOutcomes reports whether the stream's outcome goes to the sidecar.
func (s *stream) reportsOutcomes() bool {
	sc := s.policy.cfg.Sidecar
	return sc != nil && sc.ReportIntervalMs != 0
}

// readProviderHints keeps the provider's x-ratelimit-remaining-requests and
// Retry-After for the outcome report.
func (s *stream) readProviderHints(hdrs [][2]string) {
	if !s.reportsOutcomes() {
		return
	}
	for _, kv := range hdrs {
		switch kv[0] {
		case "x-ratelimit-remaining-requests":
			if n, err := strconv.ParseInt(kv[1], 10, 64); err == nil {
				s.hasRemaining, s.remaining = true, n
			}
		case "retry-after":
			if n, err := strconv.Atoi(kv[1]); err == nil && n > 0 && n < 86400 {
				s.retryAfterMs = uint32(n) * 1000
			}
		}
	}
}
