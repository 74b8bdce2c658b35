// Package rlqs serves Envoy's rate limit quota service (RLQS,
// envoy.service.rate_limit_quota.v3.RateLimitQuotaService): clients (Envoy's
// rate_limit_quota filter, or shepherd's filter) report how many requests
// each of their buckets allowed and denied, and the service answers with a
// quota assignment per bucket that the client enforces locally until it
// expires.
//
// Buckets and limits. A bucket is the client's bucket id (a map of string to
// string) in the stream's domain (the domain of its first report). The
// bucket id's entries are the entries of a descriptor of that domain in the
// envoyproxy/ratelimit YAML the rate limit service loads, in the order the
// config nests them (ratelimit.Config.LookupSet): the bucket
// {model: gpt-4o, tier: free} in domain "llm" takes the limit of the
// descriptor key: model value: gpt-4o, and below it key: tier value: free
// (or the other nesting, if that is the one configured). A key-only
// descriptor's limit applies to each value separately, as it does for the
// rate limit service. No limit, unlimited or shadow_mode: allow all.
// requests_per_unit 0: deny all.
//
// Division. The limit of a bucket is divided among the clients that report
// it, in proportion to their demand (allowed plus denied requests per
// second, measured between reports), each live client getting at least
// IdleShare of an equal share, after the shares of clients that went away
// and whose assignment has not expired yet (they may still use it). Each
// client's share is sent as a token bucket that holds Burst of its rate (see
// fillOf and maxTokens) with assignment_time_to_live TTLIntervals times the client's observed
// reporting interval. Every report is answered with the reported buckets'
// assignments (renewing them); a change in another client's share is pushed
// to it at once. A client whose stream ends keeps its share reserved until
// its assignment expires; a client that reports no request in a bucket for
// AbandonAfter is told to abandon it and its share goes to the others.
//
// Replicas. With Options.Share (Redis), the replicas first agree on each
// one's part of a bucket's limit, its claim, from their clients' demand
// (share.go), and each divides its claim among its own clients as above.
package rlqs

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

// ServiceName is the gRPC service this package serves.
var ServiceName = rlqsv3.RateLimitQuotaService_ServiceDesc.ServiceName

// Options configure a Service. Zero values take the defaults named.
type Options struct {
	Clock      func() time.Time      // default time.Now
	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // default: metrics not registered

	MaxStreams          int // open streams; default 10000
	MaxBuckets          int // buckets tracked in all; default 100000
	MaxBucketsPerStream int // buckets one stream may report; default 1000
	MaxBucketIDEntries  int // entries of one bucket id; default 16
	MaxBucketIDBytes    int // bytes of one bucket id's keys and values; default 1024
	MaxDomainBytes      int // default 256
	// MaxReportsPerSecond bounds one stream's reports (bursts of
	// MaxBucketsPerStream, or twice the rate if more, for the reports
	// Envoy sends at once for new buckets); a stream over it is ended with
	// RESOURCE_EXHAUSTED. Default 100.
	MaxReportsPerSecond float64

	// TTLIntervals times a client's reporting interval is the
	// assignment_time_to_live; default 3. The TTL is whole seconds (Envoy
	// reads only the seconds) within [MinTTL, MaxTTL], and DefaultTTL
	// until the client's interval is known.
	TTLIntervals float64
	MinTTL       time.Duration // default 2s
	MaxTTL       time.Duration // default 5m
	DefaultTTL   time.Duration // default 10s
	// MinDemandWindow is the shortest time over which demand is measured;
	// reports closer together add up. Default 500ms.
	MinDemandWindow time.Duration
	// IdleShare is the fraction of an equal share every live client gets
	// at least, so that an idle client can admit a few requests before its
	// report shows demand; default 0.02.
	IdleShare float64
	// Hysteresis: shares are not revised while none would move by more
	// than this fraction of the limit; default 0.02.
	Hysteresis float64
	// Burst is how much of its rate a client's token bucket holds (at least
	// one token, at most one fill); default 500ms.
	Burst time.Duration
	// AbandonAfter: a client that reports no request in a bucket for this
	// long is told to abandon it; default 5m.
	AbandonAfter time.Duration

	// Share, when set, makes the replicas that share it divide each limit
	// together (see Sync); nil divides it among this replica's clients
	// alone (one replica).
	Share Sharer
	// ShareInterval is how often Run publishes this replica's demand and
	// renews its claims; default 1s.
	ShareInterval time.Duration
}

