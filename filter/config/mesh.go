package config

import (
	"strconv"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// Defaults of the sidecar section and of global limits.
const (
	DefaultSidecarTimeoutMs = 200
	DefaultPolicyPollMs     = 500
	MaxPolicyPollMs         = 1000
	DefaultReportIntervalMs = 1000
	DefaultReportBatch      = 500
	DefaultGlobalDomain     = "shepherd"
	DefaultCanaryHeader     = "x-canary"
	// FilterTokenMetadata is the gRPC metadata key that carries the filter's
	// token to shepherd-sidecar on every call.
	FilterTokenMetadata     = "x-shepherd-filter-token"
	MaxGlobalLimitTimeoutMs = 10_000
	MaxReportBatch          = 10_000
	minPolicyPollMs         = 50
	minReportIntervalMs     = 50
	maxReportIntervalMs     = 60_000
	// DefaultQuotaReportMs is how often the quota stream reports usage.
	DefaultQuotaReportMs = 1000
)

// Sidecar is where the filter reaches shepherd-sidecar, and how often it talks
// to it.
type Sidecar struct {
	// Cluster is the Envoy cluster of the sidecar's gRPC port.
	Cluster string
	// TimeoutMs is the deadline of the filter's calls that no route sets one
	// for: policy polls, outcome reports and token settlement.
	TimeoutMs uint32
	// PolicyPollMs is how often one VM per Envoy asks for the policy (and
	// every VM looks for a new version in shared data); 0 disables policy sync.
	PolicyPollMs uint32
	// ReportIntervalMs is how often a VM sends its queued outcomes and token
	// usage; 0 disables outcome reports.
	ReportIntervalMs uint32
	// ReportBatch is the most outcomes one report carries; a full batch is
	// sent at the next tick without waiting for the interval.
	ReportBatch int
	// QuotaReportMs is how often the VM holding the quota stream reports the
	// usage of quota-mode global limits (GlobalLimits.Quota).
	QuotaReportMs uint32
	// Metadata is the initial metadata of every gRPC call to the sidecar:
	// the filter token (FilterTokenMetadata) when the config names one, else
	// nil. It holds a secret: never log or format it.
	Metadata [][2]string
	// TokenSource says where the token came from, for logs: "env NAME",
	// "inline" or "none". It never holds the token itself.
	TokenSource string
}

// Descriptor keys a route's global limits may use, in the order they are
// listed in the config.
type DescriptorKey uint8

// The descriptor keys.
const (
	KeyRoute DescriptorKey = iota
	KeyProvider
	KeyModel
	KeyConsumer
)

// DescriptorKeyNames are the descriptor keys' names, as sent to the rate
// limit service and written in the config.
var DescriptorKeyNames = [...]string{"route", "provider", "model", "consumer"}

// GlobalLimits are a route's limits across every pod, kept by the sidecar's
// rate limit service.
type GlobalLimits struct {
	// Domain is the rate limit domain of the route's descriptors.
	Domain string
	// Keys are the entries of the request descriptor, in order.
	Keys []DescriptorKey
	// ConsumerHeader is the header whose value is the consumer entry when the
	// consumer comes from a header.
	ConsumerHeader string
	// PerConsumer reports whether the route has a consumer (from a header or
	// the mesh's identity) for the consumer descriptor and budgets.
	PerConsumer bool
	// Tokens adds a token descriptor (kind=tokens, then Keys): checked without
	// counting at admission, charged with the real usage after the response.
	Tokens bool
	// FailClosed refuses requests with 503 when the sidecar does not answer
	// in time or answers garbage; otherwise they proceed under local limits.
	FailClosed bool
	// TimeoutMs is the deadline of the check.
	TimeoutMs uint32
	// Quota enforces the limits locally from quota assignments the sidecar
	// streams over Envoy's RLQS protocol ("mode": "quota") instead of one
	// ShouldRateLimit per request ("mode": "check").
	Quota bool
}

// Canary is a route's canary split: which backend is the canary, the header
// that sends a request to it, and the header whose value keeps a client on
// one backend.
type Canary struct {
	Provider     *Provider
	Header       string
	StickyHeader string
}

func (d *decoder) sidecar(doc *jsonlite.Value) error {
	v := doc.Get("sidecar")
	if v == nil {
		return nil
	}
	const path = "sidecar"
	if err := object(path, v, "cluster", "token", "timeoutMs", "policyPollMs", "reportIntervalMs", "reportBatch", "quotaReportMs"); err != nil {
		return err
	}
	s := &Sidecar{}
	var err error
	if s.Cluster, err = requiredStr(path, v, "cluster"); err != nil {
		return err
	}
	if err := checkHeaderValue(join(path, "cluster"), s.Cluster); err != nil {
		return err
	}
	// The token proves to the sidecar that a call comes from the filter (the
	// sidecar serves credentials and takes outcome reports only with it). It
	// is read like a provider credential: from the proxy's environment
	// (vmConfig.env) or inline, never echoed in an error.
	token, source, err := d.credential(join(path, "token"), v.Get("token"))
	if err != nil {
		return err
	}
	s.TokenSource = source
	if token != "" {
		s.Metadata = [][2]string{{FilterTokenMetadata, token}}
	}
	n, err := integer(path, v, "timeoutMs", 1, MaxGlobalLimitTimeoutMs, DefaultSidecarTimeoutMs)
	if err != nil {
		return err
	}
	s.TimeoutMs = uint32(n)
	if n, err = integer(path, v, "policyPollMs", 0, MaxPolicyPollMs, DefaultPolicyPollMs); err != nil {
		return err
	}
	if n != 0 && n < minPolicyPollMs {
		return fail(join(path, "policyPollMs"), "must be 0 (off) or at least "+strconv.Itoa(minPolicyPollMs))
	}
	s.PolicyPollMs = uint32(n)
	if n, err = integer(path, v, "reportIntervalMs", 0, maxReportIntervalMs, DefaultReportIntervalMs); err != nil {
		return err
	}
	if n != 0 && n < minReportIntervalMs {
		return fail(join(path, "reportIntervalMs"), "must be 0 (off) or at least "+strconv.Itoa(minReportIntervalMs))
	}
	s.ReportIntervalMs = uint32(n)
	if n, err = integer(path, v, "reportBatch", 1, MaxReportBatch, DefaultReportBatch); err != nil {
		return err
	}
	s.ReportBatch = int(n)
	if n, err = integer(path, v, "quotaReportMs", minReportIntervalMs, maxReportIntervalMs, DefaultQuotaReportMs); err != nil {
		return err
	}
	s.QuotaReportMs = uint32(n)
	d.cfg.Sidecar = s
	return nil
}

// globalLimits reads {"mode": "check"|"quota", "domain", "descriptors":
// ["route", ...], "consumerHeader", "tokens", "failureMode": "open"|"closed",
// "timeoutMs"}.
func (d *decoder) globalLimits(path string, v *jsonlite.Value, r *Route) error {
	if v == nil {
		return nil
	}
	if err := object(path, v, "mode", "domain", "descriptors", "consumerHeader", "tokens", "failureMode", "timeoutMs"); err != nil {
		return err
	}
	if d.cfg.Sidecar == nil {
		return fail(path, "needs the top-level sidecar section (the cluster of shepherd-sidecar)")
	}
	g := &GlobalLimits{}
	mode, err := str(path, v, "mode")
	if err != nil {
		return err
	}
	switch mode {
	case "", "check":
	case "quota":
		g.Quota = true
	default:
		return fail(join(path, "mode"), "must be \"check\" or \"quota\", not "+strconv.Quote(mode))
	}
	if g.Domain, err = str(path, v, "domain"); err != nil {
		return err
	}
	if g.Domain == "" {
		g.Domain = DefaultGlobalDomain
	}
	keys, err := array(path, v, "descriptors")
	if err != nil {
		return err
	}
	if v.Get("descriptors") == nil {
		g.Keys = []DescriptorKey{KeyRoute}
	} else if len(keys) == 0 {
		return fail(join(path, "descriptors"), "must not be empty (leave it out for [\"route\"])")
	}
	for i, kv := range keys {
		kp := index(join(path, "descriptors"), i)
		if kv.Kind != jsonlite.String {
			return fail(kp, "must be a string, not "+kv.Kind.String())
		}
		k, ok := descriptorKey(kv.Str)
		if !ok {
			return fail(kp, "unknown descriptor "+strconv.Quote(kv.Str)+" (known: route, provider, model, consumer)")
		}
		for _, prev := range g.Keys {
			if prev == k {
				return fail(kp, "descriptor "+strconv.Quote(kv.Str)+" is listed twice")
			}
		}
		g.Keys = append(g.Keys, k)
	}
	if g.ConsumerHeader, err = str(path, v, "consumerHeader"); err != nil {
		return err
	}
	if g.ConsumerHeader != "" {
		if err := checkHeaderName(join(path, "consumerHeader"), g.ConsumerHeader); err != nil {
			return err
		}
		if r.Consumer.From != ConsumerNone {
			return fail(join(path, "consumerHeader"), "set either the route's consumer or consumerHeader, not both")
		}
	} else if r.Consumer.From == ConsumerFromHeader {
		g.ConsumerHeader = r.Consumer.Header
	} else if r.Limits != nil {
		g.ConsumerHeader = r.Limits.ConsumerHeader
	}
	g.PerConsumer = g.ConsumerHeader != "" || r.Consumer.From.Identity()
	for _, k := range g.Keys {
		if k == KeyConsumer && !g.PerConsumer {
			return fail(join(path, "consumerHeader"), "is required for the consumer descriptor (or set the route's consumer or limits.consumerHeader)")
		}
	}
	if g.Tokens, err = boolean(path, v, "tokens", false); err != nil {
		return err
	}
	if mode, err = str(path, v, "failureMode"); err != nil {
		return err
	}
	switch mode {
	case "", "open":
	case "closed":
		g.FailClosed = true
	default:
		return fail(join(path, "failureMode"), "must be \"open\" or \"closed\", not "+strconv.Quote(mode))
	}
	n, err := integer(path, v, "timeoutMs", 1, MaxGlobalLimitTimeoutMs, int64(d.cfg.Sidecar.TimeoutMs))
	if err != nil {
		return err
	}
	g.TimeoutMs = uint32(n)
	r.GlobalLimits = g
	return nil
}

func descriptorKey(s string) (DescriptorKey, bool) {
	for i, n := range DescriptorKeyNames {
		if n == s {
			return DescriptorKey(i), true
		}
	}
	return 0, false
}

// canary reads {"provider", "header", "stickyHeader"}.
func (d *decoder) canary(path string, v *jsonlite.Value, r *Route) error {
	if v == nil {
		return nil
	}
	if err := object(path, v, "provider", "header", "stickyHeader"); err != nil {
		return err
	}
	if len(r.Backends) < 2 {
		return fail(path, "needs a route with two or more providers")
	}
	c := &Canary{}
	name, err := str(path, v, "provider")
	if err != nil {
		return err
	}
	if name == "" {
		c.Provider = r.Backends[len(r.Backends)-1].Provider
	} else {
		for _, b := range r.Backends {
			if b.Provider.Name == name {
				c.Provider = b.Provider
			}
		}
		if c.Provider == nil {
			return fail(join(path, "provider"), "provider "+strconv.Quote(name)+" is not one of the route's providers")
		}
	}
	if c.Header, err = str(path, v, "header"); err != nil {
		return err
	}
	if c.Header == "" {
		c.Header = DefaultCanaryHeader
	}
	if err := checkHeaderName(join(path, "header"), c.Header); err != nil {
		return err
	}
	if c.StickyHeader, err = str(path, v, "stickyHeader"); err != nil {
		return err
	}
	if c.StickyHeader != "" {
		if err := checkHeaderName(join(path, "stickyHeader"), c.StickyHeader); err != nil {
			return err
		}
	}
	r.Canary = c
	return nil
}
