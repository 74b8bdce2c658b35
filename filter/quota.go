package main

import (
	"strconv"
	"unsafe"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/mesh"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/rlqs"
	"github.com/shepherd-mesh/shepherd/filter/rls"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// Global limits in quota mode ("mode": "quota"). The sidecar assigns each
// Envoy a share of every limit over Envoy's RLQS protocol, and the filter
// enforces it locally, so a request costs no round trip:
//
//   - Every bucket (one per domain and descriptor values, as a check would
//     send) has a record in shared data (rlqs.Record): its assignment and the
//     usage since the last report. Every VM admits a request with one read
//     and one compare-and-swap of that record, as the local limits do.
//   - One VM per Envoy, the holder of a lease in shared data, keeps one
//     StreamRateLimitQuotas stream per domain open to the sidecar. On its
//     tick it takes the usage of every bucket of the domain (from the
//     domain's index in shared data) and sends one report; the assignments
//     the sidecar answers with go into the records.
//   - A bucket seen for the first time is admitted until its first
//     assignment can have arrived (Envoy's rate_limit_quota filter does the
//     same by default); an assignment is honoured until its expiry; after
//     that, with no new one, the route's failureMode decides.
//
// Why a stream held by one VM is sound in Envoy: a stream opened with
// proxy_grpc_stream lives as long as the VM that opened it (Envoy resets a
// VM's streams when it goes, source/extensions/common/wasm/context.cc,
// Context::onDestroy → grpc stream reset). When the lease holder is gone,
// its lease lapses after mesh.LeaseTicks report periods and another VM
// opens its own stream; a stream the sidecar or the network ends is
// reopened on the holder's next tick. In both cases the assignments in
// shared data keep admitting requests until they expire, and the server
// receives the full usage since the last report with the next one.

// Shared data keys of the quota mode.
const (
	quotaLeaseKey    = "shepherd.rlqs.lease"
	quotaRecordKey   = "shepherd.rlqs/"
	quotaIndexKey    = "shepherd.rlqs.index/"
	maxQuotaBuckets  = 4096 // per domain
	maxQuotaMessage  = 4 << 20
	quotaSlackMillis = 5
)

// quotaState is a plugin's side of the quota mode.
type quotaState struct {
	last    int64 // last quota tick that did the report work
	streams []*quotaStream
	full    bool // an index was full (logged once)
	// Reused buffers: the bucket key of the request at hand, a record's
	// encoding, and the report being built.
	key     []byte
	rec     [rlqs.RecordSize]byte
	report  []byte
	usages  []rlqs.Usage
	resp    rlqs.Response
	canon   []byte
	entries [mesh.MaxEntries]rls.Entry
}

// quotaStream is the lease holder's stream of one domain.
type quotaStream struct {
	domain     string
	id         uint32
	open       bool
	lastReport int64
}

// quotaDomains lists the domains of the config's quota-mode routes.
func quotaDomains(cfg *config.Config) []string {
	var ds []string
	for _, r := range cfg.Routes {
		g := r.GlobalLimits
		if g == nil || !g.Quota {
			continue
		}
		seen := false
		for _, d := range ds {
			seen = seen || d == g.Domain
		}
		if !seen {
			ds = append(ds, g.Domain)
		}
	}
	return ds
}

// quotaWait is how long a new bucket is admitted without an assignment (and
// an abandoned one again): until the lease holder's next report, or its
// successor's after a lapsed lease, plus the answer's round trip; at least
// minQuotaWait, so a proxy whose ticks run late under load does not fail
// a new bucket before its first answer.
func quotaWait(sc *config.Sidecar) int64 {
	return max((mesh.LeaseTicks+1)*int64(sc.QuotaReportMs)*1e6+int64(sc.TimeoutMs)*1e6, minQuotaWait)
}

// minQuotaWait is the least time a new bucket waits for its assignment.
const minQuotaWait = 2e9

// appendRecordPrefix appends the prefix of domain's record keys: the domain
// length-prefixed, so no domain forges another's keys.
func appendRecordPrefix(dst []byte, domain string) []byte {
	dst = append(dst, quotaRecordKey...)
	dst = strconv.AppendInt(dst, int64(len(domain)), 10)
	dst = append(dst, ':')
	dst = append(dst, domain...)
	return append(dst, '/')
}

// bucketKey builds the shared data key of the bucket of entries in the
// plugin's key buffer and returns where the bucket id starts in it.
func (q *quotaState) bucketKey(domain string, entries []rls.Entry) (int, bool) {
	q.key = appendRecordPrefix(q.key[:0], domain)
	at := len(q.key)
	es := append(q.entries[:0], entries...)
	var err error
	q.key, err = rlqs.AppendBucketID(q.key, es)
	return at, err == nil
}

// quotaKey returns the shared data key of the request's bucket and where
// its bucket id starts. A route whose descriptor values all come from the
// config reuses the key of its last request when the values are the same
// (a string it owns); otherwise the key is a view of the plugin's key
// buffer, valid until the next bucket key is built.
func (s *stream) quotaKey(g *config.GlobalLimits) (string, int, bool) {
	st := s.state
	es := s.desc.Requests()
	cacheable := true
	for _, k := range g.Keys {
		cacheable = cacheable && k != config.KeyConsumer
	}
	if cacheable && st.quotaKey != "" && sameEntries(st.quotaEntries, es) {
		return st.quotaKey, st.quotaAt, true
	}
	q := &s.plugin.quota
	at, ok := q.bucketKey(g.Domain, es)
	if !ok {
		return "", 0, false
	}
	if !cacheable {
		return viewString(q.key), at, true
	}
	st.quotaKey, st.quotaAt = string(q.key), at
	st.quotaEntries = append(st.quotaEntries[:0], es...)
	return st.quotaKey, at, true
}

func sameEntries(a, b []rls.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// admitQuota admits the request against its bucket's assignment with one
// read and one compare-and-swap of the bucket's record.
func (s *stream) admitQuota(g *config.GlobalLimits) types.Action {
	p := s.plugin
	q := &p.quota
	if g.Tokens {
		if action, done := s.admitQuotaTokens(g); done {
			return action
		}
	}
	key, at, ok := s.quotaKey(g)
	if !ok {
		return s.quotaFailed() // a bucket id too long to report
	}
	now := s.start
	for range limits.DefaultMaxRetries {
		v, cas, err := proxywasm.PeekSharedData(key)
		var rec rlqs.Record
		switch {
		case err == types.ErrorStatusNotFound:
			rec = rlqs.NewRecord(now, quotaWait(s.policy.cfg.Sidecar))
			// Envoy ignores cas for an absent key: two VMs creating the
			// same bucket at once both write, and one count is lost.
			if proxywasm.SetSharedData(key, rec.Encode(&q.rec), 0) != nil {
				return s.quotaFailed()
			}
			p.registerBucket(g.Domain, []byte(key[at:]))
			s.checked = true
			return types.ActionContinue
		case err != nil:
			return s.quotaFailed()
		case !rec.Decode(v):
			rec = rlqs.NewRecord(now, quotaWait(s.policy.cfg.Sidecar))
			rec.Allowed = 0
		}
		verdict, retry := rec.Admit(now)
		if verdict == rlqs.Expired {
			return s.quotaFailed()
		}
		err = proxywasm.SetSharedData(key, rec.Encode(&q.rec), cas)
		if err == types.ErrorStatusCasMismatch {
			continue
		}
		if err != nil {
			return s.quotaFailed()
		}
		if verdict == rlqs.Denied {
			return s.rateLimitedAs(limits.Requests, limits.Decision{Limit: rec.Limit(), RetryAfter: retry, ResetAfter: retry}, limitGlobalRequests, "global ")
		}
		s.checked = true
		return types.ActionContinue
	}
	// The record kept changing under this VM: admitted, as the local
	// limits do when contended.
	s.checked = true
	return types.ActionContinue
}

// admitQuotaTokens checks the token bucket (the token descriptor's
// entries, kind=tokens first) without taking from it: a request starts
// while the assignment's tokens are not spent, and its usage is charged
// when it ends (chargeQuotaTokens). done is set when the request is
// answered (refused, or the failure mode refused it).
func (s *stream) admitQuotaTokens(g *config.GlobalLimits) (types.Action, bool) {
	p := s.plugin
	q := &p.quota
	at, ok := q.bucketKey(g.Domain, s.desc.Tokens())
	if !ok {
		return s.quotaFailed(), true
	}
	key := viewString(q.key)
	now := s.start
	for range limits.DefaultMaxRetries {
		v, cas, err := proxywasm.PeekSharedData(key)
		var rec rlqs.Record
		switch {
		case err == types.ErrorStatusNotFound:
			rec = rlqs.NewRecord(now, quotaWait(s.policy.cfg.Sidecar))
			rec.Allowed = 0 // tokens are counted when charged
			if proxywasm.SetSharedData(key, rec.Encode(&q.rec), 0) != nil {
				return s.quotaFailed(), true
			}
			p.registerBucket(g.Domain, []byte(key[at:]))
			return types.ActionContinue, false
		case err != nil:
			return s.quotaFailed(), true
		case !rec.Decode(v):
			return types.ActionContinue, false // the request's own check still applies
		}
		switch verdict, retry := rec.Peek(now); verdict {
		case rlqs.Admitted:
			return types.ActionContinue, false
		case rlqs.Expired:
			if a := s.quotaFailed(); s.replied {
				return a, true
			}
			return types.ActionContinue, false // fail open: the request's own check applies
		default:
			err = proxywasm.SetSharedData(key, rec.Encode(&q.rec), cas)
			if err == types.ErrorStatusCasMismatch {
				continue
			}
			return s.rateLimitedAs(limits.Tokens, limits.Decision{Limit: rec.Limit(), RetryAfter: retry, ResetAfter: retry}, limitGlobalTokens, "global "), true
		}
	}
	return types.ActionContinue, false
}

// chargeQuotaTokens charges a finished request's token usage to its token
// bucket (into debt if need be), which reports it as the bucket's usage.
func (s *stream) chargeQuotaTokens(g *config.GlobalLimits, n uint64, now int64) {
	q := &s.plugin.quota
	if _, ok := q.bucketKey(g.Domain, s.desc.Tokens()); !ok {
		return
	}
	key := viewString(q.key)
	for range limits.DefaultMaxRetries {
		v, cas, err := proxywasm.PeekSharedData(key)
		var rec rlqs.Record
		if err != nil || !rec.Decode(v) {
			return
		}
		rec.Charge(now, n)
		if proxywasm.SetSharedData(key, rec.Encode(&q.rec), cas) != types.ErrorStatusCasMismatch {
			return
		}
	}
}

// quotaFailed applies the route's failure mode when its bucket has no
// usable assignment (expired, or the bucket cannot be kept).
func (s *stream) quotaFailed() types.Action {
	r := s.decision.Route
	s.checked = false
	if r.GlobalLimits.FailClosed {
		s.policy.metrics.count(metricKey{kind: mGlobalFailures, route: int16(r.Index), extra: failClosed}, 1)
		s.localReason = localUnavailable
		return s.reply(503, nil, "the global rate limit service is unavailable for route "+r.Name, "server_error", "ratelimit_unavailable")
	}
	s.policy.metrics.count(metricKey{kind: mGlobalFailures, route: int16(r.Index), extra: failOpen}, 1)
	return types.ActionContinue
}

// registerBucket adds a new bucket's id to its domain's index, which the
// lease holder reports from. It runs once per bucket per Envoy.
func (p *plugin) registerBucket(domain string, id []byte) {
	key := quotaIndexKey + domain
	for range limits.DefaultMaxRetries {
		idx, cas, err := proxywasm.GetSharedData(key)
		if err == types.ErrorStatusNotFound {
			idx, cas = nil, 0
		} else if err != nil {
			return
		}
		n := 0
		for id2, rest, ok := nextIndexed(idx); ok; id2, rest, ok = nextIndexed(rest) {
			if string(id2) == string(id) {
				return
			}
			n++
		}
		if n >= maxQuotaBuckets {
			if !p.quota.full {
				p.quota.full = true
				proxywasm.LogWarn("shepherd: quota domain " + domain + " has " + strconv.Itoa(maxQuotaBuckets) + " buckets; new ones are not reported and get the failure mode once their wait ends")
			}
			return
		}
		idx = append(idx, byte(len(id)>>8), byte(len(id)))
		idx = append(idx, id...)
		if err := proxywasm.SetSharedData(key, idx, cas); err != types.ErrorStatusCasMismatch {
			return
		}
	}
}

// nextIndexed reads one bucket id of an index.
func nextIndexed(b []byte) (id, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(b[0])<<8 | int(b[1])
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

// quotaTick runs the quota mode's periodic work: the lease, the streams and
// the reports. Every VM calls it; only the lease holder talks to the
// sidecar.
func (p *plugin) quotaTick(now int64) {
	sc := p.policy.cfg.Sidecar
	domains := p.policy.quotaDomains
	if sc == nil || len(domains) == 0 {
		p.closeQuotaStreams()
		return
	}
	period := int64(sc.QuotaReportMs) * 1e6
	if now-p.quota.last < period-quotaSlackMillis*1e6 {
		return
	}
	p.quota.last = now
	lease, cas, err := proxywasm.GetSharedData(quotaLeaseKey)
	if err != nil && err != types.ErrorStatusNotFound {
		return
	}
	if !mesh.Claim(lease, p.sc.owner, now) {
		p.closeQuotaStreams()
		return
	}
	if err := proxywasm.SetSharedData(quotaLeaseKey, mesh.AppendLease(nil, p.sc.owner, now+mesh.LeaseTicks*period), cas); err != nil {
		return // another VM took it first
	}
	p.closeStaleQuotaStreams(domains)
	for _, d := range domains {
		qs := p.quotaStream(d)
		if !qs.open {
			if !p.openQuotaStream(sc, qs) {
				continue
			}
			qs.lastReport = now - period
		}
		p.sendQuotaReport(qs, now)
	}
}

// quotaStream returns the stream state of domain, made on first use.
func (p *plugin) quotaStream(domain string) *quotaStream {
	for _, qs := range p.quota.streams {
		if qs.domain == domain {
			return qs
		}
	}
	qs := &quotaStream{domain: domain}
	p.quota.streams = append(p.quota.streams, qs)
	return qs
}

func (p *plugin) openQuotaStream(sc *config.Sidecar, qs *quotaStream) bool {
	id, err := proxywasm.OpenGrpcStream(sc.Cluster, rlqs.Service, rlqs.Method, sc.Metadata, proxywasm.GrpcCallbacks{
		OnMessage: func(size int) { p.onQuotaResponse(qs, size) },
		OnClose:   func(uint32) { p.onQuotaClose(qs) },
	})
	if err != nil {
		p.sidecarError(callQuota)
		return false
	}
	qs.id, qs.open = id, true
	return true
}

// closeQuotaStreams ends the streams of a VM that no longer holds the lease
// (or whose config has no quota route).
func (p *plugin) closeQuotaStreams() {
	for _, qs := range p.quota.streams {
		if qs.open {
			_ = proxywasm.CancelGrpcCall(qs.id)
			qs.open = false
		}
	}
}

// closeStaleQuotaStreams ends and forgets the streams of domains a new
// config no longer has.
func (p *plugin) closeStaleQuotaStreams(domains []string) {
	kept := p.quota.streams[:0]
	for _, qs := range p.quota.streams {
		live := false
		for _, d := range domains {
			live = live || d == qs.domain
		}
		if live {
			kept = append(kept, qs)
			continue
		}
		if qs.open {
			_ = proxywasm.CancelGrpcCall(qs.id)
			qs.open = false
		}
	}
	clear(p.quota.streams[len(kept):])
	p.quota.streams = kept
}

// sendQuotaReport takes every bucket's usage of qs's domain and sends it.
func (p *plugin) sendQuotaReport(qs *quotaStream, now int64) {
	q := &p.quota
	idx, _, err := proxywasm.GetSharedData(quotaIndexKey + qs.domain)
	if err != nil {
		return // no bucket yet
	}
	elapsed := now - qs.lastReport
	qs.lastReport = now
	q.usages = q.usages[:0]
	q.key = appendRecordPrefix(q.key[:0], qs.domain)
	prefix := len(q.key)
	for id, rest, ok := nextIndexed(idx); ok; id, rest, ok = nextIndexed(rest) {
		q.key = append(q.key[:prefix], id...)
		allowed, denied, ok := p.takeUsage(viewString(q.key))
		if !ok {
			continue
		}
		q.usages = append(q.usages, rlqs.Usage{BucketID: id, Elapsed: elapsed, Allowed: allowed, Denied: denied})
	}
	if len(q.usages) == 0 {
		return
	}
	q.report = rlqs.AppendReports(q.report[:0], qs.domain, q.usages)
	clear(q.usages)
	if err := proxywasm.SendGrpcStreamMessage(qs.id, q.report, false); err != nil {
		p.sidecarError(callQuota)
		_ = proxywasm.CancelGrpcCall(qs.id)
		qs.open = false
	}
}

// takeUsage reads and clears a bucket's usage with compare-and-swap.
func (p *plugin) takeUsage(key string) (allowed, denied uint64, ok bool) {
	for range limits.DefaultMaxRetries {
		v, cas, err := proxywasm.PeekSharedData(key)
		var rec rlqs.Record
		if err != nil || !rec.Decode(v) {
			return 0, 0, false
		}
		allowed, denied = rec.TakeUsage()
		if allowed == 0 && denied == 0 {
			return 0, 0, true
		}
		if proxywasm.SetSharedData(key, rec.Encode(&p.quota.rec), cas) == nil {
			return allowed, denied, true
		}
	}
	return 0, 0, false // reported next time
}

// onQuotaResponse stores the assignments of a RateLimitQuotaResponse.
func (p *plugin) onQuotaResponse(qs *quotaStream, size int) {
	if size > maxQuotaMessage {
		p.sidecarError(callQuota)
		return
	}
	msg, err := proxywasm.GetGrpcCallResponseMessage(0, size)
	q := &p.quota
	if err == nil {
		err = rlqs.ParseResponse(msg, &q.resp)
	}
	if err != nil {
		p.sidecarError(callQuota)
		return
	}
	now := nowNanos()
	wait := quotaWait(p.policy.cfg.Sidecar)
	for i := range q.resp.Actions {
		a := &q.resp.Actions[i]
		q.key = appendRecordPrefix(q.key[:0], qs.domain)
		if q.key, err = rlqs.CanonicalBucketID(q.key, a.BucketID); err != nil {
			continue
		}
		p.applyQuota(viewString(q.key), a, now, wait)
	}
	clear(q.resp.Actions)
}

// applyQuota writes one action into a bucket's record with compare-and-swap.
// Actions for buckets this Envoy has no record of are ignored: a record is
// made (and indexed for the reports) by the bucket's first request.
func (p *plugin) applyQuota(key string, a *rlqs.Action, now, wait int64) {
	for range limits.DefaultMaxRetries {
		v, cas, err := proxywasm.PeekSharedData(key)
		var rec rlqs.Record
		if err != nil || !rec.Decode(v) {
			return
		}
		rec.Apply(a, now, wait)
		if proxywasm.SetSharedData(key, rec.Encode(&p.quota.rec), cas) != types.ErrorStatusCasMismatch {
			return
		}
	}
}

func (p *plugin) onQuotaClose(qs *quotaStream) {
	qs.open = false
	p.sidecarError(callQuota)
}

// viewString is b as a string without a copy, for keys the host reads during
// the call.
func viewString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