func (o *Options) defaults() {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	setDef(&o.MaxStreams, 10000)
	setDef(&o.MaxBuckets, 100000)
	setDef(&o.MaxBucketsPerStream, 1000)
	setDef(&o.MaxBucketIDEntries, 16)
	setDef(&o.MaxBucketIDBytes, 1024)
	setDef(&o.MaxDomainBytes, 256)
	setDef(&o.MaxReportsPerSecond, 100)
	setDef(&o.TTLIntervals, 3)
	setDef(&o.MinTTL, 2*time.Second)
	setDef(&o.MaxTTL, 5*time.Minute)
	setDef(&o.DefaultTTL, 10*time.Second)
	setDef(&o.MinDemandWindow, 500*time.Millisecond)
	setDef(&o.IdleShare, 0.02)
	setDef(&o.Hysteresis, 0.02)
	setDef(&o.AbandonAfter, 5*time.Minute)
	setDef(&o.Burst, 500*time.Millisecond)
	setDef(&o.ShareInterval, time.Second)
}

func setDef[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Service is the RLQS server. Create it with New; it serves with an empty
// config (every bucket allowed) until SetConfig.
type Service struct {
	rlqsv3.UnimplementedRateLimitQuotaServiceServer
	opts Options
	log  *slog.Logger
	cfg  atomic.Pointer[ratelimit.Config]

	mu      sync.Mutex
	buckets map[string]*bucket
	streams map[*stream]struct{}
	// lingering are ended streams whose shares are held until they expire.
	lingering map[*stream]struct{}
	dirty     []*stream // streams with actions queued since the last flush
	seq       uint64
	taken     uint64 // messages taken for sending (tests settle on it)
	closed    bool
	stop      chan struct{}

	// Sharing among replicas (share.go).
	wantSync  bool          // a bucket waits for its first claim
	syncAll   bool          // the config changed: the next Sync is a full one
	syncNow   chan struct{} // wakes Run for the buckets that wait
	syncMu    sync.Mutex    // one Sync at a time
	syncing   bool          // a Sync is between its collection and its answer
	peers     int           // replicas seen in the last successful Sync
	shareDown bool          // the last Sync failed (logged once per outage)

	m metrics
}

type metrics struct {
	streams      prometheus.Gauge
	buckets      prometheus.Gauge
	refused      *prometheus.CounterVec
	abandons     prometheus.Counter
	shareFailed  prometheus.Counter
	shareBuckets prometheus.Gauge
}

// Refusal reasons counted in shepherd_sidecar_rlqs_usage_refused_total.
const (
	refusedBucketID     = "bucket_id"
	refusedBuckets      = "buckets"
	refusedStreamBucket = "stream_buckets"
	refusedReportRate   = "report_rate"
)

// New returns a Service.
func New(opts Options) *Service {
	opts.defaults()
	s := &Service{opts: opts, log: opts.Logger, buckets: map[string]*bucket{}, streams: map[*stream]struct{}{},
		lingering: map[*stream]struct{}{}, stop: make(chan struct{}), syncNow: make(chan struct{}, 1)}
	s.cfg.Store(ratelimit.EmptyConfig())
	s.m = metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "shepherd_sidecar", Subsystem: "rlqs", Name: "streams",
			Help: "Open RLQS streams (reporting clients)."}),
		buckets: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "shepherd_sidecar", Subsystem: "rlqs", Name: "buckets",
			Help: "RLQS buckets tracked (bucket ids with at least one client)."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "shepherd_sidecar", Subsystem: "rlqs", Name: "usage_refused_total",
			Help: "Bucket usage reports ignored, by reason: bucket_id (malformed or over the size bounds), buckets (the server's bucket bound), stream_buckets (the stream's bucket bound), report_rate (reports of a stream ended for exceeding the report rate)."},
			[]string{"reason"}),
		abandons: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "shepherd_sidecar", Subsystem: "rlqs", Name: "abandoned_total",
			Help: "Buckets a client was told to abandon after reporting no request for the abandon interval."}),
	}
	s.m.shareFailed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "shepherd_sidecar", Subsystem: "rlqs", Name: "share_failures_total",
		Help: "Publications of this replica's demand and claims (to Redis) that failed; the buckets then keep their claims until they lapse, and then take the limit divided by the replicas last seen."})
	s.m.shareBuckets = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "shepherd_sidecar", Subsystem: "rlqs", Name: "share_fallback_buckets",
		Help: "Buckets whose claim lapsed while the replicas could not be reached, dividing the limit by the replicas last seen."})
	for _, r := range []string{refusedBucketID, refusedBuckets, refusedStreamBucket, refusedReportRate} {
		s.m.refused.WithLabelValues(r)
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.m.streams, s.m.buckets, s.m.refused, s.m.abandons)
		if opts.Share != nil {
			opts.Registerer.MustRegister(s.m.shareFailed, s.m.shareBuckets)
		}
	}
	return s
}

