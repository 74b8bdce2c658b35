// Package routing decides where a request goes: which route it matches, which
// provider serves it, and the path and authority it is rewritten to. It is pure: no
// ABI calls, no clock, and no allocation unless a path is actually rewritten.
package routing

import (
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/config"
)

// Decision is the outcome of routing one request.
type Decision struct {
	Route    *config.Route
	Provider *config.Provider
	// rest is the request path after the route's prefix.
	rest string
	path string
}

// Decide matches path against cfg's routes. ok is false when no route matches; the
// request then passes through untouched.
func Decide(cfg *config.Config, path string) (d Decision, ok bool) {
	r := cfg.Match(path)
	if r == nil {
		return Decision{}, false
	}
	return Decision{Route: r, Provider: r.Provider, rest: path[len(r.PathPrefix):], path: path}, true
}

// Authority is the :authority the request is sent with.
func (d Decision) Authority() string { return d.Provider.Host }

// Path is the :path the request is sent with: the route's prefix replaced by the
// provider's, or the original path when the provider has no prefix. The result
// allocates only when the path changes.
func (d Decision) Path() string {
	p := d.Provider.PathPrefix
	if p == "" {
		return d.path
	}
	// Join without doubling or losing the separator between prefix and rest.
	switch {
	case strings.HasSuffix(p, "/") && strings.HasPrefix(d.rest, "/"):
		return p + d.rest[1:]
	case !strings.HasSuffix(p, "/") && !strings.HasPrefix(d.rest, "/") && d.rest != "" && d.rest[0] != '?':
		return p + "/" + d.rest
	}
	return p + d.rest
}

// PathChanged reports whether Path differs from the request's path, so the caller
// can skip a header write.
func (d Decision) PathChanged() bool {
	return d.Provider.PathPrefix != "" && d.Path() != d.path
}
