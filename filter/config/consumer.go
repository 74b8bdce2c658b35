package config

import (
	"strconv"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// ConsumerSource says where a route's consumer comes from.
type ConsumerSource uint8

// Consumer sources. The mesh's identities (workload, peer, claim) are set by
// Envoy and Istio, not by the calling application; a header is only as
// trustworthy as whatever sets it.
const (
	// ConsumerNone: the route has no consumer; limits and budgets are the route's.
	ConsumerNone ConsumerSource = iota
	// ConsumerFromHeader: a request header's value.
	ConsumerFromHeader
	// ConsumerFromWorkload: "<namespace>/<service account>" of the workload
	// whose Envoy runs the filter, from its node metadata (sidecar mode).
	ConsumerFromWorkload
	// ConsumerFromPeer: "<namespace>/<service account>" from the SPIFFE URI SAN
	// of the downstream peer's certificate (gateway mode).
	ConsumerFromPeer
	// ConsumerFromClaim: a claim of the JWT that Envoy's jwt_authn filter
	// validated (Istio's RequestAuthentication).
	ConsumerFromClaim
)

// DefaultDroppedConsumerHeader is the client header an identity-sourced
// consumer removes when the route names none: the header consumers were
// conventionally sent in.
const DefaultDroppedConsumerHeader = "x-tenant"

// Unauthenticated is the consumer of a request without the identity its route
// reads: no verified peer certificate, no validated JWT claim, no node
// metadata. All such requests share it.
const Unauthenticated = "unauthenticated"

var consumerSources = [...]string{
	ConsumerNone:         "",
	ConsumerFromHeader:   "header",
	ConsumerFromWorkload: "workload",
	ConsumerFromPeer:     "peer",
	ConsumerFromClaim:    "claim",
}

// String is the source's name in config.
func (s ConsumerSource) String() string {
	if int(s) < len(consumerSources) {
		return consumerSources[s]
	}
	return "unknown"
}

// Identity reports whether the source is the mesh's, not a client's header.
func (s ConsumerSource) Identity() bool {
	return s == ConsumerFromWorkload || s == ConsumerFromPeer || s == ConsumerFromClaim
}

// Consumer says where a route's consumer comes from. The one value keys the
// route's local limits, the consumer descriptor of its global limits, consumer
// budgets and outcome reports.
type Consumer struct {
	From ConsumerSource
	// Header is, for ConsumerFromHeader, the header holding the consumer; for
	// the identity sources, the client-sent header the filter removes so it
	// neither counts nor reaches the provider.
	Header string
	// Claim is, for ConsumerFromClaim, the claim of the validated JWT's payload.
	Claim string
}

// consumer reads a route's {"from": "workload"|"peer"|"claim"|"header",
// "header", "claim"}.
func (d *decoder) consumer(path string, v *jsonlite.Value, r *Route) error {
	if v == nil {
		return nil
	}
	if err := object(path, v, "from", "header", "claim"); err != nil {
		return err
	}
	from, err := requiredStr(path, v, "from")
	if err != nil {
		return err
	}
	c := Consumer{}
	switch from {
	case "workload":
		c.From = ConsumerFromWorkload
	case "peer":
		c.From = ConsumerFromPeer
	case "claim":
		c.From = ConsumerFromClaim
	case "header":
		c.From = ConsumerFromHeader
	default:
		return fail(join(path, "from"), "unknown source "+strconv.Quote(from)+" (known: workload, peer, claim, header)")
	}
	if c.Header, err = str(path, v, "header"); err != nil {
		return err
	}
	if c.Header != "" {
		if err := checkHeaderName(join(path, "header"), c.Header); err != nil {
			return err
		}
	}
	if c.Claim, err = str(path, v, "claim"); err != nil {
		return err
	}
	switch c.From {
	case ConsumerFromHeader:
		if c.Header == "" {
			return fail(join(path, "header"), "is required when the consumer comes from a header")
		}
	case ConsumerFromClaim:
		if c.Claim == "" {
			return fail(join(path, "claim"), "is required when the consumer comes from a claim")
		}
		if !visibleASCII(c.Claim, 128) {
			return fail(join(path, "claim"), strconv.Quote(c.Claim)+" must be 1 to 128 visible ASCII characters")
		}
	}
	if c.From != ConsumerFromClaim && c.Claim != "" {
		return fail(join(path, "claim"), "applies only to \"from\": \"claim\"")
	}
	if c.From.Identity() && c.Header == "" {
		c.Header = DefaultDroppedConsumerHeader
	}
	r.Consumer = c
	return nil
}

// visibleASCII reports whether s is 1 to max printable ASCII characters
// without spaces.
func visibleASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
