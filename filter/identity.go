package main

import (
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/identity"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
)

// Host properties the consumer's identity comes from (Envoy's attribute
// names: source/extensions/filters/common/expr/context.h and context.cc).
var (
	// Istio's injector puts the workload's namespace and service account in
	// the Envoy node's metadata; the application cannot change them.
	nodeNamespacePath      = []string{"node", "metadata", "NAMESPACE"}
	nodeServiceAccountPath = []string{"node", "metadata", "SERVICE_ACCOUNT"}
	// The first URI SAN of the downstream peer's certificate: Envoy sets it
	// only on a TLS connection whose peer presented a certificate the
	// listener validated (Istio's mTLS).
	peerURIPath = []string{"connection", "uri_san_peer_certificate"}
)

// jwtPayloadPath is where a validated JWT's claims are: Envoy's jwt_authn
// filter writes the payload to dynamic metadata under its filter name and the
// provider's payload_in_metadata key (source/extensions/filters/http/jwt_authn/
// authenticator.cc and filter.cc, setExtractedData → setDynamicMetadata), and
// Istio names that key "payload" for every RequestAuthentication rule
// (pilot/pkg/xds/filters, EnvoyJwtFilterPayload, used by
// pilot/pkg/security/authn's jwt filter builder).
func jwtClaimPath(claim string) []string {
	return []string{"metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "payload", claim}
}

// readWorkload reads this Envoy's workload identity from its node metadata,
// once per configuration: it does not change while the VM lives.
func (p *plugin) readWorkload() {
	p.workload = config.Unauthenticated
	ns, err := proxywasm.GetProperty(nodeNamespacePath)
	if err != nil {
		return
	}
	sa, err := proxywasm.GetProperty(nodeServiceAccountPath)
	if err != nil {
		return
	}
	if w, ok := identity.Workload(ns, sa); ok {
		p.workload = w
	}
}

// identity is the consumer of the stream in its request-headers phase, from
// the mesh's identity as the route's consumer says: config.Unauthenticated
// when the identity is missing or malformed.
func (s *stream) identity(c *config.Consumer) string {
	switch c.From {
	case config.ConsumerFromWorkload:
		return s.plugin.workload
	case config.ConsumerFromPeer:
		if b, err := proxywasm.GetProperty(peerURIPath); err == nil {
			if v, ok := identity.Peer(b); ok {
				return v
			}
		}
	case config.ConsumerFromClaim:
		if b, err := proxywasm.GetProperty(s.state.claimPath); err == nil {
			if v, ok := identity.Claim(b); ok {
				return v
			}
		}
	}
	return config.Unauthenticated
}
