package main

import (
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/config"
)

// allowedEntry returns the first fallback chain entry from e on (cyclically)
// that may serve this request: its provider serves the request's operation,
// and its model is the requested one, unless the request is text generation
// with a model the config lists (then the route's chain of other models is
// what the config asks for). The primary (entry 0) always may: it already
// served the request. A request of another kind, or with a model the config
// does not know, is never answered by another model.
func (s *stream) allowedEntry(e int) int {
	n := len(s.chain) + 1
	for range n {
		if e == 0 || s.entryAllowed(s.chain[e-1]) {
			return e
		}
		e = (e + 1) % n
	}
	return 0
}

func (s *stream) entryAllowed(ce config.FallbackEntry) bool {
	p := ce.Provider
	if p == nil {
		p = s.chosen
	}
	if !p.Serves(s.call.Op) {
		return false
	}
	if s.call.Op.Generates() && s.model != nil {
		return true
	}
	return ce.Model.Name == s.publicModel()
}

// isAccountHeader reports whether a request header carries the client's
// credential or names the account it belongs to. None of them reaches a
// provider: the provider's credential (and its configured organization and
// project) replace them.
func isAccountHeader(name string) bool {
	switch name {
	case "authorization", "api-key", "x-api-key", "openai-organization", "openai-project":
		return true
	}
	return false
}

// keptClientHeaders copies the client's request headers that every attempt
// of a request carries: all but the pseudo-headers and host (each attempt's
// own), the client's credential and account headers, shepherd's internal
// headers and the canary override (the filter's to read), and the framing
// headers (the attempt's body has its own length).
func keptClientHeaders(hdrs [][2]string, r *config.Route) [][2]string {
	var kept [][2]string
	for _, kv := range hdrs {
		k := kv[0]
		switch {
		case strings.HasPrefix(k, ":"), strings.HasPrefix(k, internalPrefix), isAccountHeader(k),
			r.Canary != nil && k == r.Canary.Header:
			continue
		}
		switch k {
		case "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "expect":
			continue
		}
		kept = append(kept, [2]string{strings.Clone(k), strings.Clone(kv[1])})
	}
	return kept
}
