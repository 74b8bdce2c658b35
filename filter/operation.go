package main

import "github.com/shepherd-mesh/shepherd/filter/config"

// allowedEntry returns the first fallback chain entry from e on (cyclically)
// that may serve this request: its provider serves the request's operation,
// and its model is the requested one, unless the request is text generation
// with a model the config lists (then the route's chain of other models is
// what the config asks for). The primary (entry 0) always may: it already
// served the request. A request of another kind, or with a model the config
// does not know, is never answered by another model.
func (s *stream) allowedEntry(e int) int {
	f := s.decision.Route.Fallback
	n := len(f.Chain) + 1
	for range n {
		if e == 0 || s.entryAllowed(f.Chain[e-1]) {
			return e
		}
		e = (e + 1) % n
	}
	return 0
}

func (s *stream) entryAllowed(ce config.FallbackEntry) bool {
	p := ce.Provider
	if p == nil {
		p = s.decision.Provider
	}
	if !p.Serves(s.call.Op) {
		return false
	}
	if s.call.Op.Generates() && s.model != nil {
		return true
	}
	return ce.Model.Name == s.publicModel()
}
