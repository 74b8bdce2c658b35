package main

import (
	"strconv"
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/body"
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/cooldown"
	"github.com/shepherd-mesh/shepherd/filter/fallback"
	"github.com/shepherd-mesh/shepherd/filter/openai"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
)

// Fallback, as the filter runs it: when the upstream answers a retryable status,
// the response headers are held (Envoy stops the response there), the planner
// chooses the next chain entry and a backoff, and the attempt goes out as an http
// callout with the kept request body carrying the entry's model. A delay runs
// through the plugin's tick, never a sleep. The first success is sent to the
// client as a local reply, which in the response phase replaces the upstream
// response. When the attempts or budgets run out, the client gets the last real
// upstream error: the last callout's response, or the held original when no
// callout produced one.

// shouldRetry reports whether a failure of the current attempt may be retried at
// all on this route.
func (s *stream) shouldRetry(status int, calloutFailed bool) bool {
	return s.plan != nil && s.body != nil && !s.done &&
		(calloutFailed || s.plan.Retryable(status))
}

// planRetry asks the planner and the retry budget what follows the failure of the
// current attempt, and starts or schedules the next one. It reports whether an
// attempt was planned. code is the failed attempt's code label (its status
// class, or codeReset or codeTimeout for a callout without a real answer).
//
// The retry budget guards the provider a retry goes to, not the route: a
// fallback to a provider this request has not tried yet is a first visit that
// adds nothing to the load of the one that failed, so it needs no budget; an
// attempt on a provider the request already tried is a retry of that
// provider, and spends the route's budget (docs/CONFIG.md, retryBudgetPercent).
func (s *stream) planRetry(status int, code uint8, retryAfter, reset string) bool {
	now := nowNanos()
	calloutFailed := code == codeReset || code == codeTimeout
	f := fallback.Failure{Entry: s.entry, Status: status, CalloutFailed: calloutFailed, RetryAfter: retryAfter, ResetHint: reset}
	r := s.decision.Route
	m := s.policy.metrics
	// The provider memory: an entry whose provider cools down when the
	// attempt would start is passed over (it costs no attempt), and when it
	// is half open this request may take its probe.
	raw := coolTable()
	cooling := cooldown.Any(raw, now/1e6)
	for range len(s.chain) + 1 {
		step := s.plan.NextSkipping(s.attempts, s.skipped, f, now-s.start, now, s.plugin.random)
		if !step.Retry {
			switch step.Reason {
			case fallback.AttemptsExhausted:
				m.count(metricKey{kind: mFallbacksDenied, route: int16(r.Index), extra: denyAttempts}, 1)
			case fallback.OutOfTime:
				m.count(metricKey{kind: mFallbacksDenied, route: int16(r.Index), extra: denyOutOfTime}, 1)
			}
			return false
		}
		step.Entry = s.allowedEntry(step.Entry)
		to, toName, toModel := s.target(step.Entry)
		if cooling {
			startMs := (now + step.Delay) / 1e6
			v := s.verdict(raw, to, toName, startMs)
			switch {
			case v != cooldown.Probe:
			case step.Delay > 0:
				s.probeLater, v = true, cooldown.Free // claimed when it starts
			case !s.claim(raw, to, toName, now/1e6):
				v = cooldown.Cooling
				raw = coolTable()
			}
			if v == cooldown.Cooling {
				s.noteFree(raw, to, toName, startMs)
				s.skipped++
				continue
			}
		}
		if s.triedProvider(to) && !s.state.budget.Allow(now) {
			m.count(metricKey{kind: mFallbacksDenied, route: int16(r.Index), extra: denyRetryBudget}, 1)
			proxywasm.LogDebug("shepherd: route " + r.Name + ": retry budget spent, no retry to provider " + to.Name)
			return false
		}
		reason := uint8(0)
		switch code {
		case codeReset:
			reason = 1
		case codeTimeout:
			reason = 2
		}
		from, _, fromModel := s.target(s.entry)
		m.countFallback(fallbackKey{route: int16(r.Index), fromProvider: int16(from.Index), toProvider: int16(to.Index),
			fromModel: m.modelIndex(fromModel), toModel: m.modelIndex(toModel), reason: reason})
		s.retryTo = step.Entry
		if step.Delay <= 0 {
			return s.startAttempt()
		}
		s.retryAt = now + step.Delay
		s.escaped = true
		s.plugin.wait(s)
		return true
	}
	// Every entry's provider cools down.
	m.count(metricKey{kind: mFallbacksDenied, route: int16(r.Index), extra: denyCooling}, 1)
	return false
}

