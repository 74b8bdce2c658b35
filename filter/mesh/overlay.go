package mesh

import (
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/policywire"
)

// Overlay is a sidecar policy applied to one configuration: what changes the
// configuration's choices. A nil *Overlay changes nothing. It is immutable
// once built and shared by every stream of a VM.
type Overlay struct {
	// Version is the policy's version.
	Version uint64
	// weights[route] are the route's backend weights from the policy, in the
	// order of Route.Backends; nil keeps the configuration's.
	weights [][]int
	// cooldown[provider] is when the provider's cooldown ends (Unix ms), 0
	// when it has none.
	cooldown []int64
	// exhausted[route] is true when the route's budget is spent.
	exhausted []bool
	// consumers are the consumers whose budgets are spent.
	consumers []string
	// creds[provider] is the policy's credential, empty when it has none.
	creds []Credential
}

// Credential is a header the policy sets on requests to a provider. Value is
// a secret.
type Credential struct {
	Header, Value string
}

// NewOverlay applies p to cfg. Entries naming routes or providers cfg does not
// have are ignored, and so are weights for providers a route does not list; a
// route whose listed providers all get weight 0 keeps its configured weights.
func NewOverlay(cfg *config.Config, p *policywire.Policy) *Overlay {
	o := &Overlay{
		Version:   p.Version,
		weights:   make([][]int, len(cfg.Routes)),
		cooldown:  make([]int64, len(cfg.Providers)),
		exhausted: make([]bool, len(cfg.Routes)),
		creds:     make([]Credential, len(cfg.Providers)),
	}
	routes := make(map[string]*config.Route, len(cfg.Routes))
	for _, r := range cfg.Routes {
		routes[r.Name] = r
	}
	providers := make(map[string]*config.Provider, len(cfg.Providers))
	for _, pr := range cfg.Providers {
		providers[pr.Name] = pr
	}
	for _, w := range p.Weights {
		r, ok := routes[w.Route]
		if !ok {
			continue
		}
		for i, b := range r.Backends {
			if b.Provider.Name != w.Provider {
				continue
			}
			if o.weights[r.Index] == nil {
				o.weights[r.Index] = make([]int, len(r.Backends))
			}
			o.weights[r.Index][i] = int(w.WeightBP)
		}
	}
	for i, ws := range o.weights {
		total := 0
		for _, w := range ws {
			total += w
		}
		if total == 0 {
			o.weights[i] = nil
		}
	}
	for _, h := range p.Health {
		if pr, ok := providers[h.Provider]; ok {
			o.cooldown[pr.Index] = h.CooldownUntilUnixMs
		}
	}
	for _, b := range p.Budgets {
		if !b.Exhausted {
			continue
		}
		if b.Route != "" {
			if r, ok := routes[b.Route]; ok {
				o.exhausted[r.Index] = true
			}
		} else if b.Consumer != "" {
			o.consumers = append(o.consumers, b.Consumer)
		}
	}
	for _, c := range p.Credentials {
		if pr, ok := providers[c.Provider]; ok && c.Header != "" && c.Value != "" {
			o.creds[pr.Index] = Credential{Header: c.Header, Value: c.Value}
		}
	}
	return o
}

// Weight is backend i's weight on route r: the policy's when it sets the
// route's weights, else the configuration's.
func (o *Overlay) Weight(r *config.Route, i int) int {
	if o != nil && o.weights[r.Index] != nil {
		return o.weights[r.Index][i]
	}
	return r.Backends[i].Weight
}

// Cooling reports whether provider p is in a cooldown at nowMs (Unix ms).
func (o *Overlay) Cooling(p *config.Provider, nowMs int64) bool {
	return o != nil && o.cooldown[p.Index] > nowMs
}

// Choose picks route r's provider for a request. pick is a uniformly random
// number, or a hash of the client's sticky key. Backends are chosen by weight
// (the policy's canary weights when it has them); providers in a cooldown are
// skipped while another backend of the route is not cooling: by weight among
// those with weight, else the first that is not cooling. When every backend
// is cooling, the cooldowns are ignored.
func (o *Overlay) Choose(r *config.Route, pick uint64, nowMs int64) *config.Provider {
	return o.ChooseAvoiding(r, pick, nowMs, 0)
}

// ChooseAvoiding is Choose with more backends treated as cooling: those whose
// bit is set in avoid (bit i for r.Backends[i], the first 64 only), as the
// filter's own provider memory says.
func (o *Overlay) ChooseAvoiding(r *config.Route, pick uint64, nowMs int64, avoid uint64) *config.Provider {
	if len(r.Backends) == 1 {
		return r.Backends[0].Provider
	}
	cooling := func(i int, p *config.Provider) bool {
		return (i < 64 && avoid&(1<<i) != 0) || o.Cooling(p, nowMs)
	}
	total, free := 0, -1
	for i, b := range r.Backends {
		if cooling(i, b.Provider) {
			continue
		}
		if free < 0 {
			free = i
		}
		total += o.Weight(r, i)
	}
	skipCooling := true
	switch {
	case free < 0: // everything cools: ignore cooldowns
		skipCooling = false
		for i := range r.Backends {
			total += o.Weight(r, i)
		}
	case total == 0:
		return r.Backends[free].Provider
	}
	if total == 0 {
		return r.Backends[0].Provider
	}
	n := int(pick % uint64(total))
	for i, b := range r.Backends {
		if skipCooling && cooling(i, b.Provider) {
			continue
		}
		w := o.Weight(r, i)
		if n < w {
			return b.Provider
		}
		n -= w
	}
	return r.Backends[0].Provider
}

// RouteExhausted reports whether route r's budget is spent.
func (o *Overlay) RouteExhausted(r *config.Route) bool {
	return o != nil && o.exhausted[r.Index]
}

// ConsumerExhausted reports whether consumer c's budget is spent, or, for a
// consumer "<namespace>/<name>" (a workload), its namespace's ("<namespace>/*").
func (o *Overlay) ConsumerExhausted(c string) bool {
	if o == nil || c == "" {
		return false
	}
	for _, e := range o.consumers {
		if e == c {
			return true
		}
		if n := len(e) - 1; n > 1 && e[n] == '*' && e[n-1] == '/' && len(c) > n && c[:n] == e[:n] {
			return true
		}
	}
	return false
}

// Credential is the policy's credential for provider p, if it has one.
func (o *Overlay) Credential(p *config.Provider) (Credential, bool) {
	if o == nil {
		return Credential{}, false
	}
	c := o.creds[p.Index]
	return c, c.Header != ""
}

// StickyPick turns a client's sticky key into a pick for Choose: the same key
// always picks the same backend while the weights stay, and keys spread
// uniformly over the weights (FNV-1a, then a 64-bit finalizer).
func StickyPick(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ (h >> 33)
}
