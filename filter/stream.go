package main

import (
	"strconv"
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/body"
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/cooldown"
	"github.com/shepherd-mesh/shepherd/filter/fallback"
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/mesh"
	"github.com/shepherd-mesh/shepherd/filter/model"
	"github.com/shepherd-mesh/shepherd/filter/openai"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/routing"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// Response headers that tell the client who answered.
const (
	headerProvider = "x-shepherd-provider"
	headerModel    = "x-shepherd-model"
	headerAttempts = "x-shepherd-attempts"
	internalPrefix = "x-shepherd-"
)

// stream is one HTTP request through the filter. Its callbacks run one at a time
// on the VM that owns it.
type stream struct {
	types.DefaultHttpContext
	plugin *plugin
	policy *policy
	id     uint32

	decision  routing.Decision
	state     *routeState
	routed    bool // a route matched
	awaitBody bool // the request body is buffered and read at its end
	replied   bool // the filter sent a local reply
	done      bool // the stream ended

	localStatus int   // status of the filter's local reply
	localReason int16 // why the filter answered itself (localReasons)

	// Request headers the body phase needs, read while the headers are at hand.
	priority string
	consumer string
	// meshConsumer is the consumer for budgets and global limits.
	meshConsumer string

	globalCheck

	// Provider hints for the outcome report.
	hasRemaining bool
	remaining    int64
	retryAfterMs uint32

	start     int64
	firstByte int64

	// Request body facts, when the route reads the body.
	body      []byte // the request as sent upstream, kept for fallback
	req       body.Request
	reqStale  bool          // req describes the body before its rewrite, not body
	model     *config.Model // the requested model after aliases and priority, nil if unlisted
	requested string        // the requested model's name
	modelName string        // the model named upstream (provider's name)
	stream    bool
	estimate  int64 // prompt tokens estimated at admission
	// stripUsage is set when the filter asked a stream for usage the client
	// did not ask for: the usage is removed before it reaches the client.
	stripUsage bool
	maxOut     int64 // the output the request may use: its own limit, else the route's default
	bodyRead   bool  // estimate and maxOut were read from the body

	tokenReservation
	responseScan

	// escaped is set once something that outlives the stream's callbacks holds
	// it (the plugin's retry queue); such a stream is never reused.
	escaped bool

	// call is the OpenAI operation the request is: only inference calls have
	// their bodies read and their responses scanned for usage, and each gets
	// only the edits its operation defines.
	call openai.Call

	fallbackAttempt
	providerMemory
}

// globalCheck is the request's global limit check: the descriptor checked at
// admission, charged with the real token usage when the stream ends
// (sidecar.go, quota.go).
type globalCheck struct {
	desc         mesh.Descriptor
	checked      bool // the sidecar admitted the request (or is being asked)
	checkPending bool // the request waits for the sidecar's answer
}

// tokenReservation is the request's token reservation, settled when the
// stream ends.
type tokenReservation struct {
	tokenKey string
	reserved int64
	taken    bool // the token limit admitted the request: settle it
}

// responseScan is what the filter reads from the response as it passes.
type responseScan struct {
	status int
	sse    *body.SSEScanner       // nil, or &scan.sse while the response is an event stream
	json   *body.JSONUsageScanner // nil, or &scan.json while the response is JSON
	// scan holds the scanners (half a kilobyte), made for the stream's first
	// scanned answer and kept with the stream when it is reused: a stream
	// open and waiting for its answer does not carry them.
	scan    *scanners
	outputs int64 // stream events seen, the output estimate when usage is missing
}

// fallbackAttempt is where the request's current attempt goes and what the
// attempts before it did (retry.go).
type fallbackAttempt struct {
	clientHeaders [][2]string      // the client's headers every attempt carries
	provider      *config.Provider // provider of the current attempt
	entry         int              // chain entry of the current attempt (0 = primary)
	attempts      int
	held          bool  // the upstream response is paused while a retry runs
	retryAt       int64 // when the next attempt may start
	retryTo       int
	last          *answer // the last failed callout's response
	// tried are the providers this request's attempts went to (indexes), so
	// a fallback can tell a first visit of a provider from a retry of it.
	tried  [fallback.MaxAttemptsLimit]int16
	ntried uint8
	// mainCounted is set once the main request's attempt is counted.
	mainCounted bool

	// chain is the request's fallback chain (after the primary) and plan its
	// planner: the route's, or fallback.byModel's for the primary model.
	chain []config.FallbackEntry
	plan  *fallback.Planner

	// chosen is the route's provider for this request: chain entry 0's, and
	// that of entries that name no provider.
	chosen *config.Provider
}

// markTried notes that an attempt went to provider p.
func (a *fallbackAttempt) markTried(p *config.Provider) {
	if int(a.ntried) < len(a.tried) {
		a.tried[a.ntried] = int16(p.Index)
		a.ntried++
	}
}

// triedProvider reports whether an attempt of this request went to p.
func (a *fallbackAttempt) triedProvider(p *config.Provider) bool {
	for _, i := range a.tried[:a.ntried] {
		if int(i) == p.Index {
			return true
		}
	}
	return false
}

// providerMemory is what the request learned from, and owes to, the provider
// memory (cooling.go).
type providerMemory struct {
	pick           uint64           // the weighted choice's number, to choose again
	skipped        int              // chain entries passed over because their provider cooled
	skippedAtStart int              // the entry the main request went to
	probeLater     bool             // the planned attempt must claim its provider's probe
	probe          *config.Provider // the half-open provider this request probes
	probeKey       string           // the table entry of that probe: the provider's, or its model's
	coolAny        bool             // the memory held a pause when the request was routed
	diverted       bool             // the main request was held at its body: a fallback callout answers it
	coolFree       int64            // when the earliest cooling candidate is free (Unix ms), 0 if none
	coolStatus     uint16           // the refusal status of that pause (429, 503)
}

// useChainOf selects fallback.byModel's chain for primary model m, when it
// has one.
func (s *stream) useChainOf(m *config.Model) {
	if f := s.decision.Route.Fallback; f != nil && m != nil {
		if c, ok := f.ByModel[m]; ok {
			s.chain, s.plan = c, s.state.byModel[m]
		}
	}
}

// sentUpstream reports whether the main request went on to the provider:
// routed, not answered by the filter, not held for the global limit check.
func (s *stream) sentUpstream() bool {
	return s.routed && !s.replied && !s.checkPending
}

// countAttempt counts one upstream attempt of entry e with code label c.
func (s *stream) countAttempt(e int, c uint8) {
	m := s.policy.metrics
	p, _, model := s.target(e)
	m.count(metricKey{kind: mAttempts, route: int16(s.decision.Route.Index), provider: int16(p.Index), model: m.modelIndex(model), extra: c}, 1)
}

// OnHttpRequestHeaders routes the request: it rewrites :authority and :path to the
// chosen provider, replaces any client credential with the provider's, strips
// shepherd's internal headers, and applies the route's request limit. Envoy clears
// its route cache when these headers change, so the request is re-routed to the
// provider's cluster. Requests no route matches pass through untouched.
func (s *stream) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	if s.policy == nil {
		return types.ActionContinue
	}
	// One host call reads every header this phase looks at, in place: the
	// values are valid until the next call that returns data (the limits'
	// shared data), so onRequestHeaders reads them all before it and clones
	// what the stream keeps. The slice is the plugin's, reused by every stream.
	hdrs, err := proxywasm.PeekHttpRequestHeaders(s.plugin.reqHeaders[:0])
	if err != nil {
		return types.ActionContinue
	}
	s.plugin.reqHeaders = hdrs
	action := s.onRequestHeaders(endOfStream)
	clear(hdrs)
	s.plugin.reqHeaders = hdrs[:0]
	return action
}

