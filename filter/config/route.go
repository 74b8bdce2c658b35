package config

import (
	"strconv"
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/fallback"
	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
	"github.com/shepherd-mesh/shepherd/filter/limits"
)

// Defaults of route settings.
const (
	DefaultMaxBodyBytes     = 1 << 20
	MaxMaxBodyBytes         = 64 << 20
	DefaultMaxTokens        = 1024
	DefaultMaxConsumers     = 1000
	DefaultPriorityHeader   = "x-priority"
	DefaultCalloutTimeoutMs = 60_000
	// DefaultUsageMarginTokens is how far a provider's reported usage may
	// exceed the request's own bound (prompt estimate + output limit) before
	// it is clipped and counted as an anomaly: room for a prompt the estimate
	// undercounts (images, tools, scripts of three bytes a character) and for
	// output when the request set no limit, up to a 1M-token context.
	DefaultUsageMarginTokens = 1_000_000
	MaxUsageMarginTokens     = 1_000_000_000
	// DefaultMaxAnswerBytes bounds a fallback answer taken into the VM (a VM's
	// memory never shrinks); MaxMaxAnswerBytes is Envoy's own bound on what
	// its async client buffers (32 MiB, runtime key
	// http.async_response_buffer_limit), beyond which the callout fails anyway.
	DefaultMaxAnswerBytes = 4 << 20
	MaxMaxAnswerBytes     = 32 << 20
)

// Route matches requests and says how to serve them.
type Route struct {
	// Index is the route's position in Config.Routes, for per-route tables.
	Index int
	// Name identifies the route in metrics and logs.
	Name string
	// PathPrefix is matched against the request path.
	PathPrefix string
	// Headers must all be present with these exact values.
	Headers []HeaderMatch
	// Backends are the providers that share the route's traffic by weight; the
	// first is the primary.
	Backends []Backend
	// Provider is the primary backend's provider.
	Provider *Provider
	// DefaultModel is used when the body names none; nil leaves such bodies alone.
	DefaultModel *Model
	// PriorityHeader names the header whose value selects a model from Priority.
	PriorityHeader string
	// Priority maps priority header values to the model they select.
	Priority map[string]*Model
	// PriorityProvider maps the priority header values that also name a
	// provider to it; the request goes there, whatever the weights say.
	PriorityProvider map[string]*Provider
	// Limits are the route's local limits, nil when it has none.
	Limits *Limits
	// Fallback says how failed requests are retried, nil when they are not.
	Fallback *Fallback
	// GlobalLimits are checked with the sidecar, nil when the route has none.
	GlobalLimits *GlobalLimits
	// Canary is the route's canary split, nil when it has none.
	Canary *Canary
	// StreamUsage asks providers for a final usage chunk on streams
	// (stream_options.include_usage) so tokens and cost are known.
	StreamUsage bool
	// MaxBodyBytes is the largest request body the filter buffers; larger bodies
	// are refused with 413.
	MaxBodyBytes int
	// NeedsBody reports whether the route reads the request body: for models,
	// token limits, fallback or stream usage.
	NeedsBody bool
	// Consumer says where the request's consumer comes from; From is
	// ConsumerNone when the route has none.
	Consumer Consumer
	// UsageMarginTokens is how many tokens a provider's reported usage may
	// exceed the request's prompt estimate plus its output limit before the
	// usage is clipped to that and counted as an anomaly.
	UsageMarginTokens int64
}

// HeaderMatch requires a request header to have an exact value.
type HeaderMatch struct {
	Name, Value string
}

// Backend is a provider and its share of a route's traffic.
type Backend struct {
	Provider *Provider
	// Weight is the share of traffic, relative to the route's other backends.
	Weight int
}

// Limits are a route's local limits, kept in shared data so every worker VM of
// one Envoy shares them.
type Limits struct {
	// Requests and Tokens are per-minute buckets; PerMinute 0 means no limit.
	Requests, Tokens limits.Rule
	// ConsumerHeader names the header whose value keys the buckets when the
	// consumer comes from a header, "" otherwise.
	ConsumerHeader string
	// PerConsumer keys the buckets by consumer (from a header or the mesh's
	// identity); false keeps one bucket per route.
	PerConsumer bool
	// MaxConsumers bounds the consumers with buckets of their own; the rest share
	// an overflow bucket.
	MaxConsumers int
	// DefaultMaxTokens is reserved for output when the body has no max_tokens.
	DefaultMaxTokens int64
}

