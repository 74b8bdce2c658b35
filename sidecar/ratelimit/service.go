// Package ratelimit is the sidecar's implementation of Envoy's rate limit
// service (envoy.service.ratelimit.v3.RateLimitService), configured with the
// YAML format of envoyproxy/ratelimit and counting in a store.Store.
//
// Counting uses fixed windows aligned to the unix epoch, as
// envoyproxy/ratelimit does: every hit, accepted or not, adds to its
// window's counter, and a descriptor is over its limit when the counter
// after the addition exceeds requests_per_unit. See docs/RATELIMIT.md.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// FailureMode says how the service answers when the counter store fails.
type FailureMode int

const (
	// FailError answers with gRPC UNAVAILABLE, so that Envoy's own
	// failure_mode_deny setting decides (the default).
	FailError FailureMode = iota
	// FailOpen answers OK for every descriptor.
	FailOpen
	// FailClosed answers OVER_LIMIT for every descriptor that has a limit.
	FailClosed
)

// String returns "error", "open" or "closed".
func (m FailureMode) String() string {
	switch m {
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return "error"
}

// ParseFailureMode reads "error", "open" or "closed" (the String forms), as
// a flag or config value would give them.
func ParseFailureMode(s string) (FailureMode, error) {
	switch s {
	case "error", "":
		return FailError, nil
	case "open":
		return FailOpen, nil
	case "closed":
		return FailClosed, nil
	}
	return FailError, fmt.Errorf("unknown failure mode %q (error, open or closed)", s)
}

// HeaderNames are the response headers the service asks Envoy to add, in
// the style of envoyproxy/ratelimit (whose defaults they share).
type HeaderNames struct {
	Limit     string // default "RateLimit-Limit"
	Remaining string // default "RateLimit-Remaining"
	Reset     string // default "RateLimit-Reset" (seconds until the window resets)
}

// Options configure a Service. Every field is optional.
type Options struct {
	// Registerer receives the service's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Clock gives the time that places hits in windows (default time.Now).
	Clock func() time.Time
	// Logger receives store errors (rate limited to one a second); nil
	// discards them.
	Logger *slog.Logger
	// FailureMode is the answer when the store fails (default FailError).
	FailureMode FailureMode
	// StoreTimeout bounds each store round trip; 0 leaves only the
	// request's own deadline.
	StoreTimeout time.Duration
	// Headers names the response headers; empty names take the defaults.
	Headers HeaderNames
	// DisableHeaders turns the response headers off.
	DisableHeaders bool
	// MaxDetailedKeys caps the distinct descriptor labels of detailed
	// metrics (default 1000).
	MaxDetailedKeys int
}

// Service answers ShouldRateLimit. It is safe for concurrent use; its
// config can be replaced at any time with SetConfig.
type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer

	store   store.Store
	clock   func() time.Time
	log     *slog.Logger
	fail    FailureMode
	timeout time.Duration
	headers HeaderNames
	noHdrs  bool
	metrics *metrics
	snap    atomic.Pointer[snapshot]
	lastLog atomic.Int64
	pool    sync.Pool
}

// snapshot is a config with its metric counters resolved.
type snapshot struct {
	cfg     *Config
	domains map[string]*codeCounters
	unknown *codeCounters
	limits  []*codeCounters // by Limit.id
}

var _ rlsv3.RateLimitServiceServer = (*Service)(nil)