func (s *stream) onRequestHeaders(endOfStream bool) types.Action {
	pol := s.policy
	path, ok := s.header(":path")
	if !ok {
		return types.ActionContinue
	}
	method, _ := s.header(":method")
	pick := s.plugin.random()
	d, ok := routing.DecideHeaders(pol.cfg, path, s.plugin.reqHeaders, &s.plugin.match, pick)
	if !ok {
		return types.ActionContinue
	}
	s.call = openai.Classify(method, path, d.Rest())
	if d.Route.Fallback != nil {
		d.Own() // fallback attempts build their paths from it later
	}
	s.start = nowNanos()
	s.attempts = 1
	if !routing.CleanPath(path) {
		// Refused before any header is touched: no credential is attached to a
		// path a later hop could resolve outside the provider's API.
		s.decision, s.routed, s.provider = d, true, d.Route.Provider
		s.state = &pol.routes[d.Route.Index]
		return s.badRequest("request path has a dot-segment or an encoded '/', '\\', '.' or '%'", "invalid_path")
	}
	d.Provider = s.chooseProvider(d.Route, pick)
	if !d.Provider.Serves(s.call.Op) {
		d.Provider = routing.PickServing(d.Route.Backends, s.call.Op, pick)
	}
	if d.Provider == nil {
		// No provider of the route serves the operation: it is sent nowhere.
		s.decision, s.routed, s.provider = d, true, d.Route.Provider
		s.state = &pol.routes[d.Route.Index]
		return s.unsupported()
	}
	s.decision, s.routed, s.provider, s.chosen = d, true, d.Provider, d.Provider
	s.markTried(d.Provider)
	s.state = &pol.routes[d.Route.Index]

	// The rest of what this phase needs from the request headers, read
	// before the first call that returns data.
	if h := d.Route.PriorityHeader; h != "" {
		s.priority = headerClone(s.header(h))
	}
	meshIdentity := false
	if c := &d.Route.Consumer; c.From.Identity() {
		// The mesh names the consumer (read below, after the last header
		// read: its property reads return data); a client's header neither
		// counts nor reaches the provider.
		meshIdentity = true
		if _, sent := s.header(c.Header); sent {
			_ = proxywasm.RemoveHttpRequestHeader(c.Header)
		}
	} else {
		if l := d.Route.Limits; l != nil && l.ConsumerHeader != "" {
			s.consumer = headerClone(s.header(l.ConsumerHeader))
		}
		if c.From == config.ConsumerFromHeader {
			s.meshConsumer = headerClone(s.header(c.Header))
		}
	}
	if f := d.Route.Fallback; f != nil {
		s.chain, s.plan = f.Chain, s.state.planner
	}
	// A priority value names the model (and its chain), and may name the
	// provider that serves it.
	if m := model.Priority(d.Route, s.priority); m != nil {
		s.useChainOf(m)
	}
	if p := model.PriorityProvider(d.Route, s.priority, s.call.Op); p != nil {
		d.Provider = p
		s.decision.Provider, s.provider, s.chosen = p, p, p
		s.ntried = 0
		s.markTried(p)
	}
	// Only an inference call's JSON body names a model and asks for tokens.
	tooLarge, readBody, emptyBody := false, d.Route.NeedsBody && s.call.Inference(), false
	if readBody {
		if cl, ok := s.header("content-length"); ok {
			n, err := strconv.Atoi(cl)
			tooLarge = err == nil && n > d.Route.MaxBodyBytes
		}
		ct, hasCT := s.header("content-type")
		if hasCT && !strings.Contains(ct, "json") {
			readBody = false // not a JSON API call: pass it on unread
		}
		// A body declared JSON that has no bytes is malformed JSON, answered
		// as any other (as OpenAI answers it) rather than sent on unread.
		emptyBody, readBody = readBody && hasCT && endOfStream, readBody && !endOfStream
	}

	if d.Route.Fallback != nil {
		// Every attempt carries the client's headers, as the first does.
		s.clientHeaders = keptClientHeaders(s.plugin.reqHeaders, d.Route)
	}
	for _, kv := range s.plugin.reqHeaders {
		if strings.HasPrefix(kv[0], internalPrefix) || isAccountHeader(kv[0]) && kv[0] != "authorization" {
			_ = proxywasm.RemoveHttpRequestHeader(kv[0])
		}
	}
	// The request headers are not read after this point: the identity's
	// property reads and the provider memory's read replace the bytes they
	// were read from.
	if meshIdentity {
		s.consumer = s.identity(&d.Route.Consumer)
		s.meshConsumer = s.consumer
	}
	if action, answered := s.steer(s.start/1e6, readBody); answered {
		return action
	}
	d = s.decision
	if err := proxywasm.ReplaceHttpRequestHeader(":authority", d.Authority()); err != nil {
		proxywasm.LogError("shepherd: route " + d.Route.Name + ": rewriting :authority: " + err.Error())
		return types.ActionContinue
	}
	// The new path is built in the plugin's buffer; the host copies it.
	s.plugin.pathBuf = d.AppendPathVia(s.plugin.pathBuf[:0], d.Provider)
	if string(s.plugin.pathBuf) != path {
		_ = proxywasm.ReplaceHttpRequestHeaderBytes(":path", s.plugin.pathBuf)
	}
	// The client's own credential never reaches a provider: the provider's
	// replaces it (a replace drops every value the header had), or it goes.
	if auth := d.Provider.Authorization; auth != "" {
		_ = proxywasm.ReplaceHttpRequestHeader("authorization", auth)
	} else {
		_ = proxywasm.RemoveHttpRequestHeader("authorization")
	}
	if p := d.Provider; p.Organization != "" {
		_ = proxywasm.ReplaceHttpRequestHeader("openai-organization", p.Organization)
	}
	if p := d.Provider; p.Project != "" {
		_ = proxywasm.ReplaceHttpRequestHeader("openai-project", p.Project)
	}
	if c, ok := pol.overlay.Credential(d.Provider); ok {
		_ = proxywasm.ReplaceHttpRequestHeader(c.Header, c.Value)
	}

	if pol.overlay.RouteExhausted(d.Route) {
		return s.budgetExhausted("route " + d.Route.Name)
	}
	if pol.overlay.ConsumerExhausted(s.meshConsumer) {
		return s.budgetExhausted("this consumer")
	}
	if s.state.budget != nil {
		s.state.budget.Record(s.start)
	}
	if l := s.state.requests; l != nil {
		dec, err := l.Take(s.limitKey(l), 1, s.start)
		if err != nil {
			proxywasm.LogWarn("shepherd: route " + d.Route.Name + ": request limit failed open: " + err.Error())
		}
		if !dec.Allowed {
			return s.rateLimited(limits.Requests, dec)
		}
	}
	if tooLarge {
		return s.tooLarge()
	}
	if emptyBody {
		return s.invalidBody(errEmptyBody)
	}
	if !readBody {
		return s.checkGlobal()
	}
	// The body is read (and may be rewritten) in OnHttpRequestBody. The headers go
	// on now: Envoy gives a plugin that stops in the request headers no body until
	// it resumes (unless allow_on_headers_stop_iteration is set), so the body is
	// held instead, and the router waits for it. Its length may change, so the
	// request is sent without content-length.
	_ = proxywasm.RemoveHttpRequestHeader("content-length")
	s.awaitBody = true
	// A global check pauses the headers; Envoy delivers the body once the
	// answer resumes the request.
	return s.checkGlobal()
}