// Fallback is a route's retry policy.
type Fallback struct {
	// Chain are the entries tried after the primary, in order.
	Chain []FallbackEntry
	// ByModel are the chains of requests whose primary model has its own
	// (fallback.byModel), used instead of Chain.
	ByModel map[*Model][]FallbackEntry
	// Policy governs attempts and backoff.
	Policy fallback.Policy
	// Budget caps retries as a share of the route's requests.
	Budget fallback.BudgetConfig
	// TimeoutMs is the timeout of each fallback callout.
	TimeoutMs uint32
	// MaxAnswerBytes bounds a fallback callout's answer the filter takes into
	// the VM; a larger one is a failed attempt.
	MaxAnswerBytes int
}

// ChainFor is the chain of a request whose primary model is m (nil when
// unlisted).
func (f *Fallback) ChainFor(m *Model) []FallbackEntry {
	if c, ok := f.ByModel[m]; ok && m != nil {
		return c
	}
	return f.Chain
}

// FallbackEntry is one step of a fallback chain.
type FallbackEntry struct {
	Model *Model
	// Provider serves the entry; nil keeps the provider that served the request.
	Provider *Provider
}

func (r *Route) matches(path string, header func(string) (string, bool)) bool {
	if !strings.HasPrefix(path, r.PathPrefix) {
		return false
	}
	for _, h := range r.Headers {
		v, ok := header(h.Name)
		if !ok || v != h.Value {
			return false
		}
	}
	return true
}

func (d *decoder) route(path string, v *jsonlite.Value) (*Route, error) {
	if err := object(path, v, "name", "match", "provider", "providers", "defaultModel", "priority",
		"limits", "fallback", "streamUsage", "maxBodyBytes", "globalLimits", "canary", "usageMarginTokens", "consumer"); err != nil {
		return nil, err
	}
	r := &Route{}
	var err error
	if r.Name, err = requiredStr(path, v, "name"); err != nil {
		return nil, err
	}
	if err := checkName(join(path, "name"), r.Name); err != nil {
		return nil, err
	}
	if err := d.match(join(path, "match"), v.Get("match"), r); err != nil {
		return nil, err
	}
	if err := d.backends(path, v, r); err != nil {
		return nil, err
	}
	if name, err := str(path, v, "defaultModel"); err != nil {
		return nil, err
	} else if name != "" {
		if r.DefaultModel, err = d.model(join(path, "defaultModel"), name); err != nil {
			return nil, err
		}
	}
	if err := d.priority(join(path, "priority"), v.Get("priority"), r); err != nil {
		return nil, err
	}
	if err := d.consumer(join(path, "consumer"), v.Get("consumer"), r); err != nil {
		return nil, err
	}
	if r.Limits, err = d.limits(join(path, "limits"), v.Get("limits"), r); err != nil {
		return nil, err
	}
	if r.Fallback, err = d.fallback(join(path, "fallback"), v.Get("fallback")); err != nil {
		return nil, err
	}
	if err := d.globalLimits(join(path, "globalLimits"), v.Get("globalLimits"), r); err != nil {
		return nil, err
	}
	if err := d.canary(join(path, "canary"), v.Get("canary"), r); err != nil {
		return nil, err
	}
	if r.Consumer.From == ConsumerNone {
		// consumerHeader (limits or globalLimits) is the header form's alias.
		if h := r.consumerHeader(); h != "" {
			r.Consumer = Consumer{From: ConsumerFromHeader, Header: h}
		}
	}
	if r.StreamUsage, err = boolean(path, v, "streamUsage", true); err != nil {
		return nil, err
	}
	n, err := integer(path, v, "maxBodyBytes", 1024, MaxMaxBodyBytes, DefaultMaxBodyBytes)
	if err != nil {
		return nil, err
	}
	r.MaxBodyBytes = int(n)
	if r.UsageMarginTokens, err = integer(path, v, "usageMarginTokens", 0, MaxUsageMarginTokens, DefaultUsageMarginTokens); err != nil {
		return nil, err
	}
	r.NeedsBody = r.StreamUsage || r.DefaultModel != nil || len(r.Priority) > 0 || r.Fallback != nil ||
		(r.Limits != nil && r.Limits.Tokens.PerMinute > 0) || len(d.cfg.Aliases) > 0
	for _, b := range r.Backends {
		r.NeedsBody = r.NeedsBody || len(b.Provider.Models) > 0
	}
	return r, nil
}