// mainEntry is the chain entry the main request went to: 0, or the
// fallback entry the provider memory sent it to.
func (s *stream) mainEntry() int { return s.skippedAtStart }

// entryModel is the listed model of chain entry e.
func (s *stream) entryModel(e int) *config.Model {
	if e == 0 {
		return s.model
	}
	return s.chain[e-1].Model
}

// target is the provider and upstream model name of chain entry e.
func (s *stream) target(e int) (*config.Provider, string, *config.Model) {
	if e == 0 {
		return s.chosen, s.chosen.ModelName(s.publicModel()), s.model
	}
	ce := s.chain[e-1]
	p := ce.Provider
	if p == nil {
		p = s.chosen
	}
	return p, p.ModelName(ce.Model.Name), ce.Model
}

func (s *stream) publicModel() string {
	if s.model != nil {
		return s.model.Name
	}
	return s.requested
}

// startAttempt sends the attempt to s.retryTo as a callout. It reports whether
// the callout went out; when it could not, the next entry is planned as for a
// failed callout, and when nothing is left the held response is released.
func (s *stream) startAttempt() bool {
	if s.done {
		return false
	}
	// From the tick this runs on the plugin context; the callout and its answer
	// belong to the stream.
	_ = proxywasm.SetEffectiveContext(s.id)
	provider, modelName, _ := s.target(s.retryTo)
	if s.probeLater {
		// The attempt waited for its provider's pause to end: it goes only
		// as the provider's probe, and no other request may have that.
		s.probeLater = false
		if nowMs := nowNanos() / 1e6; !s.claim(coolTable(), provider, modelName, nowMs) {
			s.noteFree(coolTable(), provider, modelName, nowMs)
			s.release()
			return false
		}
	}
	if s.reqStale {
		if inspected, err := body.InspectRequest(s.body); err == nil {
			s.req = inspected
		}
		s.reqStale = false
	}
	reqBody := body.SetModel(s.body, s.req, modelName)
	hdrs := make([][2]string, 0, len(s.clientHeaders)+8)
	hdrs = append(hdrs,
		[2]string{":method", "POST"},
		[2]string{":path", s.decision.PathVia(provider)},
		[2]string{":authority", provider.Host},
	)
	hdrs = append(hdrs, s.clientHeaders...)
	hdrs = setHeader(hdrs, "content-type", "application/json")
	if provider.Authorization != "" {
		hdrs = append(hdrs, [2]string{"authorization", provider.Authorization})
	}
	if provider.Organization != "" {
		hdrs = append(hdrs, [2]string{"openai-organization", provider.Organization})
	}
	if provider.Project != "" {
		hdrs = append(hdrs, [2]string{"openai-project", provider.Project})
	}
	if c, ok := s.policy.overlay.Credential(provider); ok {
		hdrs = setHeader(hdrs, c.Header, c.Value)
	}
	s.attempts++
	s.entry = s.retryTo
	s.markTried(provider)
	_, err := proxywasm.DispatchHttpCall(provider.Cluster, hdrs, reqBody, nil, s.decision.Route.Fallback.TimeoutMs, s.onAttempt)
	if err == nil {
		return true
	}
	proxywasm.LogWarn("shepherd: route " + s.decision.Route.Name + ": fallback to " + provider.Name + " (cluster " + provider.Cluster + "): " + err.Error())
	if s.shouldRetry(0, true) && s.planRetry(0, codeReset, "", "") {
		return true
	}
	s.release()
	return false
}