// chooseProvider picks route r's provider: the canary when the request sends
// the canary header with "true"; otherwise by weight (the sidecar's canary
// weights when it has sent some), skipping providers in a cooldown, with the
// client's sticky key as the pick when the route names a sticky header.
func (s *stream) chooseProvider(r *config.Route, pick uint64) *config.Provider {
	if c := r.Canary; c != nil {
		if v, ok := s.header(c.Header); ok {
			_ = proxywasm.RemoveHttpRequestHeader(c.Header)
			if v == "true" {
				return c.Provider
			}
		}
		if c.StickyHeader != "" {
			if v, ok := s.header(c.StickyHeader); ok && v != "" {
				pick = mesh.StickyPick(v)
			}
		}
	}
	s.pick = pick
	return s.policy.overlay.Choose(r, pick, s.start/1e6)
}

// limitKey is the bucket key for this request: per consumer when the route names a
// consumer header, else the route's.
func (s *stream) limitKey(l *limits.Limiter) string {
	c := s.state.consumers
	if c == nil || s.consumer == "" {
		return l.Key("")
	}
	if tracked, _ := c.Resolve(s.consumer); tracked {
		return l.Key(s.consumer)
	}
	return l.OverflowKey()
}

// OnHttpRequestBody buffers a body the route reads, then picks the model, reserves
// tokens, and rewrites the body.
func (s *stream) OnHttpRequestBody(size int, endOfStream bool) types.Action {
	if !s.awaitBody || s.replied {
		return types.ActionContinue
	}
	r := s.decision.Route
	if size > r.MaxBodyBytes {
		return s.tooLarge()
	}
	if !endOfStream {
		return types.ActionPause
	}
	s.awaitBody = false
	// The body is read in place: everything that reads it runs before the
	// next host call, and the rewrite goes to the plugin's reused buffer.
	// The body arrives in the binding's scratch buffer, grown once to the
	// largest body read (at most the route's maxBodyBytes), not in a buffer
	// allocated for each request.
	proxywasm.ReserveScratch(min(size, maxReusedBody))
	raw, err := proxywasm.PeekHttpRequestBody(0, size)
	if err != nil {
		return types.ActionContinue
	}
	req, err := body.InspectRequest(raw)
	if err != nil {
		return s.invalidBody(err)
	}
	if req.DuplicateModel {
		return s.badRequest("request body names its model more than once", "duplicate_model")
	}
	s.req, s.stream = req, req.Stream

	// Model: priority header, then the body (aliases resolved), then the default.
	choice := model.Select(s.policy.cfg, r, s.priority, s.call.Op.Generates(), &req, raw)
	s.model = choice.Model
	requested := choice.Requested
	if s.entry == 0 {
		s.useChainOf(s.model) // a fallback entry the provider memory chose keeps its chain
	} else if !s.entryAllowed(s.chain[s.entry-1]) {
		// The provider memory sent the request to a fallback entry, but its
		// model may not answer this one (an unlisted model): the pausing
		// primary is the only candidate, so the filter answers.
		return s.coolAnswer(nowNanos() / 1e6)
	}
	s.requested = requested
	s.modelName = s.provider.ModelName(requested)
	if s.entry != 0 {
		// The provider memory sent the request to a fallback entry.
		_, s.modelName, _ = s.target(s.entry)
	}

	edit := body.Edit{IncludeUsage: r.StreamUsage && s.call.Op.StreamOptions()}
	// Usage the client did not ask for is removed from the stream again.
	s.stripUsage = edit.IncludeUsage && req.Stream && !req.IncludeUsage
	if s.modelName != "" && !req.ModelIs(raw, s.modelName) {
		edit.SetModel, edit.Model = true, s.modelName
	}
	// A fallback resends the body, so the stream keeps its own copy;
	// otherwise the rewrite lives only until the host has taken it.
	// Without fallback only the edited start of the body (up to the end of
	// the last edit) is built and handed over: the host keeps the rest.
	var out []byte
	changed, cut := false, -1
	if r.Fallback != nil {
		out, changed = body.Apply(raw, req, edit)
		if !changed {
			out = append([]byte(nil), raw...)
		}
		s.body = out
	} else {
		out, cut, changed = body.AppendAppliedPrefix(s.plugin.bodyBuf[:0], raw, req, edit)
		if changed {
			s.plugin.keepBodyBuf(out)
		}
	}
	// raw is the host's buffer: nothing below reads it, as the token
	// limit's shared data is the next call that returns data.

	// Tokens: reserve the prompt estimate plus the output the request may use.
	// Both are bounded (the body's size, body.MaxCount), so the sum cannot
	// wrap; a sum beyond the bucket's capacity is refused as too large.
	s.estimate = req.EstimatePromptTokens()
	s.maxOut = req.MaxOutputTokens()
	if s.maxOut < 0 {
		s.maxOut = defaultMaxTokens(r)
	}
	if !s.call.Op.Generates() {
		s.maxOut = 0 // embeddings, moderations, images, audio: no text to reserve for
	}
	s.bodyRead = true
	if l := s.state.tokens; l != nil {
		n := s.estimate + s.maxOut
		s.tokenKey = s.limitKey(l)
		dec, err := l.Take(s.tokenKey, n, nowNanos())
		if err != nil {
			proxywasm.LogWarn("shepherd: route " + r.Name + ": token limit failed open: " + err.Error())
		}
		if !dec.Allowed {
			return s.rateLimited(limits.Tokens, dec)
		}
		// A failed-open Take reserved nothing: settling 0 charges the usage.
		s.taken = true
		if !dec.FailedOpen {
			s.reserved = n
		}
	}
	// The model is known now: its own pause may keep it from its provider
	// (a fallback attempt then re-reads the kept body, which moved).
	s.reqStale = s.body != nil && changed
	if action, taken := s.steerModel(); taken {
		return action
	}

	if changed {
		var err error
		if cut >= 0 {
			err = proxywasm.ReplaceHttpRequestBodyPrefix(cut, out)
		} else {
			err = proxywasm.ReplaceHttpRequestBody(out)
		}
		if err != nil {
			proxywasm.LogError("shepherd: route " + r.Name + ": rewriting the body: " + err.Error())
		}
	}
	// A rewritten body kept for fallback moved its members: a fallback
	// attempt inspects it again (startAttempt), most requests never do.
	s.reqStale = s.body != nil && changed
	return types.ActionContinue
}

