package main

import (
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
)

// metricKind says which metric a key names.
type metricKind uint8

const (
	mRequests metricKind = iota
	mDuration
	mTTFT
	mTokens
	mCost
	mFallbacks
	mRateLimited
	mGenAIUsage
	mGenAITTFT
	mGlobalFailures
	mSidecarErrors
	mDropped
	mAttempts
	mFallbacksDenied
	mSkippedEvents
	mUsageAnomalies
	mAnswersTooLarge
)

// metricKey identifies one labelled metric by small indexes, so finding its id
// allocates nothing. Unused fields are zero.
type metricKey struct {
	kind            metricKind
	route, provider int16
	model, model2   int16 // config model index; len(cfg.Models) is "other"
	extra           uint8 // code class, token type, kind or reason
}

// packed folds k into one word, the maps' key: hashing a word is several
// times cheaper in a VM than hashing the struct. Indexes are below 8192
// (config.MaxEntries, plus "other" for models) and kind and extra below 16.
func (k metricKey) packed() uint64 {
	const w = 13
	return uint64(k.kind)<<(4*w+4) | uint64(k.extra)<<(4*w) |
		uint64(uint16(k.route))<<(3*w) | uint64(uint16(k.provider))<<(2*w) |
		uint64(uint16(k.model))<<w | uint64(uint16(k.model2))
}

// metrics defines the filter's metrics on first use and remembers their ids. All
// label dimensions are bounded by the config (models outside it collapse to
// "other"), so the table is bounded too. One per plugin configuration; not safe
// for concurrent use (a VM runs one callback at a time).
type metrics struct {
	cfg       *config.Config
	counters  map[uint64]proxywasm.MetricCounter // by metricKey.packed
	hists     map[uint64]proxywasm.MetricHistogram
	fallbacks map[fallbackKey]proxywasm.MetricCounter
}

func newMetrics(cfg *config.Config) *metrics {
	return &metrics{cfg: cfg, counters: map[uint64]proxywasm.MetricCounter{}, hists: map[uint64]proxywasm.MetricHistogram{},
		fallbacks: map[fallbackKey]proxywasm.MetricCounter{}}
}

// fallbackKey names one shepherd_fallbacks_total series: a fallback has two
// providers and two models, more than one packed word holds. Fallbacks are
// rare next to requests, so a two-word key costs nothing that matters.
type fallbackKey struct {
	route, fromProvider, toProvider int16
	fromModel, toModel              int16
	reason                          uint8
}

// countFallback counts one fallback from one chain entry's provider and model
// to another's.
func (m *metrics) countFallback(k fallbackKey) {
	c, ok := m.fallbacks[k]
	if !ok {
		c = proxywasm.DefineCounterMetric(telemetry.Name(telemetry.Fallbacks, telemetry.LabelRoute, m.cfg.Routes[k.route].Name,
			telemetry.LabelFrom, m.modelName(k.fromModel), telemetry.LabelTo, m.modelName(k.toModel),
			telemetry.LabelFromProvider, m.providerName(k.fromProvider), telemetry.LabelToProvider, m.providerName(k.toProvider),
			telemetry.LabelReason, fallbackReasons[k.reason]))
		m.fallbacks[k] = c
	}
	_ = c.Increment(1)
}

// modelIndex is the metric index of a model name (after alias resolution).
func (m *metrics) modelIndex(model *config.Model) int16 {
	if model == nil {
		return int16(len(m.cfg.Models))
	}
	return int16(model.Index)
}

// providerName is the provider label of index i; len(cfg.Providers) is the
// filter itself.
func (m *metrics) providerName(i int16) string {
	if int(i) < len(m.cfg.Providers) {
		return m.cfg.Providers[i].Name
	}
	return telemetry.LocalProvider
}

func (m *metrics) modelName(i int16) string {
	if int(i) < len(m.cfg.Models) {
		return m.cfg.Models[i].Name
	}
	return config.OtherModel
}

var (
	// codeClasses are the code label's values: a status class, and for
	// upstream attempts that got no real answer, reset or timeout.
	codeClasses = []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other", "reset", "timeout"}
	tokenTypes  = []string{"input", "output"}
	limitKinds  = []string{"requests", "tokens", "global_requests", "global_tokens", "budget"}
	failModes   = []string{"open", "closed"}
)

// Code label indexes that are not a status class (codeClasses).
const (
	codeOther   uint8 = 5 // no status, or one outside 100-599
	codeReset   uint8 = 6 // an upstream attempt reset
	codeTimeout uint8 = 7 // an upstream attempt timed out
)

func codeIndex(status int) uint8 {
	if status >= 100 && status < 600 {
		return uint8(status/100 - 1)
	}
	return codeOther
}

// Token type label indexes (tokenTypes).
const (
	tokenInput uint8 = iota
	tokenOutput
)

// Rate limit kind label indexes (limitKinds).
const (
	limitRequests uint8 = iota
	limitTokens
	limitGlobalRequests
	limitGlobalTokens
	limitBudget
)