// onAttempt handles a fallback callout's answer. An answer Envoy made up
// itself (its timeout or reset reply) is no provider's answer: it counts as a
// failed attempt (code timeout or reset), and the client never gets it while a
// real upstream answer is at hand.
//
// An answer larger than fallback.maxAnswerBytes is never copied into the VM
// (whose memory never shrinks): it is counted and handled as a failed
// attempt (code reset), like a callout that got no answer, which is what
// Envoy makes of a callout whose answer exceeds its async client's buffer
// (32 MiB by default).
func (s *stream) onAttempt(numHeaders, bodySize, _ int) {
	if s.done {
		return
	}
	if f := s.decision.Route.Fallback; bodySize > f.MaxAnswerBytes {
		provider, _, _ := s.target(s.entry)
		s.policy.metrics.count(metricKey{kind: mAnswersTooLarge, route: int16(s.decision.Route.Index), provider: int16(provider.Index)}, 1)
		s.countAttempt(s.entry, codeReset)
		if s.shouldRetry(0, true) && s.planRetry(0, codeReset, "", "") {
			return
		}
		s.release()
		return
	}
	hdrs, _ := proxywasm.GetHttpCallResponseHeaders()
	status := 0
	for _, kv := range hdrs {
		if kv[0] == ":status" {
			status, _ = strconv.Atoi(kv[1])
		}
	}
	var respBody []byte
	if bodySize > 0 {
		respBody, _ = proxywasm.GetHttpCallResponseBody(0, bodySize)
	}
	code := codeIndex(status)
	if numHeaders == 0 || status == 0 {
		code = codeReset
	} else if c := proxyAnswer(status, hdrs, respBody); c != 0 {
		code = c
	}
	s.countAttempt(s.entry, code)
	failed := code == codeReset || code == codeTimeout
	if !failed {
		p, name, _ := s.target(s.entry)
		s.learn(p, name, status, hdrs, nowNanos()) // hdrs are the VM's own copy
	}
	if s.shouldRetry(status, failed) {
		if !failed {
			s.last = &answer{status: status, headers: hdrs, body: respBody, entry: s.entry}
		}
		if s.planRetry(status, code, headerValue(hdrs, "retry-after"), resetHint(hdrs)) {
			return
		}
		if failed {
			s.release()
			return
		}
	}
	s.respond(&answer{status: status, headers: hdrs, body: respBody, entry: s.entry})
}

// Bodies of the replies Envoy's router makes itself for an upstream that
// timed out or reset (envoy source/common/router/router.cc, onUpstreamTimeout
// and onUpstreamReset, with the details of
// source/common/stream_info/utility.cc); an http callout's async client hands
// them to the plugin as the call's response
// (source/extensions/common/wasm/context.cc, Context::onHttpCallSuccess).
const (
	envoyTimeoutBody = "upstream request timeout"
	envoyResetBody   = "upstream connect error or disconnect/reset before headers"
)

// proxyAnswer classifies a callout response that Envoy produced itself:
// codeTimeout or codeReset, or 0 for a real upstream answer. Envoy's replies
// are plain text with a fixed body; providers answer JSON.
func proxyAnswer(status int, hdrs [][2]string, body []byte) uint8 {
	if status != 503 && status != 504 {
		return 0
	}
	if !strings.HasPrefix(headerValue(hdrs, "content-type"), "text/plain") {
		return 0
	}
	switch {
	case status == 504 && string(body) == envoyTimeoutBody:
		return codeTimeout
	case status == 503 && strings.HasPrefix(string(body), envoyResetBody):
		return codeReset
	}
	return 0
}

// answer is a complete upstream response from a callout.
type answer struct {
	status  int
	headers [][2]string
	body    []byte
	entry   int
}

