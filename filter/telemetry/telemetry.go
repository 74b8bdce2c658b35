// Package telemetry names the filter's metrics and the Envoy stats_tags that turn
// the labels encoded in those names into Prometheus labels.
//
// proxy-wasm metrics have names only. shepherd encodes labels into the name as
// `.<label>.<value>` pairs after the metric's base name, for example
// `shepherd.requests.route.chat.provider.relay`. Envoy exposes it as
// `wasmcustom.shepherd.requests.route.chat.provider.relay`, and the tag regexes in
// StatsTags (shipped in the Istio manifests as the proxy's stats tags) strip each
// pair into a label, so Prometheus sees
// `envoy_wasmcustom_shepherd_requests{route="chat",provider="relay"}`.
//
// Label values are route and provider names, which config restricts to
// [a-z0-9_-], so they never contain the '.' that separates the pairs.
package telemetry

// StatsTag is one Envoy stats_tags entry: the regex's first capture group is cut
// out of the metric name and its second is the label value.
type StatsTag struct {
	Name  string
	Regex string
}

// Labels encoded into metric names, in the order they appear.
const (
	LabelRoute    = "route"
	LabelProvider = "provider"
)

// StatsTags are the tag extraction rules for every label the filter encodes.
var StatsTags = []StatsTag{
	{Name: LabelRoute, Regex: `^wasmcustom\.shepherd\..*?(\.route\.([a-z0-9_-]+))`},
	{Name: LabelProvider, Regex: `^wasmcustom\.shepherd\..*?(\.provider\.([a-z0-9_-]+))`},
}

// Base names of the filter's metrics (before Envoy's `wasmcustom.` prefix).
const (
	// Requests counts requests that matched a route, by route and provider.
	Requests = "shepherd.requests"
)

// RouteProvider returns base with the route and provider labels encoded.
func RouteProvider(base, route, provider string) string {
	return base + "." + LabelRoute + "." + route + "." + LabelProvider + "." + provider
}