// Register adds the service to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) { rlqsv3.RegisterRateLimitQuotaServiceServer(r, s) }

// SetConfig switches to a new rate limit config and revises every bucket's
// assignments at once.
func (s *Service) SetConfig(cfg *ratelimit.Config) {
	if cfg == nil {
		cfg = ratelimit.EmptyConfig()
	}
	s.cfg.Store(cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock()
	for _, b := range s.buckets {
		s.rebalance(b, now, nil)
	}
	s.flush()
	if s.opts.Share != nil {
		// The claims were made for the old limits: publish again now.
		s.syncAll = true
		select {
		case s.syncNow <- struct{}{}:
		default:
		}
	}
}

// Sweep releases the shares of clients whose assignment expired and revises
// the others' (call it every second or so; reports do it for the buckets
// they name).
func (s *Service) Sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock()
	for _, b := range s.buckets {
		for _, sh := range b.clients {
			if sh.sent && !now.Before(sh.expires) {
				s.rebalance(b, now, nil)
				break
			}
		}
	}
	s.flush()
}

// Shutdown ends every stream with UNAVAILABLE (clients reconnect, to another
// replica if there is one, and keep their assignments until they expire)
// and refuses new ones.
func (s *Service) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
}

// stream is one client.
type stream struct {
	seq     uint64
	domain  string
	buckets map[string]*bucket
	last    time.Time // last report
	// allowance is the report rate bound's token bucket, refilled since
	// last.
	allowance float64
	gaps      [8]time.Duration // recent gaps between reports
	ngaps     int
	pending   map[string]*rlqsv3.RateLimitQuotaResponse_BucketAction
	order     []string
	wake      chan struct{}
	gone      bool
}

// interval is the client's reporting interval as observed: the longest of
// the recent gaps between its reports (Envoy also reports a new bucket at
// once, between its periodic reports), or 0 while unknown.
func (st *stream) interval() time.Duration {
	var m time.Duration
	for i := 0; i < st.ngaps && i < len(st.gaps); i++ {
		m = max(m, st.gaps[i])
	}
	return m
}

func (s *Service) ttl(st *stream) time.Duration {
	iv := st.interval()
	if iv <= 0 {
		return s.opts.DefaultTTL
	}
	t := time.Duration(math.Ceil(s.opts.TTLIntervals*iv.Seconds())) * time.Second
	return min(max(t, s.opts.MinTTL.Truncate(time.Second)), s.opts.MaxTTL)
}

// enqueue adds an action for a bucket to the stream's next message; a
// later action for the same bucket replaces an unsent one. flush wakes the
// streams that got one.
func (s *Service) enqueue(st *stream, key string, a *rlqsv3.RateLimitQuotaResponse_BucketAction) {
	if len(st.order) == 0 {
		s.dirty = append(s.dirty, st)
	}
	if _, ok := st.pending[key]; !ok {
		st.order = append(st.order, key)
	}
	st.pending[key] = a
}

func (s *Service) flush() {
	for _, st := range s.dirty {
		select {
		case st.wake <- struct{}{}:
		default:
		}
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
}

// take returns the stream's pending actions as one message, or nil.
func (s *Service) take(st *stream) *rlqsv3.RateLimitQuotaResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(st.order) == 0 {
		return nil
	}
	resp := &rlqsv3.RateLimitQuotaResponse{BucketAction: make([]*rlqsv3.RateLimitQuotaResponse_BucketAction, 0, len(st.order))}
	for _, k := range st.order {
		resp.BucketAction = append(resp.BucketAction, st.pending[k])
		delete(st.pending, k)
	}
	st.order = st.order[:0]
	s.taken++
	return resp
}