// limitLabel is the kind label index of a refusal by a bucket of kind k, the
// filter's own (local) or the sidecar's (global).
func limitLabel(k limits.Kind, global bool) uint8 {
	switch {
	case global && k == limits.Tokens:
		return limitGlobalTokens
	case global:
		return limitGlobalRequests
	case k == limits.Tokens:
		return limitTokens
	}
	return limitRequests
}

// Failure mode label indexes of the global limit's failures (failModes).
const (
	failOpen uint8 = iota
	failClosed
)

// name builds the metric's full name; called once per key.
func (m *metrics) name(k metricKey) string {
	route := m.cfg.Routes[k.route].Name
	provider := m.providerName(k.provider)
	const (
		R = telemetry.LabelRoute
		P = telemetry.LabelProvider
		M = telemetry.LabelModel
	)
	switch k.kind {
	case mRequests:
		if int(k.provider) == len(m.cfg.Providers) { // the filter's own answer
			return telemetry.Name(telemetry.Requests, R, route, P, telemetry.LocalProvider, M, m.modelName(k.model),
				telemetry.LabelCode, codeClasses[k.extra], telemetry.LabelReason, localReasons[k.model2])
		}
		return telemetry.Name(telemetry.Requests, R, route, P, provider, M, m.modelName(k.model), telemetry.LabelCode, codeClasses[k.extra])
	case mAttempts:
		return telemetry.Name(telemetry.UpstreamAttempts, R, route, P, provider, M, m.modelName(k.model), telemetry.LabelCode, codeClasses[k.extra])
	case mFallbacksDenied:
		return telemetry.Name(telemetry.FallbacksDenied, R, route, telemetry.LabelReason, denyReasons[k.extra])
	case mDuration:
		return telemetry.Name(telemetry.Duration, R, route, P, provider)
	case mTTFT:
		return telemetry.Name(telemetry.TTFT, R, route, P, provider)
	case mTokens:
		return telemetry.Name(telemetry.Tokens, R, route, P, provider, M, m.modelName(k.model), telemetry.LabelType, tokenTypes[k.extra])
	case mCost:
		return telemetry.Name(telemetry.Cost, R, route, P, provider, M, m.modelName(k.model))
	case mRateLimited:
		return telemetry.Name(telemetry.RateLimited, R, route, telemetry.LabelKind, limitKinds[k.extra])
	case mGenAIUsage:
		return telemetry.Name(telemetry.GenAITokenUsage, telemetry.LabelGenAIModel, m.modelName(k.model), telemetry.LabelGenAITokenType, tokenTypes[k.extra])
	case mGenAITTFT:
		return telemetry.Name(telemetry.GenAITTFT, telemetry.LabelGenAIModel, m.modelName(k.model))
	case mGlobalFailures:
		return telemetry.Name(telemetry.GlobalLimitFailures, R, route, telemetry.LabelKind, failModes[k.extra])
	case mSidecarErrors:
		return telemetry.Name(telemetry.SidecarErrors, telemetry.LabelKind, sidecarCalls[k.extra])
	case mDropped:
		return telemetry.Name(telemetry.SidecarDropped, telemetry.LabelKind, dropKinds[k.extra])
	case mSkippedEvents:
		return telemetry.Name(telemetry.StreamEventsSkipped, R, route)
	case mUsageAnomalies:
		return telemetry.Name(telemetry.UsageAnomalies, R, route, P, provider)
	case mAnswersTooLarge:
		return telemetry.Name(telemetry.AnswersTooLarge, R, route, P, provider)
	}
	return ""
}

// count adds delta (> 0) to the counter named by k.
func (m *metrics) count(k metricKey, delta uint64) {
	if delta == 0 {
		return
	}
	c, ok := m.counters[k.packed()]
	if !ok {
		c = proxywasm.DefineCounterMetric(m.name(k))
		m.counters[k.packed()] = c
	}
	_ = c.Increment(delta)
}

// record records v in the histogram named by k.
func (m *metrics) record(k metricKey, v uint64) {
	h, ok := m.hists[k.packed()]
	if !ok {
		h = proxywasm.DefineHistogramMetric(m.name(k))
		m.hists[k.packed()] = h
	}
	_ = h.Record(v)
}

// Reasons a fallback is taken, as the reason label.
var fallbackReasons = []string{"status", "callout_failed", "timeout"}

// Reasons the filter answered a request itself (shepherd_requests_total with
// provider="shepherd"), as the reason label.
var localReasons = []string{"ratelimit", "budget", "invalid", "too_large", "unavailable", "cooling"}

const (
	localRateLimit int16 = iota
	localBudget
	localInvalid
	localTooLarge
	localUnavailable
	localCooling
)

// Reasons a fallback the chain had planned, or would have needed, was not
// made (shepherd_fallbacks_denied_total).
var denyReasons = []string{"retry_budget", "attempts_exhausted", "out_of_time", "cooling"}

const (
	denyRetryBudget uint8 = iota
	denyAttempts
	denyOutOfTime
	denyCooling
)