// OnHttpResponseHeaders holds a failed response while a fallback runs, and
// otherwise tells the client who answered and prepares usage scanning.
func (s *stream) OnHttpResponseHeaders(_ int, endOfStream bool) types.Action {
	if !s.routed || s.replied {
		return types.ActionContinue
	}
	// Header values are read in place: valid until the next call that
	// returns data, so each is used (or cloned) before the next read.
	status, _ := proxywasm.PeekHttpResponseHeader(":status")
	s.status, _ = strconv.Atoi(status)
	if !s.mainCounted {
		s.mainCounted = true
		s.countAttempt(s.entry, codeIndex(s.status))
	}
	retry := s.shouldRetry(s.status, false)
	var retryAfter, reset string
	scan := scanUnknown
	if retry || s.reportsOutcomes() || s.readsHints() {
		// The hints for the outcome report, the retry plan and the provider
		// memory, from one read; learn writes last, as its calls replace
		// the bytes.
		hdrs, _ := proxywasm.PeekHttpResponseHeaders(s.plugin.respHeaders[:0])
		s.readProviderHints(hdrs)
		if retry {
			retryAfter, reset = strings.Clone(headerValue(hdrs, "retry-after")), strings.Clone(resetHint(hdrs))
		}
		scan = scanOf(headerValue(hdrs, "content-type"))
		s.learn(s.provider, s.modelName, s.status, hdrs, nowNanos())
		clear(hdrs)
		s.plugin.respHeaders = hdrs[:0]
	}
	if retry && s.planRetry(s.status, codeIndex(s.status), retryAfter, reset) {
		s.held = true
		return types.ActionPause
	}
	s.firstByte = nowNanos()
	if s.coolPending(s.status, s.firstByte/1e6) {
		s.coolHeaders(s.firstByte / 1e6)
	}
	_ = proxywasm.ReplaceHttpResponseHeader(headerProvider, s.provider.Name)
	if s.modelName != "" {
		_ = proxywasm.ReplaceHttpResponseHeader(headerModel, s.modelName)
	}
	_ = proxywasm.ReplaceHttpResponseHeader(headerAttempts, strconv.Itoa(s.attempts))
	if !endOfStream && s.call.Inference() {
		if scan == scanUnknown {
			ct, _ := proxywasm.PeekHttpResponseHeader("content-type")
			scan = scanOf(ct)
		}
		switch scan {
		case scanSSE:
			s.startSSE()
		case scanJSON:
			s.startJSON()
		}
	}
	return types.ActionContinue
}