// NewService returns a service that applies cfg (nil means the empty config)
// and counts in st. It panics if opts.Registerer already holds a different
// metric under one of the service's metric names.
func NewService(cfg *Config, st store.Store, opts Options) *Service {
	s := &Service{
		store:   st,
		clock:   opts.Clock,
		log:     opts.Logger,
		fail:    opts.FailureMode,
		timeout: opts.StoreTimeout,
		headers: opts.Headers,
		noHdrs:  opts.DisableHeaders,
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.headers.Limit == "" {
		s.headers.Limit = "RateLimit-Limit"
	}
	if s.headers.Remaining == "" {
		s.headers.Remaining = "RateLimit-Remaining"
	}
	if s.headers.Reset == "" {
		s.headers.Reset = "RateLimit-Reset"
	}
	if opts.MaxDetailedKeys <= 0 {
		opts.MaxDetailedKeys = 1000
	}
	s.metrics = newMetrics(opts.Registerer, opts.MaxDetailedKeys)
	s.pool.New = func() any { return new(scratch) }
	s.SetConfig(cfg)
	return s
}

// SetConfig replaces the config atomically: requests already running finish
// under the old one. nil means the empty config.
func (s *Service) SetConfig(cfg *Config) {
	if cfg == nil {
		cfg = EmptyConfig()
	}
	sn := &snapshot{
		cfg:     cfg,
		domains: make(map[string]*codeCounters, len(cfg.domains)),
		unknown: s.metrics.codes(s.metrics.decisions, unknownDomain),
		limits:  make([]*codeCounters, len(cfg.limits)),
	}
	for name := range cfg.domains {
		sn.domains[name] = s.metrics.codes(s.metrics.decisions, name)
	}
	for i, l := range cfg.limits {
		sn.limits[i] = s.metrics.codes(s.metrics.limitDecisions, l.FullKey)
	}
	s.snap.Store(sn)
}

// Config returns the config in force.
func (s *Service) Config() *Config { return s.snap.Load().cfg }

// Register adds the service to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	rlsv3.RegisterRateLimitServiceServer(r, s)
}

// scratch is per-request working memory, reused through a pool.
type scratch struct {
	limits []*Limit
	shared []uint64 // per descriptor: entries counted under a shared wildcard
	hits   []store.Hit
	hitIdx []int
	ends   []int
	key    []byte
}

// Bounds of one ShouldRateLimit request. Whatever the caller sends becomes
// counter keys (in memory or in Redis) and metric labels, so its size is
// bounded before anything is looked up or counted; a request beyond them is
// refused with INVALID_ARGUMENT and counts nothing.
const (
	// MaxDescriptors is the most descriptors one request may carry.
	MaxDescriptors = 64
	// MaxEntries is the most entries one descriptor may carry.
	MaxEntries = 32
	// MaxDomainBytes, MaxKeyBytes and MaxValueBytes bound the domain and
	// each entry's key and value.
	MaxDomainBytes = 256
	MaxKeyBytes    = 256
	MaxValueBytes  = 1024
	// MaxHitsAddend is the largest hits_addend a descriptor may carry: the
	// largest requests_per_unit (a uint32), so one such hit is over every
	// limit and a larger one means nothing more. It is store.MaxHits.
	MaxHitsAddend = store.MaxHits
)

// checkRequest refuses a request beyond the bounds above, naming what is
// wrong but never echoing a key or value (they may carry anything).
func checkRequest(req *rlsv3.RateLimitRequest) error {
	if req.GetDomain() == "" {
		return status.Error(codes.InvalidArgument, "rate limit domain must not be empty")
	}
	if n := len(req.GetDomain()); n > MaxDomainBytes {
		return status.Errorf(codes.InvalidArgument, "rate limit domain is %d bytes, more than %d", n, MaxDomainBytes)
	}
	descs := req.GetDescriptors()
	if len(descs) == 0 {
		return status.Error(codes.InvalidArgument, "rate limit descriptor list must not be empty")
	}
	if len(descs) > MaxDescriptors {
		return status.Errorf(codes.InvalidArgument, "rate limit request has %d descriptors, more than %d", len(descs), MaxDescriptors)
	}
	for i, d := range descs {
		es := d.GetEntries()
		if len(es) > MaxEntries {
			return status.Errorf(codes.InvalidArgument, "descriptor %d has %d entries, more than %d", i, len(es), MaxEntries)
		}
		for j, e := range es {
			if n := len(e.GetKey()); n > MaxKeyBytes {
				return status.Errorf(codes.InvalidArgument, "descriptor %d entry %d: key is %d bytes, more than %d", i, j, n, MaxKeyBytes)
			}
			if n := len(e.GetValue()); n > MaxValueBytes {
				return status.Errorf(codes.InvalidArgument, "descriptor %d entry %d: value is %d bytes, more than %d", i, j, n, MaxValueBytes)
			}
		}
		if h := d.GetHitsAddend(); h != nil && h.GetValue() > MaxHitsAddend {
			return status.Errorf(codes.InvalidArgument, "descriptor %d: hits_addend %d is more than %d", i, h.GetValue(), uint64(MaxHitsAddend))
		}
	}
	return nil
}