func (d *decoder) match(path string, v *jsonlite.Value, r *Route) error {
	if v == nil {
		return fail(path, "is required")
	}
	if err := object(path, v, "pathPrefix", "headers"); err != nil {
		return err
	}
	var err error
	if r.PathPrefix, err = requiredStr(path, v, "pathPrefix"); err != nil {
		return err
	}
	if err := checkPath(join(path, "pathPrefix"), r.PathPrefix); err != nil {
		return err
	}
	hdrs, err := stringMap(path, v, "headers")
	if err != nil {
		return err
	}
	for name, value := range hdrs {
		hp := key(join(path, "headers"), name)
		if err := checkHeaderName(hp, name); err != nil {
			return err
		}
		if err := checkHeaderValue(hp, value); err != nil {
			return err
		}
		r.Headers = append(r.Headers, HeaderMatch{Name: name, Value: value})
	}
	return nil
}

// backends reads "provider": "name" or "providers": [{"name": ..., "weight": ...}].
func (d *decoder) backends(path string, v *jsonlite.Value, r *Route) error {
	single, err := str(path, v, "provider")
	if err != nil {
		return err
	}
	list, err := array(path, v, "providers")
	if err != nil {
		return err
	}
	switch {
	case single != "" && list != nil:
		return fail(path, "set either provider or providers, not both")
	case single != "":
		p, ok := d.providers[single]
		if !ok {
			return fail(join(path, "provider"), "unknown provider "+strconv.Quote(single))
		}
		r.Backends = []Backend{{Provider: p, Weight: 100}}
	case len(list) > 0:
		total := 0
		seen := map[string]bool{}
		for i, bv := range list {
			bp := index(join(path, "providers"), i)
			if err := object(bp, bv, "name", "weight"); err != nil {
				return err
			}
			name, err := requiredStr(bp, bv, "name")
			if err != nil {
				return err
			}
			p, ok := d.providers[name]
			if !ok {
				return fail(join(bp, "name"), "unknown provider "+strconv.Quote(name))
			}
			if seen[name] {
				return fail(join(bp, "name"), "provider "+strconv.Quote(name)+" is listed twice")
			}
			seen[name] = true
			w, err := integer(bp, bv, "weight", 0, 10000, 100)
			if err != nil {
				return err
			}
			total += int(w)
			r.Backends = append(r.Backends, Backend{Provider: p, Weight: int(w)})
		}
		if total == 0 {
			return fail(join(path, "providers"), "weights add up to 0; at least one must be positive")
		}
	default:
		return fail(join(path, "provider"), "is required (or providers)")
	}
	r.Provider = r.Backends[0].Provider
	return nil
}

// priority reads {"header": "x-priority", "models": {"high": "claude-sonnet-4.5"}}.
func (d *decoder) priority(path string, v *jsonlite.Value, r *Route) error {
	if v == nil {
		return nil
	}
	if err := object(path, v, "header", "models"); err != nil {
		return err
	}
	h, err := str(path, v, "header")
	if err != nil {
		return err
	}
	if h == "" {
		h = DefaultPriorityHeader
	}
	if err := checkHeaderName(join(path, "header"), h); err != nil {
		return err
	}
	r.PriorityHeader = h
	mv := v.Get("models")
	mp := join(path, "models")
	if mv != nil && mv.Kind != jsonlite.Object {
		return fail(mp, "must be an object, not "+mv.Kind.String())
	}
	if mv == nil || len(mv.Members) == 0 {
		return fail(mp, "must map at least one header value to a model")
	}
	r.Priority = make(map[string]*Model, len(mv.Members))
	for _, mem := range mv.Members {
		vp := key(mp, mem.Name)
		if _, dup := r.Priority[mem.Name]; dup {
			return fail(vp, "appears twice")
		}
		e, err := d.chainEntry(vp, mem.Value)
		if err != nil {
			return err
		}
		r.Priority[mem.Name] = e.Model
		if e.Provider != nil {
			if r.PriorityProvider == nil {
				r.PriorityProvider = map[string]*Provider{}
			}
			r.PriorityProvider[mem.Name] = e.Provider
		}
	}
	return nil
}