// How a response body is scanned for usage, by its content type.
const (
	scanUnknown uint8 = iota // not looked at yet
	scanNone
	scanSSE
	scanJSON
)

func scanOf(ct string) uint8 {
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		return scanSSE
	case strings.Contains(ct, "json"):
		return scanJSON
	}
	return scanNone
}

// readsHints reports whether the main answer's headers hold something the
// provider memory keeps: a refusal's pause, a probe's outcome, or, on routes
// with somewhere else to go, the headroom left.
func (s *stream) readsHints() bool {
	switch {
	case s.status == 429 || s.status == 503, s.probe != nil:
		return true
	case s.status >= 200 && s.status < 300:
		r := s.decision.Route
		return len(r.Backends) > 1 || r.Fallback != nil
	}
	return false
}

// OnHttpResponseBody scans the body for usage as it passes, never holding it back,
// except while a fallback replaces the response.
func (s *stream) OnHttpResponseBody(size int, endOfStream bool) types.Action {
	if s.held {
		return types.ActionPause
	}
	if s.replied || (s.sse == nil && s.json == nil) || size == 0 && !(endOfStream && s.sse != nil) {
		return types.ActionContinue
	}
	// The scanners keep nothing of a chunk and make no host call while
	// reading it, so the host's bytes are read in place.
	var chunk []byte
	if size > 0 {
		var err error
		if chunk, err = proxywasm.PeekHttpResponseBody(0, size); err != nil {
			return types.ActionContinue
		}
	}
	if s.sse != nil {
		if s.sse.Strip {
			// The chunk leaves without the usage the filter asked for; a
			// partial event waits for the chunk that completes it. A cut
			// is made in the peeked bytes themselves (the VM's own memory,
			// unused after this).
			if out, replaced := s.sse.Edit(chunk, endOfStream); replaced {
				_ = proxywasm.ReplaceHttpResponseBodyChunk(size, out)
			}
		} else {
			s.sse.Feed(chunk)
			if endOfStream {
				s.sse.Finish()
			}
		}
		if s.sse.FirstContent() {
			s.firstByte = nowNanos()
		}
	} else {
		s.json.Feed(chunk)
	}
	return types.ActionContinue
}

