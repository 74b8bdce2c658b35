// Package model decides which model a request asks for: the model a priority
// header value names (and the provider it may name with it), the model the body
// names with its aliases resolved, and the route's default. It is pure: no ABI
// calls, and no allocation unless the body names a model the config does not
// list.
package model

import (
	"github.com/shepherd-mesh/shepherd/filter/body"
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/openai"
)

// Priority is the model the priority header value names on route r, nil when
// the value is empty or names none.
func Priority(r *config.Route, priority string) *config.Model {
	if priority == "" {
		return nil
	}
	return r.Priority[priority]
}

// PriorityProvider is the provider the priority header value names on route r,
// nil when it names none or the provider does not serve op.
func PriorityProvider(r *config.Route, priority string, op openai.Operation) *config.Provider {
	if priority == "" {
		return nil
	}
	if p, ok := r.PriorityProvider[priority]; ok && p.Serves(op) {
		return p
	}
	return nil
}

// Choice is the model a request asks for.
type Choice struct {
	// Model is the listed model, nil when the request names one the config
	// does not list (or none).
	Model *config.Model
	// Requested is the model's canonical name when listed, otherwise the
	// name as the body gives it ("" for none).
	Requested string
}

// Select decides the model of a request whose body req (inspected from raw)
// arrived on route r: the priority header's model, then the body's (aliases
// resolved), then the route's default. Only text generation (generates) takes
// the route's models: an embeddings or image model is never replaced by a chat
// model. A listed model is looked up without copying its name out of raw.
func Select(cfg *config.Config, r *config.Route, priority string, generates bool, req *body.Request, raw []byte) Choice {
	var requested string
	if m := Priority(r, priority); m != nil && generates {
		requested = m.Name
	} else if name, ok := req.ModelBytes(raw); ok {
		if m := cfg.ModelBytes(name); m != nil {
			requested = m.Name
		} else {
			requested = string(name)
		}
	} else {
		requested = req.ModelName(raw)
	}
	if requested == "" && r.DefaultModel != nil && generates {
		requested = r.DefaultModel.Name
	}
	m := cfg.Model(requested)
	if m != nil {
		requested = m.Name
	}
	return Choice{Model: m, Requested: requested}
}