// ShouldRateLimit implements rlsv3.RateLimitServiceServer.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := checkRequest(req); err != nil {
		s.metrics.invalid.Inc()
		return nil, err
	}
	descs := req.GetDescriptors()
	sn := s.snap.Load()
	cfg := sn.cfg
	dom := cfg.domains[req.Domain]
	domCounters := sn.domains[req.Domain]
	if domCounters == nil {
		domCounters = sn.unknown
	}
	now := s.clock().Unix()

	sc := s.pool.Get().(*scratch)
	defer s.putScratch(sc)

	// Find each descriptor's limit.
	sc.limits = grow(sc.limits, len(descs))
	sc.shared = grow(sc.shared, len(descs))
	var replacing map[string]bool
	for i, d := range descs {
		// A domain that is not configured has no limits, not even a
		// descriptor's own override, as in envoyproxy/ratelimit
		// (config_impl.go GetLimit looks the domain up first).
		var l *Limit
		var shared uint64
		if dom != nil {
			if o := d.GetLimit(); o != nil {
				l = overrideLimit(o)
			} else {
				l, shared = dom.lookup(d.GetEntries())
			}
		}
		sc.limits[i], sc.shared[i] = l, shared
		if cfg.hasReplaces && l != nil {
			for _, r := range l.Replaces {
				if replacing == nil {
					replacing = map[string]bool{}
				}
				replacing[r] = true
			}
		}
	}
	if replacing != nil {
		for i, l := range sc.limits {
			if l != nil && l.Name != "" && replacing[l.Name] {
				sc.limits[i] = nil
			}
		}
	}

	// Build one store hit per limited descriptor.
	sc.hits, sc.hitIdx, sc.ends, sc.key = sc.hits[:0], sc.hitIdx[:0], sc.ends[:0], sc.key[:0]
	for i, l := range sc.limits {
		if l == nil || l.Unlimited {
			continue
		}
		if sc.shared[i] != 0 {
			sc.key = appendSharedKey(sc.key, dom, req.Domain, descs[i].GetEntries(), sc.shared[i], l.period)
		} else {
			sc.key = appendKey(sc.key, req.Domain, descs[i].GetEntries(), l.period)
		}
		sc.ends = append(sc.ends, len(sc.key))
		sc.hitIdx = append(sc.hitIdx, i)
		start := now - floorMod(now, l.period)
		sc.hits = append(sc.hits, store.Hit{
			Hits:   hitsAddend(req, descs[i]),
			Window: store.Window{Start: start, Seconds: l.period},
		})
	}
	begin := 0
	for j := range sc.hits {
		sc.hits[j].Key = sc.key[begin:sc.ends[j]:sc.ends[j]]
		begin = sc.ends[j]
	}

	var results []store.Result
	if len(sc.hits) > 0 {
		var err error
		results, err = s.apply(ctx, sc.hits)
		if err != nil {
			return s.failed(descs, sc.limits, domCounters)
		}
	}

	blk := newResponse(len(descs), len(results))
	resp, statuses, durations := &blk.resp, blk.statuses, blk.durations
	resp.OverallCode = rlsv3.RateLimitResponse_OK
	for i := range descs {
		statuses[i].Code = rlsv3.RateLimitResponse_OK
		if l := sc.limits[i]; l != nil && l.Unlimited {
			statuses[i].LimitRemaining = math.MaxUint32
		}
	}
	shadowed := false
	headerIdx := -1
	minRemaining := uint32(math.MaxUint32)
	// Quotas (quota_mode) make the request OVER_LIMIT only when every
	// quota of the request is over, as in envoyproxy/ratelimit
	// (service/ratelimit.go shouldRateLimitWorker); each over quota's own
	// status is still OVER_LIMIT.
	quotas, quotasOver := 0, 0
	for j, r := range results {
		i := sc.hitIdx[j]
		l := sc.limits[i]
		st := &statuses[i]
		st.CurrentLimit = l.proto
		durations[j].Seconds = r.Reset - now
		st.DurationUntilReset = &durations[j]
		limit := uint64(l.RequestsPerUnit)
		over := r.Count > limit
		if over {
			st.LimitRemaining = 0
		} else {
			st.LimitRemaining = uint32(limit - r.Count)
		}
		if st.LimitRemaining < minRemaining {
			minRemaining, headerIdx = st.LimitRemaining, i
		}
		if l.QuotaMode {
			quotas++
		}
		code := codeOK
		switch {
		case over && l.ShadowMode:
			code = codeShadow
			shadowed = true
		case over && l.QuotaMode:
			code = codeOverLimit
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			quotasOver++
		case over:
			code = codeOverLimit
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
			minRemaining, headerIdx = 0, i
		}
		s.countLimit(sn, l, dom, req.Domain, descs[i].GetEntries(), sc.shared[i], code)
	}
	if quotas > 0 && quotas == quotasOver {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	switch {
	case resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT:
		domCounters.over.Inc()
	case shadowed:
		domCounters.shadow.Inc()
	default:
		domCounters.ok.Inc()
	}
	if !s.noHdrs && headerIdx >= 0 {
		s.setHeaders(blk, &statuses[headerIdx], sc.limits[headerIdx])
	}
	return resp, nil
}

