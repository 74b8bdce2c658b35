package envoy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// Properties follow Envoy's attribute names (source/extensions/filters/common/expr/context.cc
// and source/extensions/common/wasm/context.cc findValue). A path is its segments joined by
// NUL, as the SDKs send it ("request\x00path"); a dotted string is not split, as in Envoy.
// Values are serialized like Envoy's serializeValue: strings as bytes, integers as 8-byte
// little-endian, booleans as one byte, timestamps and durations as int64 nanoseconds, maps
// as header pairs.
//
// Emulated: request.{path,url_path,host,scheme,method,headers,referer,useragent,id,time,
// protocol,size,total_size,duration}, response.{code,code_details,flags,headers,trailers,
// size,total_size}, source.{address,port}, destination.{address,port},
// connection.{id,mtls,requested_server_name,tls_version,subject_peer_certificate,
// uri_san_peer_certificate,dns_san_peer_certificate,sha256_peer_certificate_digest}, upstream.{address,port},
// xds.{route_name,cluster_name,route_metadata}, route_metadata, node.{id,cluster,metadata}, plugin_name, plugin_root_id,
// plugin_vm_id, and values set with proxy_set_property (Envoy's "wasm." filter state).
//
// Difference from Envoy: request.* reads the stream's current request headers in every
// phase; Envoy's attribute view can lose them outside the request-headers callbacks.

func i64(x int64) []byte { return le64(uint64(x)) }

func boolByte(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func splitHostPort(addr string) (string, int64) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.ParseInt(port, 10, 64)
	return host, p
}

