package rlqs

import (
	"math"
	"sort"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

// kind is what an assignment tells the client to do.
type kind uint8

const (
	allowAll kind = iota // no limit applies (or shadow mode)
	denyAll              // the limit is zero, or the client's share is
	tokens               // a token bucket of the client's share
)

// assignment is one client's quota for one bucket: for tokens, perPeriod
// tokens every period of the limit, sent as a token bucket of tokensPerFill
// every fill (see fillOf).
type assignment struct {
	kind      kind
	perPeriod uint64
	period    int64 // seconds
}

// bucket is one bucket id of one domain, shared by every client that
// reports it.
type bucket struct {
	key     string
	domain  string
	id      *rlqsv3.BucketId // as first reported; sent back in every action
	cfg     *ratelimit.Config
	limit   *ratelimit.Limit
	clients map[*stream]*share

	// With Options.Share (several replicas): this replica's part of the
	// limit (requests per unit) that its clients' shares divide, once
	// claimed; until then the bucket's clients get no assignment.
	claim   uint64
	claimed bool
	// until is when this replica's published claim stops counting for the
	// other replicas (a failed publication keeps the claim until then);
	// peers is how many replicas shared the bucket at the last publication.
	until    time.Time
	peers    int
	fallback bool // the claim lapsed unpublished: limit / peers
}

// limited reports whether the bucket's limit is a token bucket to divide
// (not allow all or deny all).
func (b *bucket) limited() bool {
	l := b.limit
	return l != nil && !l.Unlimited && !l.ShadowMode && l.RequestsPerUnit > 0
}

// waiting reports whether the bucket's clients wait for this replica's
// claim before they get an assignment.
func (s *Service) waiting(b *bucket) bool {
	return s.opts.Share != nil && b.limited() && !b.claimed
}

// share is one client's (stream's) part of a bucket.
type share struct {
	// Demand: requests reported (allowed+denied) since accSince; rate is
	// the demand in requests per second over the last closed window, or
	// negative while unknown.
	acc      uint64
	accSince time.Time
	rate     float64
	lastUsed time.Time // last report with a request in it

	cur     assignment
	sent    bool      // cur has been queued to the client at least once
	expires time.Time // when the client's copy of cur expires
	gone    bool      // the stream ended; the share is held until expires
}

// weight is a client's claim on the limit for division.
func (sh *share) weight(mean, floor float64) float64 {
	d := sh.rate
	if d < 0 {
		d = mean
	}
	return max(d, floor)
}

// satAdd adds without wrapping.
func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// record adds one usage report to the share's demand.
func (s *Service) record(sh *share, n uint64, now time.Time) {
	sh.acc = satAdd(sh.acc, n)
	if n > 0 {
		sh.lastUsed = now
	}
	if el := now.Sub(sh.accSince); el >= s.opts.MinDemandWindow {
		sh.rate = float64(sh.acc) / el.Seconds()
		sh.acc, sh.accSince = 0, now
	}
}

// divide sets every client's assignment for the bucket's limit and returns
// the clients whose assignment changed. It drops the clients whose
// assignment has expired (a gone stream's, or a silent client's).
//
// The limit (requests_per_unit per unit) is divided among the live clients
// in proportion to their demand, each at least floor (IdleShare of an equal
// share), after the shares still held by clients that went away and whose
// assignment has not expired yet. Shares are whole requests per unit
// (largest remainder), so they sum to the limit exactly. When the
// membership is unchanged and no share would move by more than Hysteresis
// of the limit, the current assignments stay: every change makes Envoy
// start a fresh, full token bucket.
func (s *Service) divide(b *bucket, now time.Time, force bool) []*stream {
	changed := force
	for st, sh := range b.clients {
		if sh.sent && !now.Before(sh.expires) {
			delete(b.clients, st)
			delete(st.buckets, b.key)
			if st.gone && len(st.buckets) == 0 {
				delete(s.lingering, st)
			}
			changed = true
		}
	}
	var live []*stream
	var held uint64
	for st, sh := range b.clients {
		if sh.gone {
			held = satAdd(held, sh.cur.perPeriod)
			continue
		}
		live = append(live, st)
		if !sh.sent {
			changed = true
		}
	}
	if len(live) == 0 {
		return nil
	}
	sort.Slice(live, func(i, j int) bool { return live[i].seq < live[j].seq })

	l := b.limit
	next := make([]assignment, len(live))
	switch {
	case l == nil || l.Unlimited || l.ShadowMode:
		for i := range next {
			next[i] = assignment{kind: allowAll}
		}
	case l.RequestsPerUnit == 0:
		for i := range next {
			next[i] = assignment{kind: denyAll}
		}
	case s.waiting(b):
		// The replica's part of the limit is not known yet: no assignment
		// (the client keeps its no_assignment_behavior) until Sync.
		s.wantSync = true
		return nil
	default:
		total := uint64(l.RequestsPerUnit)
		if s.opts.Share != nil {
			total = min(total, b.claim)
		}
		if held >= total {
			total = 0
		} else {
			total -= held
		}
		shares := s.apportion(b, live, total, float64(l.RequestsPerUnit)/float64(l.Period()))
		for i, n := range shares {
			next[i] = assignment{kind: tokens, perPeriod: n, period: l.Period()}
			if n == 0 {
				next[i] = assignment{kind: denyAll}
			}
		}
		if !changed && s.within(b, live, next, uint64(l.RequestsPerUnit), total) {
			return nil
		}
	}
	var out []*stream
	for i, st := range live {
		sh := b.clients[st]
		if !sh.sent || sh.cur != next[i] {
			sh.cur = next[i]
			out = append(out, st)
		}
	}
	return out
}

// apportion divides total requests per period among the live clients by
// weight, in whole requests, by largest remainder.
func (s *Service) apportion(b *bucket, live []*stream, total uint64, perSecond float64) []uint64 {
	w := s.weights(b, live, perSecond)
	var sum float64
	for _, x := range w {
		sum += x
	}
	out := make([]uint64, len(live))
	type rem struct {
		i int
		r float64
	}
	rems := make([]rem, len(live))
	var given uint64
	for i := range live {
		exact := float64(total) * w[i] / sum
		out[i] = uint64(exact)
		given += out[i]
		rems[i] = rem{i, exact - float64(out[i])}
	}
	sort.SliceStable(rems, func(a, c int) bool { return rems[a].r > rems[c].r })
	for k := 0; given < total && k < len(rems); k++ {
		out[rems[k].i]++
		given++
	}
	return out
}

// weights are the live clients' claims on a bucket's limit of perSecond
// requests a second: their demand (the mean of the known ones while a
// client's is unknown, perSecond shared equally while none is known), at
// least IdleShare of an equal share.
func (s *Service) weights(b *bucket, live []*stream, perSecond float64) []float64 {
	var known float64
	nKnown := 0
	for _, st := range live {
		if r := b.clients[st].rate; r >= 0 {
			known += r
			nKnown++
		}
	}
	mean := perSecond / float64(len(live))
	if nKnown > 0 && known > 0 {
		mean = known / float64(nKnown)
	}
	floor := s.opts.IdleShare * perSecond / float64(len(live))
	w := make([]float64, len(live))
	for i, st := range live {
		w[i] = b.clients[st].weight(mean, floor)
	}
	return w
}

// within reports whether every live client already holds a token
// assignment within Hysteresis of the limit of its next one, and the
// current assignments together stay within total (what the live clients
// may share: the limit, or this replica's claim, less the held shares).
func (s *Service) within(b *bucket, live []*stream, next []assignment, limit, total uint64) bool {
	tol := uint64(s.opts.Hysteresis * float64(limit))
	var sum uint64
	for i, st := range live {
		cur := b.clients[st].cur
		if cur.kind != next[i].kind || cur.period != next[i].period {
			return false
		}
		d := max(cur.perPeriod, next[i].perPeriod) - min(cur.perPeriod, next[i].perPeriod)
		if d > tol {
			return false
		}
		sum = satAdd(sum, cur.perPeriod)
	}
	return sum <= total
}

// perSecondAbove is the share, in requests per unit, from which a token
// assignment is given as a whole number of tokens every second: the
// rounding then costs at most 2% of the share, and the bucket holds one
// second of it.
const perSecondAbove = 50

// fillOf turns a share of perPeriod requests every period seconds into a
// token bucket's refill: tokensPerFill every fill seconds. Envoy reads fill_interval in whole seconds
// (source/extensions/filters/http/rate_limit_quota/global_client_impl.cc,
// createTokenBucketFromAction), so fill is at least one second. A share of
// at least perSecondAbove per second is rounded down to whole tokens a
// second; a smaller one is kept exact with the shortest whole-second fill
// that holds an integer number of tokens (period/gcd).
func fillOf(perPeriod uint64, period int64) (tokensPerFill uint32, fill int64) {
	p := uint64(period)
	if perPeriod >= perSecondAbove*p {
		return uint32(min(perPeriod/p, math.MaxUint32)), 1
	}
	g := gcd(perPeriod, p)
	return uint32(perPeriod / g), int64(p / g)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// maxTokens is the size of the token bucket of tokensPerFill every fill
// seconds: burst worth of its rate, at least one token and at most one fill.
// Envoy starts every new or changed token bucket full
// (source/common/common/token_bucket_impl.cc, AtomicTokenBucketImpl), so
// each assignment that changes can admit up to this much beyond the rate;
// a bucket of one fill would make that a whole second of the share or more.
// Envoy and shepherd's filter refill continuously (rate = tokens_per_fill /
// fill_interval), so a bucket smaller than one fill loses nothing of the
// rate.
func maxTokens(tokensPerFill uint32, fill int64, burst time.Duration) uint32 {
	m := math.Ceil(float64(tokensPerFill) * burst.Seconds() / float64(fill))
	return uint32(max(1, min(m, float64(tokensPerFill))))
}

// action is the bucket action that sends a to the client, valid for ttl.
func action(id *rlqsv3.BucketId, a assignment, ttl, burst time.Duration) *rlqsv3.RateLimitQuotaResponse_BucketAction {
	strategy := &typev3.RateLimitStrategy{}
	switch a.kind {
	case allowAll:
		strategy.Strategy = &typev3.RateLimitStrategy_BlanketRule_{BlanketRule: typev3.RateLimitStrategy_ALLOW_ALL}
	case denyAll:
		strategy.Strategy = &typev3.RateLimitStrategy_BlanketRule_{BlanketRule: typev3.RateLimitStrategy_DENY_ALL}
	case tokens:
		n, fill := fillOf(a.perPeriod, a.period)
		strategy.Strategy = &typev3.RateLimitStrategy_TokenBucket{TokenBucket: &typev3.TokenBucket{
			MaxTokens:     maxTokens(n, fill, burst),
			TokensPerFill: wrapperspb.UInt32(n),
			FillInterval:  durationpb.New(time.Duration(fill) * time.Second),
		}}
	}
	return &rlqsv3.RateLimitQuotaResponse_BucketAction{
		BucketId: id,
		BucketAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction_{
			QuotaAssignmentAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction{
				AssignmentTimeToLive: durationpb.New(ttl),
				RateLimitStrategy:    strategy,
			},
		},
	}
}

// abandon is the action that makes the client forget the bucket.
func abandon(id *rlqsv3.BucketId) *rlqsv3.RateLimitQuotaResponse_BucketAction {
	return &rlqsv3.RateLimitQuotaResponse_BucketAction{
		BucketId: id,
		BucketAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_AbandonAction_{
			AbandonAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_AbandonAction{},
		},
	}
}