// StreamRateLimitQuotas serves one client.
func (s *Service) StreamRateLimitQuotas(srv grpc.BidiStreamingServer[rlqsv3.RateLimitQuotaUsageReports, rlqsv3.RateLimitQuotaResponse]) error {
	st, err := s.open()
	if err != nil {
		return err
	}
	defer s.closeStream(st)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := srv.Recv()
			if err == nil {
				err = s.report(st, m)
			}
			if err != nil {
				recvErr <- err
				return
			}
		}
	}()
	ctx := srv.Context()
	for {
		select {
		case <-st.wake:
			if resp := s.take(st); resp != nil {
				if err := srv.Send(resp); err != nil {
					return err
				}
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-s.stop:
			return status.Error(codes.Unavailable, "rlqs: server shutting down")
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

func (s *Service) open() (*stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "rlqs: server shutting down")
	}
	if len(s.streams) >= s.opts.MaxStreams {
		return nil, status.Errorf(codes.ResourceExhausted, "rlqs: at most %d streams", s.opts.MaxStreams)
	}
	// Ended streams' held shares count against the bound too; past it the
	// oldest are released early rather than refusing a live client.
	for len(s.streams)+len(s.lingering) >= s.opts.MaxStreams {
		var oldest *stream
		for st := range s.lingering {
			if oldest == nil || st.seq < oldest.seq {
				oldest = st
			}
		}
		s.release(oldest)
	}
	s.seq++
	st := &stream{seq: s.seq, buckets: map[string]*bucket{}, pending: map[string]*rlqsv3.RateLimitQuotaResponse_BucketAction{},
		wake: make(chan struct{}, 1)}
	s.streams[st] = struct{}{}
	s.m.streams.Set(float64(len(s.streams)))
	return st, nil
}

// closeStream keeps the stream's shares reserved until their assignments
// expire (the client may go on using them), then they return to the others.
func (s *Service) closeStream(st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.gone = true
	delete(s.streams, st)
	s.m.streams.Set(float64(len(s.streams)))
	now := s.opts.Clock()
	for _, b := range st.buckets {
		if sh := b.clients[st]; sh != nil {
			sh.gone = true
			if !sh.sent {
				delete(b.clients, st)
				delete(st.buckets, b.key)
			}
		}
		s.rebalance(b, now, nil)
	}
	if len(st.buckets) > 0 {
		s.lingering[st] = struct{}{}
	}
	s.flush()
}

// release gives an ended stream's held shares back now.
func (s *Service) release(st *stream) {
	now := s.opts.Clock()
	for key, b := range st.buckets {
		delete(b.clients, st)
		delete(st.buckets, key)
		s.rebalance(b, now, nil)
	}
	delete(s.lingering, st)
}

// report applies one usage report and queues the answer.
func (s *Service) report(st *stream, m *rlqsv3.RateLimitQuotaUsageReports) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.gone {
		// A message read as the stream ended: the client is gone.
		return status.Error(codes.Canceled, "rlqs: stream ended")
	}
	now := s.opts.Clock()
	switch d := m.GetDomain(); {
	case st.domain == "" && d == "":
		return status.Error(codes.InvalidArgument, "rlqs: the first report must name the domain")
	case len(d) > s.opts.MaxDomainBytes:
		return status.Errorf(codes.InvalidArgument, "rlqs: domain longer than %d bytes", s.opts.MaxDomainBytes)
	case st.domain == "":
		st.domain = d
	case d != "" && d != st.domain:
		return status.Error(codes.InvalidArgument, "rlqs: a stream keeps the domain of its first report; open a new stream for another domain")
	}
	burst := max(float64(s.opts.MaxBucketsPerStream), 2*s.opts.MaxReportsPerSecond)
	if st.last.IsZero() {
		st.allowance = burst
	} else if el := now.Sub(st.last).Seconds(); el > 0 {
		st.allowance = min(burst, st.allowance+el*s.opts.MaxReportsPerSecond)
	}
	if st.allowance < 1 {
		s.m.refused.WithLabelValues(refusedReportRate).Add(float64(len(m.GetBucketQuotaUsages())))
		return status.Errorf(codes.ResourceExhausted, "rlqs: more than %g reports a second on one stream", s.opts.MaxReportsPerSecond)
	}
	st.allowance--
	if !st.last.IsZero() {
		if gap := now.Sub(st.last); gap > 0 {
			st.gaps[st.ngaps%len(st.gaps)] = gap
			st.ngaps++
		}
	}
	st.last = now
	ttl := s.ttl(st)
	var touched []*bucket
	for _, u := range m.GetBucketQuotaUsages() {
		key, ok := s.bucketKey(st.domain, u.GetBucketId())
		if !ok {
			s.m.refused.WithLabelValues(refusedBucketID).Inc()
			continue
		}
		b := s.buckets[key]
		if b == nil {
			if len(s.buckets) >= s.opts.MaxBuckets {
				s.m.refused.WithLabelValues(refusedBuckets).Inc()
				continue
			}
			b = &bucket{key: key, domain: st.domain, id: cloneID(u.GetBucketId()), clients: map[*stream]*share{}}
			s.buckets[key] = b
			s.m.buckets.Set(float64(len(s.buckets)))
		}
		sh := b.clients[st]
		if sh == nil {
			if len(st.buckets) >= s.opts.MaxBucketsPerStream {
				s.m.refused.WithLabelValues(refusedStreamBucket).Inc()
				s.dropIfEmpty(b)
				continue
			}
			sh = &share{accSince: now, rate: -1, lastUsed: now}
			b.clients[st] = sh
			st.buckets[key] = b
		}
		s.record(sh, satAdd(u.GetNumRequestsAllowed(), u.GetNumRequestsDenied()), now)
		if now.Sub(sh.lastUsed) >= s.opts.AbandonAfter {
			delete(b.clients, st)
			delete(st.buckets, key)
			s.enqueue(st, key, abandon(b.id))
			s.m.abandons.Inc()
			s.rebalance(b, now, nil)
			continue
		}
		touched = append(touched, b)
	}
	for _, b := range touched {
		s.rebalance(b, now, st)
		if sh := b.clients[st]; sh != nil && !s.waiting(b) {
			// Every reported bucket gets its assignment back, renewed.
			sh.sent, sh.expires = true, now.Add(ttl)
			s.enqueue(st, b.key, action(b.id, sh.cur, ttl, s.opts.Burst))
		}
	}
	s.flush()
	if s.wantSync {
		s.wantSync = false
		select {
		case s.syncNow <- struct{}{}:
		default:
		}
	}
	return nil
}