func (v *vm) getProperty(path string) ([]byte, Status) {
	path = strings.TrimSuffix(path, "\x00")
	parts := strings.Split(path, "\x00")
	top := parts[0]
	rest := parts[1:]
	leaf := func(b []byte) ([]byte, Status) {
		if len(rest) > 1 {
			return nil, StatusNotFound
		}
		return b, StatusOK
	}
	switch top {
	case "plugin_name":
		if len(rest) == 0 {
			return []byte(v.plugin().cfg.PluginName), StatusOK
		}
		return nil, StatusNotFound
	case "plugin_root_id":
		if len(rest) == 0 {
			return []byte(v.plugin().cfg.RootID), StatusOK
		}
		return nil, StatusNotFound
	case "plugin_vm_id":
		if len(rest) == 0 {
			return []byte(v.plugin().cfg.VMID), StatusOK
		}
		return nil, StatusNotFound
	case "node":
		if len(rest) == 1 {
			switch rest[0] {
			case "id":
				return []byte(v.h.nodeID), StatusOK
			case "cluster":
				return []byte(v.h.nodeCluster), StatusOK
			}
		}
		if len(rest) >= 1 && rest[0] == "metadata" {
			return structProperty(v.h.nodeMetadata, rest[1:])
		}
		return nil, StatusNotFound
	}
	s := v.currentStream()
	if s == nil {
		return nil, StatusNotFound
	}
	if top == "route_metadata" && len(rest) == 0 {
		return s.routeMetadata()
	}
	if len(rest) == 0 {
		if val, ok := s.filterState[top]; ok {
			return val, StatusOK
		}
		return nil, StatusNotFound
	}
	field := rest[0]
	switch top {
	case "request":
		switch field {
		case "path":
			return leaf([]byte(getPair(s.reqH, ":path")))
		case "url_path":
			p := getPair(s.reqH, ":path")
			if i := strings.IndexByte(p, '?'); i >= 0 {
				p = p[:i]
			}
			return leaf([]byte(p))
		case "host":
			return leaf([]byte(getPair(s.reqH, ":authority")))
		case "scheme":
			return leaf([]byte(getPair(s.reqH, ":scheme")))
		case "method":
			return leaf([]byte(getPair(s.reqH, ":method")))
		case "referer":
			return leaf([]byte(getPair(s.reqH, "referer")))
		case "useragent":
			return leaf([]byte(getPair(s.reqH, "user-agent")))
		case "id":
			return leaf([]byte(getPair(s.reqH, "x-request-id")))
		case "protocol":
			return leaf([]byte(s.r.Proto))
		case "time":
			return leaf(i64(s.start.UnixNano()))
		case "duration":
			return leaf(i64(int64(time.Since(s.start))))
		case "size":
			return leaf(i64(s.reqBytes))
		case "total_size":
			return leaf(i64(s.reqBytes + int64(headerMap{&s.reqH}.byteSize())))
		case "headers":
			return mapProperty(s.reqH, rest[1:])
		}
	case "response":
		if s.respCode == 0 {
			return nil, StatusNotFound
		}
		switch field {
		case "code":
			return leaf(i64(int64(s.respCode)))
		case "code_details":
			return leaf([]byte(s.codeDetails))
		case "flags":
			return leaf(le64(0))
		case "size":
			return leaf(i64(s.respBytes))
		case "total_size":
			return leaf(i64(s.respBytes + int64(headerMap{&s.respH}.byteSize())))
		case "headers":
			return mapProperty(s.respH, rest[1:])
		case "trailers":
			return mapProperty(s.respT, rest[1:])
		}
	case "source":
		host, port := splitHostPort(s.r.RemoteAddr)
		switch field {
		case "address":
			return leaf([]byte(s.r.RemoteAddr))
		case "port":
			_ = host
			return leaf(i64(port))
		}
	case "destination":
		la, _ := s.r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if la == nil {
			return nil, StatusNotFound
		}
		switch field {
		case "address":
			return leaf([]byte(la.String()))
		case "port":
			_, port := splitHostPort(la.String())
			return leaf(i64(port))
		}
	case "connection":
		switch field {
		case "id":
			return leaf(le64(s.conn))
		case "mtls":
			return leaf(boolByte(s.r.TLS != nil && len(s.r.TLS.PeerCertificates) > 0))
		case "requested_server_name":
			if s.r.TLS != nil {
				return leaf([]byte(s.r.TLS.ServerName))
			}
			return leaf(nil)
		default:
			if b, ok := peerCertProperty(s.r.TLS, field); ok {
				return leaf(b)
			}
			return nil, StatusNotFound
		}
	case "upstream":
		if s.upstream == "" {
			return nil, StatusNotFound
		}
		switch field {
		case "address":
			return leaf([]byte(s.upstream))
		case "port":
			_, port := splitHostPort(s.upstream)
			return leaf(i64(port))
		}
	case "xds":
		switch field {
		case "route_name":
			if s.routeName == "" {
				return nil, StatusNotFound
			}
			return leaf([]byte(s.routeName))
		case "cluster_name":
			if s.cluster == "" {
				return nil, StatusNotFound
			}
			return leaf([]byte(s.cluster))
		case "route_metadata":
			if len(rest) > 1 {
				return nil, StatusNotFound
			}
			return s.routeMetadata()
		}
	}
	return nil, StatusNotFound
}

// peerCertProperty serves the connection.* attributes Envoy reads from the
// downstream TLS connection (source/extensions/filters/common/expr/context.cc,
// the SSL extractors): the TLS version, and of the peer's (client's) certificate
// its subject (RFC 2253), first URI SAN and first DNS SAN, and the SHA-256 of its
// DER as hex. Without TLS, without a client certificate, or without such a SAN
// the attribute is NotFound. The local certificate's attributes are not served.
func peerCertProperty(cs *tls.ConnectionState, field string) ([]byte, bool) {
	if cs == nil {
		return nil, false
	}
	if field == "tls_version" {
		switch cs.Version {
		case tls.VersionTLS13:
			return []byte("TLSv1.3"), true
		case tls.VersionTLS12:
			return []byte("TLSv1.2"), true
		}
		return nil, false
	}
	if len(cs.PeerCertificates) == 0 {
		return nil, false
	}
	c := cs.PeerCertificates[0]
	switch field {
	case "subject_peer_certificate":
		return []byte(c.Subject.String()), true
	case "uri_san_peer_certificate":
		if len(c.URIs) > 0 {
			return []byte(c.URIs[0].String()), true
		}
	case "dns_san_peer_certificate":
		if len(c.DNSNames) > 0 {
			return []byte(c.DNSNames[0]), true
		}
	case "sha256_peer_certificate_digest":
		sum := sha256.Sum256(c.Raw)
		return []byte(hex.EncodeToString(sum[:])), true
	}
	return nil, false
}

