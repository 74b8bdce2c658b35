// Package routing decides where a request goes: which route it matches, which
// provider serves it, and the path and authority it is rewritten to. It is pure: no
// ABI calls, no clock, and no allocation unless a path is actually rewritten.
package routing

import (
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/openai"
)

// Decision is the outcome of routing one request.
type Decision struct {
	Route    *config.Route
	Provider *config.Provider
	// rest is the request path after the route's prefix.
	rest string
	path string
}

// Header looks up a request header by its lowercase name.
type Header func(name string) (string, bool)

// Decide matches the request against cfg's routes and picks the provider. ok is
// false when no route matches; the request then passes through untouched. pick is
// a uniformly random number (or a hash of a sticky client key) that selects a
// backend by weight.
func Decide(cfg *config.Config, path string, header Header, pick uint64) (d Decision, ok bool) {
	r := cfg.Match(path, header)
	if r == nil {
		return Decision{}, false
	}
	return Decision{Route: r, Provider: Pick(r.Backends, pick), rest: path[len(r.PathPrefix):], path: path}, true
}

// DecideHeaders is Decide from the request's header pairs (as the host hands
// them over, lowercase names): each pair is read once, whatever the number of
// routes (config.Config.MatchHeaders). sc is the caller's reusable scratch.
func DecideHeaders(cfg *config.Config, path string, headers [][2]string, sc *config.MatchScratch, pick uint64) (d Decision, ok bool) {
	r := cfg.MatchHeaders(path, headers, sc)
	if r == nil {
		return Decision{}, false
	}
	return Decision{Route: r, Provider: Pick(r.Backends, pick), rest: path[len(r.PathPrefix):], path: path}, true
}

// Pick selects a backend by weight: with weights 90 and 10, picks spread
// uniformly over [0, 2^64) choose the first 90% of the time.
func Pick(backends []config.Backend, pick uint64) *config.Provider {
	if len(backends) == 1 {
		return backends[0].Provider
	}
	total := 0
	for _, b := range backends {
		total += b.Weight
	}
	n := int(pick % uint64(total))
	for _, b := range backends {
		if n < b.Weight {
			return b.Provider
		}
		n -= b.Weight
	}
	return backends[0].Provider
}

// Rest is the request path after the route's prefix.
func (d Decision) Rest() string { return d.rest }

// PickServing selects by weight among the backends that serve op, nil when
// none does. A provider that does not serve an operation never gets it.
func PickServing(backends []config.Backend, op openai.Operation, pick uint64) *config.Provider {
	total, first := 0, -1
	for i, b := range backends {
		if b.Provider.Serves(op) {
			total += b.Weight
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		return nil
	}
	if total == 0 {
		return backends[first].Provider
	}
	n := int(pick % uint64(total))
	for _, b := range backends {
		if !b.Provider.Serves(op) {
			continue
		}
		if n < b.Weight {
			return b.Provider
		}
		n -= b.Weight
	}
	return backends[first].Provider
}

// Own makes d independent of the memory of the path Decide was given, for a
// caller that read the path from a buffer it will reuse: it copies the path.
func (d *Decision) Own() {
	d.path = strings.Clone(d.path)
	d.rest = d.path[len(d.path)-len(d.rest):]
}

// Authority is the :authority the request is sent with.
func (d Decision) Authority() string { return d.Provider.Host }

// Path is the :path the request is sent with: the route's prefix replaced by the
// provider's, or the original path when the provider has no prefix. The result
// allocates only when the path changes.
func (d Decision) Path() string { return d.PathVia(d.Provider) }

// PathVia is the :path the request would be sent with to provider p, for a
// fallback to another provider.
func (d Decision) PathVia(provider *config.Provider) string {
	if provider.PathPrefix == "" {
		return d.path
	}
	return string(d.AppendPathVia(nil, provider))
}

// AppendPathVia appends PathVia(provider) to dst, for a caller that builds
// paths into a buffer it reuses.
func (d Decision) AppendPathVia(dst []byte, provider *config.Provider) []byte {
	p := provider.PathPrefix
	if p == "" {
		return append(dst, d.path...)
	}
	// Join without doubling or losing the separator between prefix and rest.
	switch {
	case strings.HasSuffix(p, "/") && strings.HasPrefix(d.rest, "/"):
		return append(append(dst, p...), d.rest[1:]...)
	case !strings.HasSuffix(p, "/") && !strings.HasPrefix(d.rest, "/") && d.rest != "" && d.rest[0] != '?':
		return append(append(append(dst, p...), '/'), d.rest...)
	}
	return append(append(dst, p...), d.rest...)
}

// PathChanged reports whether Path differs from the request's path, so the caller
// can skip a header write.
func (d Decision) PathChanged() bool {
	return d.Provider.PathPrefix != "" && d.Path() != d.path
}