// OnHttpStreamDone settles the token reservation with the real usage and records
// the request's metrics. It runs also when the client went away mid-stream.
func (s *stream) OnHttpStreamDone() {
	s.done = true
	if s.routed {
		s.finish()
	}
	// Reading the allocation counter costs microseconds in a VM, so a busy VM
	// looks every gcCheckStreams streams rather than at every one.
	if s.plugin.streams++; s.plugin.streams%gcCheckStreams == 0 {
		proxywasm.CollectGarbageIfGrown(gcThreshold)
	}
}

// usage returns the tokens the response reported, or an estimate when it reported
// none (an aborted stream): the prompt estimate and one token per content event.
func (s *stream) usage() (u body.Usage, real bool) {
	switch {
	case s.sse != nil && s.sse.SawUsage():
		return s.sse.Usage(), true
	case s.json != nil && s.json.SawUsage():
		return s.json.Usage(), true
	}
	out := int64(0)
	if s.sse != nil {
		out = int64(s.sse.Outputs())
	}
	return body.Usage{Input: s.estimate, Output: out, Total: s.estimate + out}, false
}

// defaultMaxTokens is the output route r reserves for a request that sets
// no limit of its own.
func defaultMaxTokens(r *config.Route) int64 {
	if r.Limits != nil {
		return r.Limits.DefaultMaxTokens
	}
	return config.DefaultMaxTokens
}