// maxPooledKeyBytes keeps the scratch of an unusually large request out of
// the pool, so that one such request does not pin its memory.
const maxPooledKeyBytes = 16 << 10

func (s *Service) putScratch(sc *scratch) {
	if cap(sc.key) > maxPooledKeyBytes || cap(sc.limits) > 1024 {
		return
	}
	clear(sc.limits)
	clear(sc.shared)
	clear(sc.hits)
	s.pool.Put(sc)
}

// apply runs one store round trip, timed and bounded by StoreTimeout.
func (s *Service) apply(ctx context.Context, hits []store.Hit) ([]store.Result, error) {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	t0 := time.Now()
	res, err := s.store.Apply(ctx, hits)
	s.metrics.storeSeconds.Observe(time.Since(t0).Seconds())
	if err == nil && len(res) != len(hits) {
		err = errShortResult
	}
	if err != nil {
		s.metrics.storeErrors.Inc()
		if last := s.lastLog.Load(); t0.UnixNano()-last >= int64(time.Second) && s.lastLog.CompareAndSwap(last, t0.UnixNano()) {
			s.log.Error("rate limit store failed", "error", err, "failure_mode", s.fail.String())
		}
		return nil, err
	}
	return res, nil
}

var errShortResult = status.Error(codes.Internal, "rate limit store returned too few results")

// failed answers a request whose store round trip failed, per FailureMode.
func (s *Service) failed(descs []*commonrl.RateLimitDescriptor, limits []*Limit, dc *codeCounters) (*rlsv3.RateLimitResponse, error) {
	switch s.fail {
	case FailOpen:
		resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
		for range descs {
			resp.Statuses = append(resp.Statuses, &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK})
		}
		dc.ok.Inc()
		return resp, nil
	case FailClosed:
		resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
		for i := range descs {
			st := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
			if l := limits[i]; l != nil && !l.Unlimited {
				st.CurrentLimit = l.proto
				if !l.ShadowMode {
					st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
					resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
				}
			}
			resp.Statuses = append(resp.Statuses, st)
		}
		if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
			dc.over.Inc()
		} else {
			dc.ok.Inc()
		}
		return resp, nil
	}
	return nil, status.Error(codes.Unavailable, "rate limit store unavailable")
}