// routeMetadata is the matched route's metadata as Envoy serializes a message
// property: the envoy.config.core.v3.Metadata in protobuf bytes, empty when the
// route has none (context.cc findValue ROUTE_METADATA; the xds.route_metadata
// attribute of source/extensions/filters/common/expr/context.cc). Without a
// route (Config.Routes, or before routing) it is NotFound.
func (s *stream) routeMetadata() ([]byte, Status) {
	if s.route == nil {
		return nil, StatusNotFound
	}
	return s.route.Metadata, StatusOK
}

// structProperty serves a google.protobuf.Struct the way Envoy's attribute view
// does (source/extensions/filters/common/expr/context.cc; values serialized by
// serializeValue in source/extensions/common/wasm/context.cc): the struct as
// header pairs when every value is a string (else SerializationFailure), a
// field as its value (string bytes, a number as an 8-byte double, a bool as a
// byte), a nested struct by the same rules.
func structProperty(st *structpb.Struct, rest []string) ([]byte, Status) {
	if st == nil {
		return nil, StatusNotFound
	}
	if len(rest) == 0 {
		ps := make([]pair, 0, len(st.GetFields()))
		keys := make([]string, 0, len(st.GetFields()))
		for k := range st.GetFields() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sv, ok := st.GetFields()[k].GetKind().(*structpb.Value_StringValue)
			if !ok {
				return nil, StatusSerializationFailure
			}
			ps = append(ps, pair{k, sv.StringValue})
		}
		return encodePairs(ps), StatusOK
	}
	val, ok := st.GetFields()[rest[0]]
	if !ok {
		return nil, StatusNotFound
	}
	switch k := val.GetKind().(type) {
	case *structpb.Value_StructValue:
		return structProperty(k.StructValue, rest[1:])
	case *structpb.Value_StringValue:
		if len(rest) == 1 {
			return []byte(k.StringValue), StatusOK
		}
	case *structpb.Value_NumberValue:
		if len(rest) == 1 {
			return le64(math.Float64bits(k.NumberValue)), StatusOK
		}
	case *structpb.Value_BoolValue:
		if len(rest) == 1 {
			return boolByte(k.BoolValue), StatusOK
		}
	default:
		if len(rest) == 1 {
			return nil, StatusSerializationFailure
		}
	}
	return nil, StatusNotFound
}

func mapProperty(ps []pair, rest []string) ([]byte, Status) {
	switch len(rest) {
	case 0:
		return encodePairs(ps), StatusOK
	case 1:
		if v, ok := (headerMap{&ps}).get(rest[0]); ok {
			return []byte(v), StatusOK
		}
	}
	return nil, StatusNotFound
}

// setProperty stores a value in the stream's filter state under the path, like
// Envoy's Context::setProperty with the default (bytes) prototype; outside a stream
// it answers NotFound as Envoy does without stream info.
func (v *vm) setProperty(path string, value []byte) Status {
	s := v.currentStream()
	if s == nil {
		return StatusNotFound
	}
	// A property declared readonly (declare_property) takes one value: Envoy's
	// CelState::setValue refuses a second, and setProperty answers BadArgument.
	if d, ok := v.declared[path]; ok && d.readonly {
		if _, set := s.filterState[path]; set {
			return StatusBadArgument
		}
	}
	s.filterState[path] = value
	return StatusOK
}
