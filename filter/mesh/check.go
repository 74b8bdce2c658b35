package mesh

import (
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/rls"
)

// MaxEntries is the most entries a descriptor has: the kind=tokens entry and
// one per descriptor key.
const MaxEntries = 1 + len(config.DescriptorKeyNames)

// TokensEntry leads the token descriptor, so a rate limit config tells it from
// the request descriptor: (kind=tokens, route=chat, ...).
var TokensEntry = rls.Entry{Key: "kind", Value: "tokens"}

// Descriptor is a request's global limit descriptor. Its entries live in an
// array, so a stream holds one without allocating.
type Descriptor struct {
	entries [MaxEntries]rls.Entry
	n       int // entries after entries[0]
}

// Values are what a request's descriptor entries may say. Empty values are
// left out of the descriptor (a request without a consumer header matches
// the route's limit, not a consumer's).
type Values struct {
	Route, Provider, Model, Consumer string
}

// OverflowConsumer is the consumer descriptor value shared by every consumer
// beyond a route's maxConsumers; a client that sends it shares that counter.
const OverflowConsumer = "_overflow"

// NewDescriptor builds the descriptor of g's keys for a request.
func NewDescriptor(g *config.GlobalLimits, v Values) Descriptor {
	d := Descriptor{}
	d.entries[0] = TokensEntry
	for _, k := range g.Keys {
		var val string
		switch k {
		case config.KeyRoute:
			val = v.Route
		case config.KeyProvider:
			val = v.Provider
		case config.KeyModel:
			val = v.Model
		case config.KeyConsumer:
			val = v.Consumer
		}
		if val == "" {
			continue
		}
		d.n++
		d.entries[d.n] = rls.Entry{Key: config.DescriptorKeyNames[k], Value: val}
	}
	return d
}

// Requests are the entries of the request descriptor.
func (d *Descriptor) Requests() []rls.Entry { return d.entries[1 : d.n+1] }

// Tokens are the entries of the token descriptor.
func (d *Descriptor) Tokens() []rls.Entry { return d.entries[:d.n+1] }

// Empty reports whether the descriptor has no entries (every value was empty).
func (d *Descriptor) Empty() bool { return d.n == 0 }

// AppendCheck appends the admission request: the request descriptor (one hit)
// and, when g counts tokens, the token descriptor with hits_addend 0: it
// checks that the window's tokens are not already over the limit without
// counting any (the real usage is charged when the response ends).
func AppendCheck(dst []byte, g *config.GlobalLimits, d *Descriptor, scratch []rls.Descriptor) []byte {
	scratch = append(scratch[:0], rls.Descriptor{Entries: d.Requests()})
	if g.Tokens {
		scratch = append(scratch, rls.Descriptor{Entries: d.Tokens(), HitsAddendSet: true})
	}
	return rls.AppendRequest(dst, g.Domain, scratch, 1)
}

// Verdict is what a global limit check decided.
type Verdict uint8

// The verdicts.
const (
	// Allow: the request proceeds.
	Allow Verdict = iota
	// Deny: over a global limit; answer 429.
	Deny
	// Fail: no usable answer (no answer in time, an error status, garbage);
	// the route's failure mode decides.
	Fail
)

// Judge turns a decoded RateLimitResponse into a verdict. For Deny it says
// which kind of limit is exhausted (the first over-limit status: the request
// descriptor comes first, the token descriptor second) and the figures for
// OpenAI's headers: the limit, nothing remaining, and the time to the end of
// the service's window as the reset and the Retry-After.
func Judge(r *rls.Response) (Verdict, limits.Kind, limits.Decision) {
	switch r.Overall {
	case rls.CodeOK:
		return Allow, limits.Requests, limits.Decision{Allowed: true}
	case rls.CodeOverLimit:
	default:
		return Fail, limits.Requests, limits.Decision{}
	}
	kind := limits.Requests
	d := limits.Decision{}
	for i := range r.Statuses {
		st := &r.Statuses[i]
		if st.Code != rls.CodeOverLimit {
			continue
		}
		if i == 1 {
			kind = limits.Tokens
		}
		if st.HasLimit {
			d.Limit = int64(st.Limit.RequestsPerUnit)
		}
		if st.DurationUntilReset > 0 {
			d.ResetAfter, d.RetryAfter = st.DurationUntilReset, st.DurationUntilReset
		}
		break
	}
	return Deny, kind, d
}