func (s *Service) countLimit(sn *snapshot, l *Limit, dom *domain, domainName string, entries []*commonrl.RateLimitDescriptor_Entry, shared uint64, code string) {
	if l.id >= 0 && l.id < len(sn.limits) && sn.cfg.limits[l.id] == l {
		c := sn.limits[l.id]
		switch code {
		case codeOK:
			c.ok.Inc()
		case codeOverLimit:
			c.over.Inc()
		default:
			c.shadow.Inc()
		}
	}
	if l.DetailedMetric {
		label := s.metrics.detailedLabel(detailedKey(dom, domainName, entries, shared))
		s.metrics.detailed.WithLabelValues(label, code).Inc()
	}
}

// headerValues builds the response headers from the status chosen as
// envoyproxy/ratelimit does: the last over-limit descriptor, else the one
// with the least remaining.
func (s *Service) setHeaders(blk *responseBlock, st *rlsv3.RateLimitResponse_DescriptorStatus, l *Limit) {
	hv := &blk.headers
	hv[0].Key, hv[0].Value = s.headers.Limit, l.limitHeader
	hv[1].Key, hv[1].Value = s.headers.Remaining, strconv.FormatUint(uint64(st.LimitRemaining), 10)
	hv[2].Key, hv[2].Value = s.headers.Reset, strconv.FormatInt(st.DurationUntilReset.GetSeconds(), 10)
	blk.headerPtrs = [3]*corev3.HeaderValue{&hv[0], &hv[1], &hv[2]}
	blk.resp.ResponseHeadersToAdd = blk.headerPtrs[:]
}

// smallResponse is the number of descriptors whose response fits in one
// responseBlock allocation; Envoy's rate limit actions usually send one or two.
const smallResponse = 4

// responseBlock holds a whole response in one allocation: the message, its
// statuses, their reset durations and the headers.
type responseBlock struct {
	resp        rlsv3.RateLimitResponse
	statuses    []rlsv3.RateLimitResponse_DescriptorStatus
	durations   []durationpb.Duration
	statusArr   [smallResponse]rlsv3.RateLimitResponse_DescriptorStatus
	statusPtrs  [smallResponse]*rlsv3.RateLimitResponse_DescriptorStatus
	durationArr [smallResponse]durationpb.Duration
	headers     [3]corev3.HeaderValue
	headerPtrs  [3]*corev3.HeaderValue
}

// newResponse returns a response with n statuses (linked into resp) and
// room for d durations.
func newResponse(n, d int) *responseBlock {
	blk := &responseBlock{}
	if n <= smallResponse {
		blk.statuses = blk.statusArr[:n]
		blk.resp.Statuses = blk.statusPtrs[:n]
		blk.durations = blk.durationArr[:d]
	} else {
		blk.statuses = make([]rlsv3.RateLimitResponse_DescriptorStatus, n)
		blk.resp.Statuses = make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
		blk.durations = make([]durationpb.Duration, d)
	}
	for i := range blk.statuses {
		blk.resp.Statuses[i] = &blk.statuses[i]
	}
	return blk
}

// overrideLimit turns a descriptor's own limit (set in Envoy's route
// config) into a Limit, as envoyproxy/ratelimit does. An override with an
// unknown unit has no window and leaves the descriptor without a limit.
func overrideLimit(o *commonrl.RateLimitDescriptor_RateLimitOverride) *Limit {
	u := rlsv3.RateLimitResponse_RateLimit_Unit(o.GetUnit())
	p := unitPeriod(u)
	if p == 0 {
		return nil
	}
	return &Limit{
		FullKey:         "",
		Unit:            u,
		RequestsPerUnit: o.GetRequestsPerUnit(),
		id:              -1,
		period:          p,
		limitHeader:     strconv.FormatUint(uint64(o.GetRequestsPerUnit()), 10),
		proto:           &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: o.GetRequestsPerUnit(), Unit: u},
	}
}

// hitsAddend returns the hits a descriptor adds: its own hits_addend when
// set (zero allowed: check without counting), else the request's, else 1.
func hitsAddend(req *rlsv3.RateLimitRequest, d *commonrl.RateLimitDescriptor) uint64 {
	if h := d.GetHitsAddend(); h != nil {
		return h.GetValue()
	}
	if n := req.GetHitsAddend(); n > 0 {
		return uint64(n)
	}
	return 1
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