// rebalance divides the bucket again and queues the changed assignments,
// except the reporter's (the caller answers it). A bucket left with no
// client is dropped.
func (s *Service) rebalance(b *bucket, now time.Time, reporter *stream) {
	cfg := s.cfg.Load()
	force := false
	if b.cfg != cfg {
		b.cfg, b.limit = cfg, cfg.LookupSet(b.domain, b.id.GetBucket())
		force = true
	}
	for _, st := range s.divide(b, now, force) {
		if st == reporter || st.gone {
			continue
		}
		sh := b.clients[st]
		ttl := s.ttl(st)
		sh.sent, sh.expires = true, now.Add(ttl)
		s.enqueue(st, b.key, action(b.id, sh.cur, ttl, s.opts.Burst))
	}
	s.dropIfEmpty(b)
}

func (s *Service) dropIfEmpty(b *bucket) {
	if len(b.clients) == 0 {
		delete(s.buckets, b.key)
		s.m.buckets.Set(float64(len(s.buckets)))
	}
}

// bucketKey is the bucket's identity: the domain and the id's entries in
// key order, each length-prefixed so no two ids share a key. It rejects an
// empty or oversized id.
func (s *Service) bucketKey(domain string, id *rlqsv3.BucketId) (string, bool) {
	m := id.GetBucket()
	if len(m) == 0 || len(m) > s.opts.MaxBucketIDEntries {
		return "", false
	}
	keys := make([]string, 0, len(m))
	size := 0
	for k, v := range m {
		if k == "" {
			return "", false
		}
		size += len(k) + len(v)
		keys = append(keys, k)
	}
	if size > s.opts.MaxBucketIDBytes {
		return "", false
	}
	sort.Strings(keys)
	var b strings.Builder
	b.Grow(len(domain) + size + 8*len(keys) + 4)
	writeLP(&b, domain)
	for _, k := range keys {
		writeLP(&b, k)
		writeLP(&b, m[k])
	}
	return b.String(), true
}

func writeLP(b *strings.Builder, s string) {
	n := len(s)
	b.WriteByte(byte(n >> 24))
	b.WriteByte(byte(n >> 16))
	b.WriteByte(byte(n >> 8))
	b.WriteByte(byte(n))
	b.WriteString(s)
}

func cloneID(id *rlqsv3.BucketId) *rlqsv3.BucketId {
	m := make(map[string]string, len(id.GetBucket()))
	for k, v := range id.GetBucket() {
		m[k] = v
	}
	return &rlqsv3.BucketId{Bucket: m}
}
