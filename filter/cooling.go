package main

import (
	"encoding/binary"
	"strconv"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/cooldown"
	"github.com/shepherd-mesh/shepherd/filter/fallback"
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/openai"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// Provider memory, as the filter runs it (filter/cooldown holds the rules): one
// shared-data value for every VM of the Envoy. A request on a route with
// somewhere else to go (several providers, a fallback chain, a priority
// provider) reads it once, in place; an absent or empty table costs that one
// read and nothing else. A route with a single provider and no fallback reads
// it only while its VM knows of a pause, so its plain requests make no extra
// host call: its tick looks, its own writes count, and a VM that stores a
// refusal's pause tells every other VM at once through their wake-up queues
// (proxy-wasm shared queues, filter/cooldown's wake-up list). Only refusals
// with a pause, headroom near zero, probes and their answers write it.

// maxCoolWrites bounds the compare-and-swap attempts of one change.
const maxCoolWrites = 4

// probeWindow is how long a claimed probe keeps the others away when its
// answer never comes (ms).
const probeWindow = int64(10_000)

// coolTable returns the table in place: valid until the next host call that
// returns data.
func coolTable() []byte {
	v, _, err := proxywasm.PeekSharedData(cooldown.Key)
	if err != nil {
		return nil
	}
	return v
}

// coolChange applies change c to the table's entry key (a provider's name,
// or cooldown.ModelKey of one of its models) with compare-and-swap. It
// reports whether the change was stored. ClaimProbe is stored only while the
// entry is still half open.
func (pl *plugin) coolChange(key string, c cooldown.Change, st cooldown.State, nowMs int64) bool {
	for range maxCoolWrites {
		raw, cas, err := proxywasm.PeekSharedData(cooldown.Key)
		if err != nil && err != types.ErrorStatusNotFound {
			return false
		}
		if c == cooldown.ClaimProbe {
			cur, _ := cooldown.Lookup(raw, key)
			if cur.At(nowMs) != cooldown.Probe {
				return false
			}
		}
		pl.coolBuf = cooldown.Apply(pl.coolBuf[:0], raw, key, c, st, nowMs)
		switch err := proxywasm.SetSharedData(cooldown.Key, pl.coolBuf, cas); err {
		case nil:
			if c == cooldown.Cool {
				pl.coolSeen = true
				if !st.Soft {
					// Headroom only steers routes that read the memory
					// anyway; a refusal must reach every VM before
					// its next request.
					pl.notifyWake(nowMs)
				}
			}
			return true
		case types.ErrorStatusCasMismatch:
			continue
		default:
			return false
		}
	}
	return false
}

// verdict is what the table says of an attempt on p for its model named
// model ("" when not known yet) at nowMs: the worse of the provider's and the
// model's entries (Free, Cooling, or Probe when one is half open, Free for
// the request that claims the probe).
func (s *stream) verdict(raw []byte, p *config.Provider, model string, nowMs int64) cooldown.Verdict {
	v := cooldown.Free
	if st, ok := cooldown.Lookup(raw, p.Name); ok {
		v = st.At(nowMs)
	}
	if model != "" {
		if st, ok := cooldown.LookupModel(raw, p.Name, model); ok {
			v = cooldown.Worst(v, st.At(nowMs))
		}
	}
	return v
}

// noteFree remembers when a cooling candidate of this request (p, for its
// model named model) is free again, for the Retry-After of a request that
// ends without success.
func (s *stream) noteFree(raw []byte, p *config.Provider, model string, nowMs int64) {
	if st, ok := cooldown.Lookup(raw, p.Name); ok {
		s.noteState(st, nowMs)
	}
	if model != "" {
		if st, ok := cooldown.LookupModel(raw, p.Name, model); ok {
			s.noteState(st, nowMs)
		}
	}
}

func (m *providerMemory) noteState(st cooldown.State, nowMs int64) {
	if at := st.FreeAt(nowMs); at > 0 && (m.coolFree == 0 || at < m.coolFree) {
		m.coolFree = at
		if st.Status != 0 {
			m.coolStatus = st.Status
		}
	}
}

// claim takes the probe of p (for its model named model) for this request:
// the provider's entry when it is the half-open one, else the model's. The
// others keep away until its answer. Call it only when verdict said Probe;
// raw is the table it read.
func (s *stream) claim(raw []byte, p *config.Provider, model string, nowMs int64) bool {
	key := p.Name
	if st, ok := cooldown.Lookup(raw, p.Name); (!ok || st.At(nowMs) != cooldown.Probe) && model != "" {
		key = cooldown.ModelKey(p.Name, model)
	}
	if !s.plugin.coolChange(key, cooldown.ClaimProbe, cooldown.State{ProbeUntil: nowMs + probeWindow}, nowMs) {
		return false
	}
	s.probe, s.probeKey = p, key
	return true
}

// steer applies the provider memory to a routed request before its headers go
// upstream: a cooling provider is left for another backend of the route, else
// for the first fallback entry whose provider is free (routes that read the
// body; the entry's model is set there). A provider that refused with a pause
// and has no free alternative gets no request: the filter answers 429 or 503
// with Retry-After itself. Headroom near zero only steers. It reports whether
// the request was answered.
func (s *stream) steer(nowMs int64, readBody bool) (types.Action, bool) {
	r := s.decision.Route
	if len(r.Backends) == 1 && r.Fallback == nil && r.PriorityProvider == nil && !s.plugin.coolSeen && s.plugin.wake != 0 {
		// Nowhere else to go, and no pause known to this VM: the
		// request goes on without a look (a pause another VM stores
		// reaches this one through its wake-up queue first).
		return types.ActionContinue, false
	}
	raw := coolTable()
	if !cooldown.Any(raw, nowMs) {
		return types.ActionContinue, false
	}
	// Something pauses: the body, once read, looks again for its model.
	s.coolAny = true
	// The model is not known before the body: only the providers' own
	// pauses apply here (a model's, in steerModel).
	switch s.verdict(raw, s.provider, "", nowMs) {
	case cooldown.Free:
		return types.ActionContinue, false
	case cooldown.Probe:
		if s.claim(raw, s.provider, "", nowMs) {
			return types.ActionContinue, false
		}
		raw = coolTable() // the claim's calls replaced the bytes
	}
	var avoid uint64
	for i, b := range r.Backends {
		if i < 64 && (s.verdict(raw, b.Provider, "", nowMs) != cooldown.Free || !b.Provider.Serves(s.call.Op)) {
			avoid |= 1 << i
		}
	}
	if p := s.policy.overlay.ChooseAvoiding(r, s.pick, nowMs, avoid); p.Serves(s.call.Op) && s.verdict(raw, p, "", nowMs) == cooldown.Free {
		s.moveTo(p, 0)
		return types.ActionContinue, false
	}
	s.noteFree(raw, s.provider, "", nowMs)
	// Only text generation may be answered by another model (operation.go);
	// whether the body's model is listed is checked when the body is read.
	if r.Fallback != nil && readBody && s.call.Op.Generates() {
		for k, e := range s.chain {
			p := e.Provider
			if p == nil {
				p = s.chosen
			}
			model := p.ModelName(e.Model.Name)
			if p.Serves(s.call.Op) && s.verdict(raw, p, model, nowMs) == cooldown.Free {
				s.moveTo(p, k+1)
				return types.ActionContinue, false
			}
			s.noteFree(raw, p, model, nowMs)
		}
	}
	if st, _ := cooldown.Lookup(raw, s.provider.Name); st.Soft && nowMs < st.Until {
		return types.ActionContinue, false // nothing better: it has not refused yet
	}
	if f := r.Fallback; f != nil && len(f.ByModel) > 0 && readBody {
		// The model may have a chain of its own, known at the body: decide
		// there (steerModel). The headers go on; the body never does.
		return types.ActionContinue, false
	}
	return s.coolAnswer(nowMs), true
}

// steerModel applies the memory again once the body named the model (the
// headers went on before: steer saw only the providers' pauses and the
// route's chain): the model's own pause, and a provider's pause that steer
// left to the body because the model's own chain (fallback.byModel) was not
// known yet. Such a request goes to the first entry of its chain that may
// answer it and is free, as a callout, while its main request is held at the
// body and never completed (Envoy resets it when the callout's answer
// replaces the response); with no such entry shepherd answers 429 or 503
// with Retry-After itself. Headroom near zero only moves it when an entry is
// free. Only requests routed while the memory held a pause look again. It
// reports whether the request was taken over.
func (s *stream) steerModel() (types.Action, bool) {
	if !s.coolAny || s.entry != 0 {
		return types.ActionContinue, false
	}
	nowMs := nowNanos() / 1e6
	raw := coolTable()
	pv, mv := s.mainVerdicts(raw, nowMs)
	switch cooldown.Worst(pv, mv) {
	case cooldown.Free:
		return types.ActionContinue, false
	case cooldown.Probe:
		if s.claim(raw, s.provider, s.modelName, nowMs) {
			return types.ActionContinue, false
		}
		raw = coolTable()
		pv, mv = s.mainVerdicts(raw, nowMs)
	}
	st, _ := cooldown.Lookup(raw, s.provider.Name)
	soft := mv == cooldown.Free && pv == cooldown.Cooling && st.Soft && nowMs < st.Until
	s.noteFree(raw, s.provider, s.modelName, nowMs)
	if s.plan != nil && s.body != nil {
		for k, e := range s.chain {
			if !s.entryAllowed(e) {
				continue
			}
			p := e.Provider
			if p == nil {
				p = s.chosen
			}
			name := p.ModelName(e.Model.Name)
			switch s.verdict(raw, p, name, nowMs) {
			case cooldown.Free:
			case cooldown.Probe:
				if !s.claim(raw, p, name, nowMs) {
					raw = coolTable()
					s.noteFree(raw, p, name, nowMs)
					continue
				}
			default:
				s.noteFree(raw, p, name, nowMs)
				continue
			}
			// Entry k+1 is this request's first attempt; the chain goes
			// on from it (fallback.Planner.NextSkipping).
			s.attempts, s.skipped, s.retryTo, s.diverted = 0, k+1, k+1, true
			s.ntried = 0
			s.startAttempt()
			return types.ActionPause, true
		}
	}
	if soft {
		return types.ActionContinue, false // nothing better: it has not refused yet
	}
	return s.coolAnswer(nowMs), true
}

// mainVerdicts are the verdicts of the main request's provider and of its
// model on it, leaving out the provider's probe when this request holds it.
func (s *stream) mainVerdicts(raw []byte, nowMs int64) (provider, model cooldown.Verdict) {
	provider, model = cooldown.Free, cooldown.Free
	if st, ok := cooldown.Lookup(raw, s.provider.Name); ok && !(s.probe == s.provider && s.probeKey == s.provider.Name) {
		provider = st.At(nowMs)
	}
	if s.modelName != "" {
		if st, ok := cooldown.LookupModel(raw, s.provider.Name, s.modelName); ok && !(s.probe == s.provider && s.probeKey != s.provider.Name) {
			model = st.At(nowMs)
		}
	}
	return provider, model
}

// moveTo sends the main request to provider p as chain entry e instead of
// the chosen one: another backend of the route (e = 0, which becomes the
// chosen provider), or a fallback entry.
func (s *stream) moveTo(p *config.Provider, e int) {
	s.decision.Provider, s.provider = p, p
	if e == 0 {
		s.chosen = p
	}
	s.entry, s.skipped, s.skippedAtStart = e, e, e
	s.ntried = 0
	s.markTried(p)
}

// coolAnswer answers a request none of whose candidates may be asked now:
// 429 (or 503 when the refusal was one) with Retry-After saying when the
// earliest is free.
func (s *stream) coolAnswer(nowMs int64) types.Action {
	s.localReason = localCooling
	s.policy.metrics.count(metricKey{kind: mFallbacksDenied, route: int16(s.decision.Route.Index), extra: denyCooling}, 1)
	// Waiting helps: the SDKs may retry once the pause is over.
	wait := max(s.coolFree-nowMs, 1)
	hdrs := [][2]string{{"retry-after", strconv.FormatInt(s.retryAfterSeconds(nowMs), 10)},
		{limits.RetryAfterMsHeader, strconv.FormatInt(wait, 10)}, openai.NoRetry}
	if wait*1e6 <= openai.MaxRetryWaitNs {
		hdrs[2] = openai.Retry
	}
	if s.coolStatus == 503 {
		return s.reply(503, hdrs, "provider "+s.chosen.Name+" of route "+s.decision.Route.Name+" asked for a pause and no other provider is free",
			openai.TypeServer, "provider_cooling_down")
	}
	return s.reply(429, hdrs, "provider "+s.chosen.Name+" of route "+s.decision.Route.Name+" asked for a pause and no other provider is free",
		openai.TypeRateLimit, "provider_cooling_down")
}

// retryAfterSeconds is the Retry-After (whole seconds, at least 1) until the
// earliest cooling candidate is free.
func (m *providerMemory) retryAfterSeconds(nowMs int64) int64 {
	return max((m.coolFree-nowMs+999)/1000, 1)
}

// learn keeps what an answer of provider p for its model named model ("" when
// not known) says about its limits: a 429 or 503 with Retry-After (or, on a
// 429, the reset of the exhausted limit) cools it until then; a success with
// x-ratelimit-remaining-* near zero cools it softly until the reset; the
// success of its probe forgets it. What cools is the model when the answer
// is a 429 naming an exhausted limit of the model (cooldown.ScopeOf) and the
// provider does not say "pauses": "provider", else the provider. hdrs are the
// answer's headers.
func (s *stream) learn(p *config.Provider, model string, status int, hdrs [][2]string, now int64) {
	nowMs := now / 1e6
	var d int64
	ok := false
	// Read hdrs before any write: they may be the host's bytes in place.
	scope := cooldown.ScopeOf(status, resetHint(hdrs) != "" && !p.PausesWhole, model)
	if status == 429 || status == 503 {
		d, ok = fallback.ParseRetryAfter(headerValue(hdrs, "retry-after"), now)
		if !ok && status == 429 {
			d, ok = fallback.ParseResetHint(resetHint(hdrs))
		}
		ok = ok && d > 0
	}
	var soft int64
	var low bool
	if status >= 200 && status < 300 {
		soft, low = fallback.ParseResetHint(lowHeadroom(hdrs))
	}
	if s.probe == p && !ok && (status < 200 || status >= 300) {
		// The probe was answered without a new pause: the pause is over;
		// what the answer means for this request is the chain's business.
		s.probe = nil
		s.plugin.coolChange(s.probeKey, cooldown.Clear, cooldown.State{}, nowMs)
	}
	switch {
	case status == 429 || status == 503:
		if ok {
			// The route's retryAfterCapMs bounds what a provider's word is
			// worth, for the memory as for a retry's wait.
			d = min(d, s.retryAfterCap())
			until := nowMs + (d+999_999)/1e6
			s.plugin.coolChange(coolKey(p, model, scope), cooldown.Cool, cooldown.State{Until: until, Status: uint16(status)}, nowMs)
			if s.coolFree == 0 || until < s.coolFree {
				s.coolFree, s.coolStatus = until, uint16(status)
			}
		}
	case status >= 200 && status < 300:
		if s.probe == p {
			s.probe = nil
			s.plugin.coolChange(s.probeKey, cooldown.Clear, cooldown.State{}, nowMs)
		}
		if low && soft > 0 {
			soft = min(soft, s.retryAfterCap())
			s.plugin.coolChange(coolKey(p, model, scope), cooldown.Cool, cooldown.State{Until: nowMs + (soft+999_999)/1e6, Soft: true}, nowMs)
		}
	}
}

// coolKey is the table entry a pause of scope for p's model named model goes
// to.
func coolKey(p *config.Provider, model string, scope cooldown.Scope) string {
	if scope == cooldown.ScopeModel {
		return cooldown.ModelKey(p.Name, model)
	}
	return p.Name
}

// retryAfterCap is the longest pause (ns) a provider's answer on this route
// is honoured for: the route's fallback.retryAfterCapMs, else the default.
func (s *stream) retryAfterCap() int64 {
	if s.plan != nil {
		return s.plan.Policy().RetryAfterCap
	}
	return fallback.DefaultRetryAfterCap
}

// lowHeadroom returns the reset hint of a limit whose
// x-ratelimit-remaining-* is near zero (at most 1, or 1% of its
// x-ratelimit-limit-*), "" when neither is.
func lowHeadroom(hdrs [][2]string) string {
	for _, kind := range [...]struct{ remaining, limit, reset string }{
		{"x-ratelimit-remaining-requests", "x-ratelimit-limit-requests", "x-ratelimit-reset-requests"},
		{"x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens", "x-ratelimit-reset-tokens"},
	} {
		rem, err := strconv.ParseInt(headerValue(hdrs, kind.remaining), 10, 64)
		if err != nil || rem < 0 {
			continue
		}
		limit, err := strconv.ParseInt(headerValue(hdrs, kind.limit), 10, 64)
		if rem <= 1 || (err == nil && limit > 0 && rem <= limit/100) {
			return headerValue(hdrs, kind.reset)
		}
	}
	return ""
}

// coolPending reports whether a failed answer with status is to say when the
// earliest cooling candidate of this request is free: it failed as a
// provider fails (429, 5xx) while a candidate was cooling at nowMs.
func (s *stream) coolPending(status int, nowMs int64) bool {
	return (status == 429 || status >= 500) && s.coolFree > nowMs
}

// coolStatusFor is the status of a failed answer that says when a cooling
// candidate is free: its own when 429 or 503, else that of the pause.
func (s *stream) coolStatusFor(status int) int {
	switch {
	case status == 429 || status == 503:
		return status
	case s.coolStatus == 429:
		return 429
	}
	return 503
}

// coolHeaders makes the response in the stream's headers say when the
// earliest cooling candidate is free (Retry-After), as a 429 or 503. Envoy
// lets a filter change the response headers while it holds them.
func (s *stream) coolHeaders(nowMs int64) {
	_ = proxywasm.ReplaceHttpResponseHeader("retry-after", strconv.FormatInt(s.retryAfterSeconds(nowMs), 10))
	if st := s.coolStatusFor(s.status); st != s.status {
		_ = proxywasm.ReplaceHttpResponseHeader(":status", strconv.Itoa(st))
		s.status = st
	}
}

// wakeSeqKey is the shared-data key of the counter that names each VM's
// wake-up queue.
const wakeSeqKey = "shepherd.cooldowns.wakeseq"

// maxWakeNotices bounds the notices one VM drains from its queue at a time.
const maxWakeNotices = 64

// wakeNotice is what a notice carries: nothing but its arrival matters.
var wakeNotice = []byte{1}

// openWake registers this VM's wake-up queue and lists it. Queue names must
// differ between VMs: the last VM to register a name is the one notified
// (proxy-wasm-cpp-host src/shared_queue.cc, SharedQueue::registerQueue), so
// each takes the next number of a shared counter. Without a queue the VM
// reads the memory on every routed request instead.
func (p *plugin) openWake(nowMs int64) {
	var seq uint64
	for range maxCoolWrites {
		raw, cas, err := proxywasm.PeekSharedData(wakeSeqKey)
		if err != nil && err != types.ErrorStatusNotFound {
			break
		}
		var next uint64
		if len(raw) == 8 {
			next = binary.LittleEndian.Uint64(raw)
		}
		next++
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], next)
		if err := proxywasm.SetSharedData(wakeSeqKey, b[:], cas); err == nil {
			seq = next
			break
		}
	}
	if seq == 0 {
		seq = p.random() // no counter: a random name is unique enough
	}
	q, err := proxywasm.RegisterSharedQueue("shepherd.cooldowns.wake." + strconv.FormatUint(seq, 10))
	if err != nil {
		proxywasm.LogWarn("shepherd: no wake-up queue for the provider memory (every request reads it): " + err.Error())
		return
	}
	p.wake = q
	p.enlistWake(nowMs)
	// A pause stored before the queue was listed sent this VM no notice.
	p.coolSeen = cooldown.Any(coolTable(), nowMs)
}

