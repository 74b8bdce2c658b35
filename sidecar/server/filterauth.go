package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// FilterTokenMetadata is the gRPC metadata key of the filter token (the
// filter's sidecar.token; filter/config.FilterTokenMetadata).
const FilterTokenMetadata = "x-shepherd-filter-token"

// Filter tokens: at most two are valid at once (the current one and, during
// a rotation, the previous one), each at least minFilterTokenLen long.
const (
	maxFilterTokens   = 2
	minFilterTokenLen = 16
)

// filterAuth tells shepherd's filter from any other caller: the filter sends
// a token only the proxy holds as gRPC metadata, and the sidecar keeps the
// SHA-256 digests of the accepted tokens. Comparing digests of equal length
// with subtle.ConstantTimeCompare, against every accepted token without an
// early exit, keeps the comparison's time independent of the token's content.
type filterAuth struct {
	digests atomic.Pointer[[][sha256.Size]byte] // nil or empty: no token configured
	refused *prometheus.CounterVec              // by method
	log     *slog.Logger
	clock   func() time.Time
	logged  sync.Map // method -> *atomic.Int64, Unix ns of the last refusal logged
}

// filterAuthMethods are the method labels of the refusal counter.
var filterAuthMethods = []string{"GetPolicy", "WatchPolicy", "ReportOutcomes", "ShouldRateLimit", "StreamRateLimitQuotas"}

func newFilterAuth(reg prometheus.Registerer, log *slog.Logger, clock func() time.Time) *filterAuth {
	f := &filterAuth{log: log, clock: clock,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "shepherd_sidecar", Name: "filter_token_refused_total",
			Help: "Calls refused with PERMISSION_DENIED because they carried no accepted filter token, by method."}, []string{"method"})}
	for _, m := range filterAuthMethods {
		f.refused.WithLabelValues(m)
	}
	reg.MustRegister(f.refused)
	return f
}

// configured reports whether filter tokens are required.
func (f *filterAuth) configured() bool {
	d := f.digests.Load()
	return d != nil && len(*d) > 0
}

// load reads the tokens: from a file, one per line (blank lines ignored); or
// from a directory (a mounted Kubernetes Secret), one per file, skipping the
// names that start with '.'. One or two tokens in all. Errors name the file,
// never its content.
func (f *filterAuth) load(path string) error {
	data, err := readTokenPath(path)
	if err != nil {
		return fmt.Errorf("filter token: %w", err)
	}
	tokens, err := parseFilterTokens(data)
	if err != nil {
		return fmt.Errorf("filter token file %s: %w", path, err)
	}
	digests := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		digests[i] = sha256.Sum256([]byte(t))
	}
	f.digests.Store(&digests)
	return nil
}

// readTokenPath returns a file's content, or a directory's files' contents
// one per line (in name order).
func readTokenPath(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !info.IsDir() {
		data, err := os.ReadFile(path)
		return string(data), err
	}
	ents, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue // Kubernetes' ..data and its timestamped directory
		}
		p := filepath.Join(path, e.Name())
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		if strings.Contains(strings.TrimSpace(string(data)), "\n") {
			return "", fmt.Errorf("%s: in a directory each file holds one token", p)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func parseFilterTokens(data string) ([]string, error) {
	var tokens []string
	for i, line := range strings.Split(data, "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		for _, c := range []byte(t) {
			if c < 0x21 || c > 0x7e {
				return nil, fmt.Errorf("line %d: a token may hold only visible ASCII characters (it travels as gRPC metadata)", i+1)
			}
		}
		if len(t) < minFilterTokenLen {
			return nil, fmt.Errorf("line %d: a token must be at least %d characters", i+1, minFilterTokenLen)
		}
		tokens = append(tokens, t)
	}
	switch {
	case len(tokens) == 0:
		return nil, fmt.Errorf("holds no token")
	case len(tokens) > maxFilterTokens:
		return nil, fmt.Errorf("holds %d tokens; at most %d (the current one and, while rotating, the previous one)", len(tokens), maxFilterTokens)
	}
	return tokens, nil
}

// ok reports whether the call carries an accepted filter token.
func (f *filterAuth) ok(ctx context.Context) bool {
	d := f.digests.Load()
	if d == nil || len(*d) == 0 {
		return false
	}
	vals := metadata.ValueFromIncomingContext(ctx, FilterTokenMetadata)
	if len(vals) != 1 {
		return false
	}
	got := sha256.Sum256([]byte(vals[0]))
	match := 0
	for i := range *d {
		match |= subtle.ConstantTimeCompare(got[:], (*d)[i][:])
	}
	return match == 1
}

