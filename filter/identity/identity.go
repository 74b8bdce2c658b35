// Package identity turns what the mesh knows about a caller into the consumer
// value that keys limits, budgets and reports: the workload's node metadata,
// the peer certificate's SPIFFE ID, or a validated JWT claim. It is pure: the
// filter reads the host properties and hands their bytes here.
package identity

import "unsafe"

// MaxLen bounds a consumer value made here; longer identities are not
// accepted (Istio's namespace and service account names stay far below it).
const MaxLen = 128

// Workload is "<namespace>/<service account>" from the values Istio puts in
// Envoy's node metadata (NAMESPACE, SERVICE_ACCOUNT), and false when either is
// missing or not a Kubernetes name. Call it once per configuration, not per
// request: it allocates.
func Workload(namespace, serviceAccount []byte) (string, bool) {
	if !kubeName(namespace) || !kubeName(serviceAccount) || len(namespace)+1+len(serviceAccount) > MaxLen {
		return "", false
	}
	return string(namespace) + "/" + string(serviceAccount), true
}

// Peer is "<namespace>/<service account>" from a SPIFFE ID of Istio's form,
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>, and false for
// anything else. The result aliases uri: the caller owns uri and must not
// change it while the value is in use.
func Peer(uri []byte) (string, bool) {
	const scheme = "spiffe://"
	if len(uri) <= len(scheme) || string(uri[:len(scheme)]) != scheme {
		return "", false
	}
	rest := uri[len(scheme):]
	slash := indexByte(rest, '/')
	if slash <= 0 {
		return "", false // no trust domain, or no path
	}
	path := rest[slash:] // "/ns/<ns>/sa/<sa>"
	if len(path) < len("/ns/a/sa/b") || string(path[:4]) != "/ns/" {
		return "", false
	}
	id := path[4:] // "<ns>/sa/<sa>"
	i := indexByte(id, '/')
	if i <= 0 || len(id) < i+4 || string(id[i:i+4]) != "/sa/" {
		return "", false
	}
	ns, sa := id[:i], id[i+4:]
	if !kubeName(ns) || !kubeName(sa) || len(ns)+1+len(sa) > MaxLen {
		return "", false
	}
	// "<ns>/sa/<sa>" → "<ns>/<sa>" in place, in the caller's bytes.
	copy(id[i+1:], sa)
	out := id[:i+1+len(sa)]
	return unsafe.String(unsafe.SliceData(out), len(out)), true
}

// Claim is a JWT claim's value as Envoy serializes a string property (its
// bytes), and false when it is empty, longer than MaxLen, or holds anything
// but visible ASCII other than '"', '\', ';' and '=' (the value may appear in
// descriptors and metric labels). The result aliases v.
func Claim(v []byte) (string, bool) {
	if len(v) == 0 || len(v) > MaxLen {
		return "", false
	}
	for _, c := range v {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ';' || c == '=' {
			return "", false
		}
	}
	return unsafe.String(unsafe.SliceData(v), len(v)), true
}

// kubeName reports whether b is a Kubernetes object name as namespaces and
// service accounts use them (RFC 1123 subdomain: lowercase letters, digits,
// '-' and '.', at most 253).
func kubeName(b []byte) bool {
	if len(b) == 0 || len(b) > 253 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