// plausible clips a provider's usage report to what the request can have
// used: its prompt estimate plus its output limit plus the route's
// usageMarginTokens. A report beyond that (a provider that is broken or
// hostile) is counted as an anomaly and clipped, input first, so that it
// cannot drive a bucket, a budget, a cost or a counter wild. Every count is
// at most body.MaxCount, so no sum here wraps.
func (s *stream) plausible(u body.Usage) body.Usage {
	r := s.decision.Route
	out := s.maxOut
	if !s.bodyRead {
		out = defaultMaxTokens(r)
	}
	bound := s.estimate + out + r.UsageMarginTokens
	if u.Input+u.Output <= bound {
		return u
	}
	s.policy.metrics.count(metricKey{kind: mUsageAnomalies, route: int16(r.Index), provider: int16(s.provider.Index)}, 1)
	u.Input = min(u.Input, bound)
	u.Output = min(u.Output, bound-u.Input)
	u.CachedInput = min(u.CachedInput, u.Input)
	u.Total = u.Input + u.Output
	return u
}

func (s *stream) finish() {
	now := nowNanos()
	u, real := s.usage()
	if real {
		u = s.plausible(u)
	}
	r := s.decision.Route
	if s.taken && s.state.tokens != nil {
		actual := u.Input + u.Output
		if err := s.state.tokens.Settle(s.tokenKey, s.reserved, actual, now); err != nil {
			proxywasm.LogWarn("shepherd: route " + r.Name + ": settling tokens: " + err.Error())
		}
	}
	m := s.policy.metrics
	route, provider := int16(r.Index), int16(s.provider.Index)
	if s.sse != nil {
		m.count(metricKey{kind: mSkippedEvents, route: route}, uint64(s.sse.Skipped()))
	}
	mi := m.modelIndex(s.model)
	if me := s.mainEntry(); me != 0 && !s.replied {
		_, _, em := s.target(me) // the provider memory sent it to a fallback entry
		mi = m.modelIndex(em)
	}
	if s.model == nil && s.requested == "" {
		if pm := model.Priority(r, s.priority); pm != nil { // refused before the body was read
			mi = m.modelIndex(pm)
		}
	}
	status := s.status
	if status == 0 && s.replied {
		// The filter answered itself: no provider saw the request.
		m.count(metricKey{kind: mRequests, route: route, provider: int16(len(s.policy.cfg.Providers)), model: mi,
			extra: codeIndex(s.localStatus), model2: s.localReason}, 1)
	} else {
		m.count(metricKey{kind: mRequests, route: route, provider: provider, model: mi, extra: codeIndex(status)}, 1)
	}
	if p := s.probe; p != nil && (s.replied && s.status == 0 || !s.mainCounted) {
		// The probe never reached its provider: the next request may probe.
		s.probe = nil
		s.plugin.coolChange(s.probeKey, cooldown.ReleaseProbe, cooldown.State{}, now/1e6)
	}
	if status == 0 && !s.replied && !s.mainCounted && s.sentUpstream() {
		// The main request got no answer (reset, or the client left first).
		s.mainCounted = true
		s.countAttempt(s.entry, codeReset)
	}
	if s.start > 0 && now > s.start {
		m.record(metricKey{kind: mDuration, route: route, provider: provider}, uint64((now-s.start)/1e6))
		if s.firstByte > 0 {
			ttft := uint64((s.firstByte - s.start) / 1e6)
			m.record(metricKey{kind: mTTFT, route: route, provider: provider}, ttft)
			m.record(metricKey{kind: mGenAITTFT, model: mi}, ttft)
		}
	}
	var cost int64
	if real { // tokens and cost count only what providers reported
		m.count(metricKey{kind: mTokens, route: route, provider: provider, model: mi, extra: tokenInput}, uint64(u.Input))
		m.count(metricKey{kind: mTokens, route: route, provider: provider, model: mi, extra: tokenOutput}, uint64(u.Output))
		m.record(metricKey{kind: mGenAIUsage, model: mi, extra: tokenInput}, uint64(u.Input))
		m.record(metricKey{kind: mGenAIUsage, model: mi, extra: tokenOutput}, uint64(u.Output))
		if s.model != nil {
			if c, known := s.policy.cfg.Prices.Cost(s.model.Name, u.Input, u.CachedInput, u.Output); known {
				cost = c
				m.count(metricKey{kind: mCost, route: route, provider: provider, model: mi}, uint64(cost))
			}
		}
	}
	s.report(u.Input+u.Output, real, uint64(max(u.Input, 0)), uint64(max(u.Output, 0)), cost, now)
}