// release ends a fallback that produced no usable answer: the last real upstream
// error from a callout when there is one, else the held original response.
// Either way the client is told not to retry it (see respond).
func (s *stream) release() {
	if s.last != nil {
		s.respond(s.last)
		return
	}
	if s.diverted {
		// No upstream response is held: the main request was stopped at
		// its body because its model pauses (steerModel).
		s.coolAnswer(nowNanos() / 1e6)
		return
	}
	// The held original is the last real answer. Its headers are still the
	// stream's (Envoy lets a filter that stopped in the response headers
	// change them until it resumes), so it says who answered like any other.
	provider, modelName, _ := s.target(s.mainEntry())
	if now := nowNanos() / 1e6; s.coolPending(s.status, now) {
		s.coolHeaders(now)
	}
	_ = proxywasm.ReplaceHttpResponseHeader(headerProvider, provider.Name)
	if modelName != "" {
		_ = proxywasm.ReplaceHttpResponseHeader(headerModel, modelName)
	}
	_ = proxywasm.ReplaceHttpResponseHeader(headerAttempts, strconv.Itoa(s.attempts))
	_ = proxywasm.ReplaceHttpResponseHeader(openai.ShouldRetryHeader, "false")
	s.held = false
	_ = proxywasm.ResumeHttpResponse()
}

// respond replaces the held upstream response with a callout's answer.
//
// An error that ends a fallback chain carries x-should-retry: false, whatever
// the provider said: the filter has already retried the request (the attempts
// are in x-shepherd-attempts, Retry-After was honoured up to retryAfterCapMs),
// and an SDK that retried it again would run the whole chain again (three
// attempts, retried twice by the SDK: nine upstream calls for one client call).
// The provider's Retry-After stays for the application to judge.
func (s *stream) respond(a *answer) {
	provider, modelName, model := s.target(a.entry)
	s.held, s.replied = false, true
	s.status, s.localStatus = a.status, a.status
	s.provider, s.model, s.modelName = provider, model, modelName
	s.firstByte = nowNanos()
	giveUp := a.status >= 400
	out := make([][2]string, 0, len(a.headers)+4)
	ct := ""
	for _, kv := range a.headers {
		switch {
		case kv[0] == "content-type":
			ct = kv[1]
		case kv[0] == "content-length", kv[0] == "transfer-encoding", kv[0] == "connection",
			kv[0] == openai.ShouldRetryHeader && giveUp,
			strings.HasPrefix(kv[0], ":"), strings.HasPrefix(kv[0], internalPrefix):
			continue
		}
		out = append(out, kv)
	}
	if giveUp {
		out = append(out, openai.NoRetry)
	}
	out = append(out, [2]string{headerProvider, provider.Name}, [2]string{headerModel, modelName},
		[2]string{headerAttempts, strconv.Itoa(s.attempts)})
	if now := s.firstByte / 1e6; s.coolPending(a.status, now) {
		// A failure while a candidate cools down says when it is free.
		out = setHeader(out, "retry-after", strconv.FormatInt(s.retryAfterSeconds(now), 10))
		s.status = s.coolStatusFor(a.status)
		s.localStatus = s.status
	}
	respBody := a.body
	if strings.HasPrefix(ct, "text/event-stream") {
		s.startSSE()
		respBody, _ = s.sse.Edit(a.body, true)
	} else {
		s.startJSON()
		s.json.Feed(a.body)
	}
	if err := proxywasm.SendHttpResponse(uint32(s.status), out, respBody, -1); err != nil {
		proxywasm.LogError("shepherd: route " + s.decision.Route.Name + ": answering with the fallback's response: " + err.Error())
	}
}

// resetHint returns OpenAI's reset header for the exhausted limit: the requests
// one when x-ratelimit-remaining-requests is 0, else the tokens one when its
// remaining is 0, else "".
func resetHint(hdrs [][2]string) string {
	if headerValue(hdrs, "x-ratelimit-remaining-requests") == "0" {
		return headerValue(hdrs, "x-ratelimit-reset-requests")
	}
	if headerValue(hdrs, "x-ratelimit-remaining-tokens") == "0" {
		return headerValue(hdrs, "x-ratelimit-reset-tokens")
	}
	return ""
}

func headerValue(hdrs [][2]string, k string) string {
	for _, kv := range hdrs {
		if kv[0] == k {
			return kv[1]
		}
	}
	return ""
}

// setHeader sets header k in hdrs to v, replacing an existing value.
func setHeader(hdrs [][2]string, k, v string) [][2]string {
	for i := range hdrs {
		if hdrs[i][0] == k {
			hdrs[i][1] = v
			return hdrs
		}
	}
	return append(hdrs, [2]string{k, v})
}
