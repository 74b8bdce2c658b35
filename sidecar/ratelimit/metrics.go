package ratelimit

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Decision codes used as the "code" label.
const (
	codeOK        = "ok"
	codeOverLimit = "over_limit"
	codeShadow    = "shadow"
	// unknownDomain is the domain label of requests for a domain that is
	// not configured, so that clients cannot grow the label set.
	unknownDomain = "_unknown"
	// overflowDescriptor is the descriptor label once MaxDetailedKeys
	// distinct detailed descriptors have been seen.
	overflowDescriptor = "_overflow"
)

type metrics struct {
	decisions      *prometheus.CounterVec // domain, code
	limitDecisions *prometheus.CounterVec // limit, code
	detailed       *prometheus.CounterVec // descriptor, code
	storeSeconds   prometheus.Histogram
	storeErrors    prometheus.Counter
	invalid        prometheus.Counter

	detailedMu   sync.Mutex
	detailedSeen map[string]struct{}
	detailedMax  int
}

func newMetrics(reg prometheus.Registerer, maxDetailed int) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shepherd_ratelimit_decisions_total",
			Help: "Rate limit decisions by domain and overall code (ok, over_limit, shadow: OK only because an over-limit descriptor is in shadow mode).",
		}, []string{"domain", "code"}),
		limitDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shepherd_ratelimit_limit_decisions_total",
			Help: "Descriptor decisions by configured limit (domain.key_value.key) and code.",
		}, []string{"limit", "code"}),
		detailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shepherd_ratelimit_detailed_decisions_total",
			Help: "Descriptor decisions by full descriptor, for limits with detailed_metric; capped, the rest are counted as _overflow.",
		}, []string{"descriptor", "code"}),
		storeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shepherd_ratelimit_store_duration_seconds",
			Help:    "Latency of one counter store round trip (all descriptors of a decision).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shepherd_ratelimit_store_errors_total",
			Help: "Counter store round trips that failed.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shepherd_ratelimit_invalid_requests_total",
			Help: "ShouldRateLimit requests refused with INVALID_ARGUMENT (empty, or beyond the bounds on descriptors, entries, lengths or hits_addend); they count nothing.",
		}),
		detailedSeen: map[string]struct{}{},
		detailedMax:  maxDetailed,
	}
	if reg != nil {
		m.decisions = register(reg, m.decisions)
		m.limitDecisions = register(reg, m.limitDecisions)
		m.detailed = register(reg, m.detailed)
		m.storeSeconds = register(reg, m.storeSeconds)
		m.storeErrors = register(reg, m.storeErrors)
		m.invalid = register(reg, m.invalid)
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same description (a second Service on the same registry shares it).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// codeCounters holds the counters of one label value for each code, resolved
// once per config so that decisions only increment.
type codeCounters struct {
	ok, over, shadow prometheus.Counter
}

func (m *metrics) codes(vec *prometheus.CounterVec, label string) *codeCounters {
	return &codeCounters{
		ok:     vec.WithLabelValues(label, codeOK),
		over:   vec.WithLabelValues(label, codeOverLimit),
		shadow: vec.WithLabelValues(label, codeShadow),
	}
}

// detailedLabel returns the label to use for a detailed descriptor key,
// admitting at most detailedMax distinct ones.
func (m *metrics) detailedLabel(key string) string {
	m.detailedMu.Lock()
	defer m.detailedMu.Unlock()
	if _, ok := m.detailedSeen[key]; ok {
		return key
	}
	if len(m.detailedSeen) >= m.detailedMax {
		return overflowDescriptor
	}
	m.detailedSeen[key] = struct{}{}
	return key
}