func (d *decoder) limits(path string, v *jsonlite.Value, r *Route) (*Limits, error) {
	if v == nil {
		return nil, nil
	}
	if err := object(path, v, "requestsPerMinute", "tokensPerMinute", "requestBurst", "tokenBurst",
		"consumerHeader", "maxConsumers", "defaultMaxTokens"); err != nil {
		return nil, err
	}
	l := &Limits{}
	var err error
	if l.Requests.PerMinute, err = integer(path, v, "requestsPerMinute", 0, limits.MaxPerMinute, 0); err != nil {
		return nil, err
	}
	if l.Tokens.PerMinute, err = integer(path, v, "tokensPerMinute", 0, limits.MaxPerMinute, 0); err != nil {
		return nil, err
	}
	if l.Requests.Burst, err = integer(path, v, "requestBurst", 0, limits.MaxPerMinute, 0); err != nil {
		return nil, err
	}
	if l.Tokens.Burst, err = integer(path, v, "tokenBurst", 0, limits.MaxPerMinute, 0); err != nil {
		return nil, err
	}
	if l.Requests.PerMinute == 0 && l.Tokens.PerMinute == 0 {
		return nil, fail(path, "set requestsPerMinute or tokensPerMinute")
	}
	if l.ConsumerHeader, err = str(path, v, "consumerHeader"); err != nil {
		return nil, err
	}
	if l.ConsumerHeader != "" {
		if err := checkHeaderName(join(path, "consumerHeader"), l.ConsumerHeader); err != nil {
			return nil, err
		}
		if r.Consumer.From != ConsumerNone {
			return nil, fail(join(path, "consumerHeader"), "set either the route's consumer or consumerHeader, not both")
		}
	}
	if r.Consumer.From == ConsumerFromHeader {
		l.ConsumerHeader = r.Consumer.Header
	}
	l.PerConsumer = l.ConsumerHeader != "" || r.Consumer.From.Identity()
	n, err := integer(path, v, "maxConsumers", 1, limits.MaxConsumers, DefaultMaxConsumers)
	if err != nil {
		return nil, err
	}
	l.MaxConsumers = int(n)
	if l.DefaultMaxTokens, err = integer(path, v, "defaultMaxTokens", 1, 10_000_000, DefaultMaxTokens); err != nil {
		return nil, err
	}
	return l, nil
}

const msPerNs = 1_000_000

// chainEntry reads a model name or {"model", "provider"}: a fallback chain
// entry, or a priority value.
func (d *decoder) chainEntry(mp string, mv *jsonlite.Value) (FallbackEntry, error) {
	var entry FallbackEntry
	var err error
	switch mv.Kind {
	case jsonlite.String:
		if entry.Model, err = d.model(mp, mv.Str); err != nil {
			return entry, err
		}
	case jsonlite.Object:
		if err := object(mp, mv, "model", "provider"); err != nil {
			return entry, err
		}
		name, err := requiredStr(mp, mv, "model")
		if err != nil {
			return entry, err
		}
		if entry.Model, err = d.model(join(mp, "model"), name); err != nil {
			return entry, err
		}
		pname, err := str(mp, mv, "provider")
		if err != nil {
			return entry, err
		}
		if pname != "" {
			p, ok := d.providers[pname]
			if !ok {
				return entry, fail(join(mp, "provider"), "unknown provider "+strconv.Quote(pname))
			}
			entry.Provider = p
		}
	default:
		return entry, fail(mp, "must be a model name or {\"model\", \"provider\"}, not "+mv.Kind.String())
	}
	return entry, nil
}