// enlistWake lists this VM's queue in the wake-up list at nowMs.
func (p *plugin) enlistWake(nowMs int64) {
	for range maxCoolWrites {
		raw, cas, err := proxywasm.PeekSharedData(cooldown.WakeKey)
		if err != nil && err != types.ErrorStatusNotFound {
			return
		}
		p.wakeBuf = cooldown.Enlist(p.wakeBuf[:0], raw, p.wake, nowMs)
		if err := proxywasm.SetSharedData(cooldown.WakeKey, p.wakeBuf, cas); err != types.ErrorStatusCasMismatch {
			p.wakeAt = nowMs
			return
		}
	}
}

// notifyWake tells every listed VM but this one that a pause was stored.
// Envoy runs each VM's on_queue_ready on its own worker before that worker
// reads anything arriving after the notice (shared.go of e2e/envoy cites
// where), so no request that comes after the refusal misses the pause.
func (p *plugin) notifyWake(nowMs int64) {
	// Read in place: enqueueing returns no data, so the bytes stay valid.
	raw, _, err := proxywasm.PeekSharedData(cooldown.WakeKey)
	if err != nil {
		return
	}
	cooldown.Wakers(raw, nowMs, func(token uint32) {
		if token != p.wake {
			// A queue gone with its vm_id answers NotFound: nothing to do.
			_ = proxywasm.EnqueueSharedQueue(token, wakeNotice)
		}
	})
}

// OnQueueReady takes another VM's notice of a stored pause: this VM reads the
// memory from its next request on. Any queue it is called for is drained, so
// a queue left by an earlier plugin context of this VM does not grow.
func (p *plugin) OnQueueReady(queueID uint32) {
	for range maxWakeNotices {
		if _, err := proxywasm.DequeueSharedQueue(queueID); err != nil {
			break
		}
	}
	p.coolSeen = true
}
