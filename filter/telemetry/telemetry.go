// Package telemetry names the filter's metrics, keeps their ids, and ships the
// Envoy stats_tags that turn the labels encoded in the names into Prometheus
// labels.
//
// proxy-wasm metrics have names only. shepherd appends each label to the metric's
// base name as `;<label>=<value>`, for example
// `shepherd_requests_total;route=chat;provider=relay;model=gpt-4.1;code=2xx`. Envoy
// keeps it as `wasmcustom.shepherd_requests_total;route=chat;...`; the tag regexes in
// StatsTags (shipped in the Istio manifests as the proxy's stats tags) cut each pair
// out into a label, and Envoy's Prometheus output drops the custom `wasmcustom`
// namespace, so Prometheus sees
// `shepherd_requests_total{route="chat",provider="relay",model="gpt-4.1",code="2xx"}`.
//
// Label values never contain ';' or '=': route and provider names are restricted by
// config, models are either listed in the config (validated) or collapse to
// "other", and the remaining labels are fixed words.
package telemetry

// StatsTag is one Envoy stats_tags entry: the regex's first capture group is cut
// out of the metric name and its second is the label value.
type StatsTag struct {
	Name  string
	Regex string
}

// Labels encoded into metric names.
const (
	LabelRoute    = "route"
	LabelProvider = "provider"
	LabelModel    = "model"
	LabelCode     = "code"
	LabelType     = "type"
	LabelKind     = "kind"
	LabelFrom     = "from"
	LabelTo       = "to"
	LabelReason   = "reason"
	// LabelFromProvider and LabelToProvider name the providers of a fallback.
	LabelFromProvider = "from_provider"
	LabelToProvider   = "to_provider"
	// OpenTelemetry's gen_ai semantic convention names.
	LabelGenAIModel     = "gen_ai_request_model"
	LabelGenAITokenType = "gen_ai_token_type"
)

var labels = []string{LabelRoute, LabelProvider, LabelModel, LabelCode, LabelType, LabelKind,
	LabelFrom, LabelTo, LabelReason, LabelGenAIModel, LabelGenAITokenType, LabelFromProvider, LabelToProvider}

// LocalProvider is the provider label of answers the filter gave itself
// (limits, budgets, invalid or oversized requests, fail-closed checks, cooling
// providers): no provider saw those requests. Config refuses it as a provider
// name.
const LocalProvider = "shepherd"

// StatsTags are the tag extraction rules for every label the filter encodes.
var StatsTags = func() []StatsTag {
	tags := make([]StatsTag, len(labels))
	for i, l := range labels {
		tags[i] = StatsTag{Name: l, Regex: `^wasmcustom\.[^;]*(?:;[^;]*)*?(;` + l + `=([^;]*))`}
	}
	return tags
}()

// Base names of the filter's metrics (before Envoy's `wasmcustom.` namespace).
const (
	// Requests counts requests that matched a route, by their final answer:
	// route, provider, model, code. Answers the filter gave itself carry
	// provider="shepherd" and a reason (ratelimit, budget, invalid, too_large,
	// unavailable, cooling).
	Requests = "shepherd_requests_total"
	// UpstreamAttempts counts every request sent to a provider, the main
	// request and each fallback callout: route, provider, model, code (status
	// class, or reset or timeout when no real answer came).
	UpstreamAttempts = "shepherd_upstream_attempts_total"
	// FallbacksDenied counts fallbacks that were needed but not made: route,
	// reason (retry_budget, attempts_exhausted, out_of_time, cooling).
	FallbacksDenied = "shepherd_fallbacks_denied_total"
	// Duration is the request's duration in ms, to the end of the response: route, provider.
	Duration = "shepherd_request_duration_ms"
	// TTFT is the time to the first token (first content chunk of a stream, first
	// byte otherwise) in ms: route, provider.
	TTFT = "shepherd_time_to_first_token_ms"
	// Tokens counts tokens: route, provider, model, type (input, output).
	Tokens = "shepherd_tokens_total"
	// Cost counts cost in micro-USD from the price table: route, provider, model.
	Cost = "shepherd_cost_usd_micros_total"
	// Fallbacks counts retries on a fallback: route, from, to (models),
	// from_provider, to_provider, reason (status, callout_failed, timeout).
	Fallbacks = "shepherd_fallbacks_total"
	// RateLimited counts requests refused by a local limit: route, kind.
	RateLimited = "shepherd_ratelimited_total"
	// GenAITokenUsage is OpenTelemetry's gen_ai.client.token.usage histogram:
	// gen_ai_request_model, gen_ai_token_type.
	GenAITokenUsage = "gen_ai_client_token_usage"
	// GenAITTFT is OpenTelemetry's gen_ai.server.time_to_first_token histogram, in
	// ms (OpenTelemetry uses seconds; proxy-wasm histograms hold integers):
	// gen_ai_request_model.
	GenAITTFT = "gen_ai_server_time_to_first_token_ms"
	// GlobalLimitFailures counts requests whose global limit check got no
	// usable answer, by route and the failure mode applied (kind open or closed).
	GlobalLimitFailures = "shepherd_global_limit_failures_total"
	// SidecarErrors counts failed sidecar calls by kind (check, policy, report,
	// settle).
	SidecarErrors = "shepherd_sidecar_errors_total"
	// SidecarDropped counts outcomes and token settlements a full queue dropped.
	SidecarDropped = "shepherd_sidecar_dropped_total"
	// StreamEventsSkipped counts stream events larger than the scanner's bound
	// (64 KiB of data) that passed unread, by route.
	StreamEventsSkipped = "shepherd_stream_events_skipped_total"
	// VMMemory is the memory the Go runtime of the filter's VMs holds, in
	// bytes: each VM raises it to its own figure, so it shows the largest
	// VM's (a VM's linear memory never shrinks).
	VMMemory = "shepherd_vm_memory_bytes"
	// UsageAnomalies counts provider usage reports beyond the request's
	// plausible bound, clipped to it: route, provider.
	UsageAnomalies = "shepherd_usage_anomalies_total"
	// AnswersTooLarge counts fallback callout answers larger than the route's
	// fallback.maxAnswerBytes, each a failed attempt: route, provider.
	AnswersTooLarge = "shepherd_fallback_answers_too_large_total"
)

// Name returns base with the label pairs encoded; kv alternates label and value.
// It allocates, so call it when defining a metric, not per request.
func Name(base string, kv ...string) string {
	n := len(base)
	for _, s := range kv {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, base...)
	for i := 0; i+1 < len(kv); i += 2 {
		b = append(b, ';')
		b = append(b, kv[i]...)
		b = append(b, '=')
		b = append(b, kv[i+1]...)
	}
	return string(b)
}

// CodeClass is the code label of an HTTP status: "2xx" ... "5xx", or "other".
func CodeClass(status int) string {
	switch status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return "other"
}