func (d *decoder) fallback(path string, v *jsonlite.Value) (*Fallback, error) {
	if v == nil {
		return nil, nil
	}
	if err := object(path, v, "models", "byModel", "statuses", "maxAttempts", "baseBackoffMs", "maxBackoffMs",
		"retryAfterCapMs", "budgetMs", "retryBudgetPercent", "timeoutMs", "maxAnswerBytes"); err != nil {
		return nil, err
	}
	f := &Fallback{}
	models, err := array(path, v, "models")
	if err != nil {
		return nil, err
	}
	for i, mv := range models {
		entry, err := d.chainEntry(index(join(path, "models"), i), mv)
		if err != nil {
			return nil, err
		}
		f.Chain = append(f.Chain, entry)
	}
	if bm := v.Get("byModel"); bm != nil {
		bp := join(path, "byModel")
		if bm.Kind != jsonlite.Object {
			return nil, fail(bp, "must be an object, not "+bm.Kind.String())
		}
		f.ByModel = make(map[*Model][]FallbackEntry, len(bm.Members))
		for _, mem := range bm.Members {
			mp := key(bp, mem.Name)
			m, err := d.model(mp, mem.Name)
			if err != nil {
				return nil, err
			}
			if m.Name != mem.Name {
				return nil, fail(mp, "is an alias; name the model "+strconv.Quote(m.Name)+" instead")
			}
			if _, dup := f.ByModel[m]; dup {
				return nil, fail(mp, "appears twice")
			}
			if mem.Value.Kind != jsonlite.Array {
				return nil, fail(mp, "must be an array of fallback entries, not "+mem.Value.Kind.String())
			}
			chain := make([]FallbackEntry, 0, len(mem.Value.Items))
			for i, ev := range mem.Value.Items {
				entry, err := d.chainEntry(index(mp, i), ev)
				if err != nil {
					return nil, err
				}
				chain = append(chain, entry)
			}
			f.ByModel[m] = chain
		}
	}
	if st, err := array(path, v, "statuses"); err != nil {
		return nil, err
	} else if st != nil {
		if len(st) == 0 {
			return nil, fail(join(path, "statuses"), "must not be empty (leave it out for 429, 500, 502, 503, 504)")
		}
		for i, sv := range st {
			sp := index(join(path, "statuses"), i)
			n, ok := sv.Int()
			if sv.Kind != jsonlite.Number || !ok || n < 400 || n > 599 {
				return nil, fail(sp, "must be a 4xx or 5xx status")
			}
			f.Policy.Statuses = append(f.Policy.Statuses, int(n))
		}
	} else {
		f.Policy.Statuses = append([]int(nil), fallback.DefaultStatuses...)
	}
	n, err := integer(path, v, "maxAttempts", 1, fallback.MaxAttemptsLimit, fallback.DefaultMaxAttempts)
	if err != nil {
		return nil, err
	}
	f.Policy.MaxAttempts = int(n)
	ms := func(name string, lo, def int64) (int64, error) {
		n, err := integer(path, v, name, lo, 3_600_000, def/msPerNs)
		return n * msPerNs, err
	}
	if f.Policy.BaseBackoff, err = ms("baseBackoffMs", 1, fallback.DefaultBaseBackoff); err != nil {
		return nil, err
	}
	if f.Policy.MaxBackoff, err = ms("maxBackoffMs", 1, fallback.DefaultMaxBackoff); err != nil {
		return nil, err
	}
	if f.Policy.MaxBackoff < f.Policy.BaseBackoff {
		return nil, fail(join(path, "maxBackoffMs"), "must not be less than baseBackoffMs")
	}
	if f.Policy.RetryAfterCap, err = ms("retryAfterCapMs", 0, fallback.DefaultRetryAfterCap); err != nil {
		return nil, err
	}
	if f.Policy.Budget, err = ms("budgetMs", 1, fallback.DefaultBudget); err != nil {
		return nil, err
	}
	f.Policy.Jitter = fallback.DefaultJitter
	pct, err := integer(path, v, "retryBudgetPercent", 0, 1000, 20)
	if err != nil {
		return nil, err
	}
	f.Budget = fallback.BudgetConfig{Percent: int(pct), MinPerSecond: 1}
	t, err := integer(path, v, "timeoutMs", 1, 600_000, DefaultCalloutTimeoutMs)
	if err != nil {
		return nil, err
	}
	f.TimeoutMs = uint32(t)
	a, err := integer(path, v, "maxAnswerBytes", 1024, MaxMaxAnswerBytes, DefaultMaxAnswerBytes)
	if err != nil {
		return nil, err
	}
	f.MaxAnswerBytes = int(a)
	if err := f.Policy.Validate(); err != nil {
		return nil, wrap(path, err)
	}
	if err := f.Budget.Validate(); err != nil {
		return nil, wrap(path, err)
	}
	return f, nil
}

// consumerHeader is the header naming the consumer in the header form's
// aliases: globalLimits.consumerHeader, else limits.consumerHeader.
func (r *Route) consumerHeader() string {
	if g := r.GlobalLimits; g != nil && g.ConsumerHeader != "" {
		return g.ConsumerHeader
	}
	if l := r.Limits; l != nil {
		return l.ConsumerHeader
	}
	return ""
}