// refuse counts and (at most every 10 s per method) logs a refused call, and
// returns its PERMISSION_DENIED status. Neither names what the caller sent.
func (f *filterAuth) refuse(ctx context.Context, method string) error {
	f.refused.WithLabelValues(method).Inc()
	now := f.clock().UnixNano()
	v, _ := f.logged.LoadOrStore(method, new(atomic.Int64))
	last := v.(*atomic.Int64)
	if prev := last.Load(); now-prev >= int64(10*time.Second) && last.CompareAndSwap(prev, now) {
		from := ""
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			from = p.Addr.String()
		}
		f.log.Warn("refused a call without an accepted filter token (further refusals within 10s are only counted)",
			"method", method, "peer", from, "metric", "shepherd_sidecar_filter_token_refused_total")
	}
	return status.Error(codes.PermissionDenied, "filter token missing or not accepted (metadata "+FilterTokenMetadata+")")
}

// unaryFor returns an interceptor that requires the filter token on every
// method of service (its full name), and passes other calls through.
func (f *filterAuth) unaryFor(service, label string) grpc.UnaryServerInterceptor {
	prefix := "/" + service + "/"
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, prefix) && !f.ok(ctx) {
			return nil, f.refuse(ctx, label)
		}
		return handler(ctx, req)
	}
}

// streamFor returns an interceptor that, while filter tokens are
// configured, requires one on every stream of service (its full name); other
// streams pass. Without a token configured the service is open, as the
// policy API is.
func (f *filterAuth) streamFor(service, label string) grpc.StreamServerInterceptor {
	prefix := "/" + service + "/"
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, prefix) && f.configured() && !f.ok(ss.Context()) {
			return f.refuse(ss.Context(), label)
		}
		return handler(srv, ss)
	}
}

// Report rate limits. A caller is the workload identity Istio's inbound
// proxy asserts in x-forwarded-client-cert (URI=...) when the call came
// through a local proxy (a loopback peer), else the peer's IP address.
// Callers are capped; past the cap, new callers share one bucket.
const maxReportCallers = 4096

type reportLimiter struct {
	mu      sync.Mutex
	rate    float64 // reports per second; the burst is twice as many (at least one)
	buckets map[string]*reportBucket
	refused prometheus.Counter
	log     *slog.Logger
	lastLog time.Time
}

type reportBucket struct {
	tokens float64
	last   time.Time
}

func newReportLimiter(reg prometheus.Registerer, log *slog.Logger) *reportLimiter {
	l := &reportLimiter{buckets: map[string]*reportBucket{}, log: log,
		refused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "shepherd_sidecar", Name: "reports_rate_limited_total",
			Help: "ReportOutcomes calls refused with RESOURCE_EXHAUSTED: the caller exceeded reports.per_caller_per_second."})}
	reg.MustRegister(l.refused)
	return l
}

// setRate applies reports.per_caller_per_second.
func (l *reportLimiter) setRate(perSecond float64) {
	l.mu.Lock()
	l.rate = perSecond
	l.mu.Unlock()
}

// allow takes one report from the caller's bucket.
func (l *reportLimiter) allow(ctx context.Context, now time.Time) error {
	key := reportCaller(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := max(1, 2*l.rate)
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxReportCallers {
			for k, old := range l.buckets {
				if now.Sub(old.last) > time.Minute {
					delete(l.buckets, k)
				}
			}
		}
		if len(l.buckets) >= maxReportCallers {
			key = "" // the overflow bucket
			b = l.buckets[key]
		}
		if b == nil {
			b = &reportBucket{tokens: burst, last: now}
			l.buckets[key] = b
		}
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(burst, b.tokens+el*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	l.refused.Inc()
	if now.Sub(l.lastLog) >= 10*time.Second {
		l.lastLog = now
		l.log.Warn("refused an outcome report: the caller is over reports.per_caller_per_second (further refusals within 10s are only counted)",
			"caller", key, "per_second", l.rate, "metric", "shepherd_sidecar_reports_rate_limited_total")
	}
	return status.Errorf(codes.ResourceExhausted, "outcome reports: at most %g per second per caller", l.rate)
}

// reportCaller names the caller of a report for its rate limit.
func reportCaller(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	host := p.Addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		md, _ := metadata.FromIncomingContext(ctx)
		if xfcc := md.Get("x-forwarded-client-cert"); len(xfcc) > 0 {
			if uri := xfccURI(xfcc[len(xfcc)-1]); uri != "" {
				return uri
			}
		}
	}
	return host
}

// xfccURI returns the last URI in an x-forwarded-client-cert value (that of
// the client of the proxy that set it), or "". Long values are cut.
func xfccURI(v string) string {
	i := strings.LastIndex(v, "URI=")
	if i < 0 {
		return ""
	}
	u := v[i+len("URI="):]
	if j := strings.IndexAny(u, ";,"); j >= 0 {
		u = u[:j]
	}
	if len(u) > 256 {
		u = u[:256]
	}
	return u
}