// headerClone returns a header value the stream keeps, as its own copy.
func headerClone(v string, _ bool) string { return strings.Clone(v) }

// header looks up a request header (lowercase name) as it arrived; only valid in
// the request-headers phase, which reads them once, and only until its first
// call that returns data.
func (s *stream) header(name string) (string, bool) {
	for _, kv := range s.plugin.reqHeaders {
		if kv[0] == name {
			return kv[1], true
		}
	}
	return "", false
}

// scanners are a stream's response scanners.
type scanners struct {
	sse  body.SSEScanner
	json body.JSONUsageScanner
}

// scanners returns the stream's scanners, made on the first call.
func (r *responseScan) scanners() *scanners {
	if r.scan == nil {
		r.scan = &scanners{}
	}
	return r.scan
}

// startSSE readies the event stream scanner for the request's operation.
func (s *stream) startSSE() {
	sc := s.scanners()
	sc.sse.Reset()
	if s.call.Op == openai.OpResponses {
		sc.sse.Kind = body.StreamResponses
	}
	sc.sse.Strip = s.stripUsage
	s.sse, s.json = &sc.sse, nil
}

// startJSON readies the JSON usage scanner.
func (s *stream) startJSON() {
	sc := s.scanners()
	sc.json.Reset()
	s.sse, s.json = nil, &sc.json
}
