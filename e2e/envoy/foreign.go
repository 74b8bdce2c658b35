package envoy

import (
	"bytes"
	"compress/zlib"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// Foreign functions: the ones Envoy registers for every wasm extension
// (source/extensions/common/wasm/foreign.cc, RegisterForeignFunction), called
// through proxy_call_foreign_function (proxy-wasm-cpp-host src/exports.cc
// call_foreign_function: a result is allocated in the VM and its address and
// size written to the return pointers; a function without a result leaves them
// alone). An unknown name is NotFound.
//
// Emulated: compress, uncompress, clear_route_cache, set_envoy_filter_state,
// declare_property. Not emulated (NotFound here): sign and verify_signature, and
// expr_create/expr_evaluate/expr_delete (CEL, only in Envoy builds with the CEL
// parser).

// maxUncompressed bounds what uncompress produces: Envoy grows its buffer without
// bound, a hostile argument could make it grow the host's memory.
const maxUncompressed = 64 << 20

// wellKnownFilterState are the filter state keys Envoy has object factories for
// (docs/root/configuration/advanced/well_known_filter_state.rst); set_envoy_filter_state
// answers NotFound for any other key (Context::setEnvoyFilterState). The host keeps the
// value (readable as a property of that name) but acts on none of them.
var wellKnownFilterState = map[string]bool{
	"envoy.network.upstream_server_name":                  true,
	"envoy.network.application_protocols":                 true,
	"envoy.network.upstream_subject_alt_names":            true,
	"envoy.tcp_proxy.cluster":                             true,
	"envoy.udp_proxy.cluster":                             true,
	"envoy.network.transport_socket.original_dst_address": true,
	"envoy.filters.listener.original_dst.local_ip":        true,
	"envoy.filters.listener.original_dst.remote_ip":       true,
}

// propertyDecl is a declare_property: the value's type and whether it may be set
// only once (Envoy's CelStatePrototype; CelState::setValue refuses a second set
// of a readonly value).
type propertyDecl struct {
	readonly bool
	typ      uint64 // WasmType: 0 bytes, 1 string, 2 flatbuffers, 3 protobuf
}

// callForeign runs one foreign function; result is nil for functions without one.
func (v *vm) callForeign(name string, args []byte) (result []byte, hasResult bool, st Status) {
	switch name {
	case "compress":
		// zlib's compress(): a zlib stream at the default level. The bytes may
		// differ from C zlib's; any zlib reader (and uncompress) takes them.
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		if _, err := w.Write(args); err != nil {
			return nil, false, StatusSerializationFailure
		}
		if err := w.Close(); err != nil {
			return nil, false, StatusSerializationFailure
		}
		return buf.Bytes(), true, StatusOK
	case "uncompress":
		r, err := zlib.NewReader(bytes.NewReader(args))
		if err != nil {
			return nil, false, StatusSerializationFailure
		}
		out, err := io.ReadAll(io.LimitReader(r, maxUncompressed+1))
		if err != nil || len(out) > maxUncompressed {
			return nil, false, StatusSerializationFailure
		}
		return out, true, StatusOK
	case "clear_route_cache":
		if s := v.currentStream(); s != nil {
			s.routeCleared = true
		}
		return nil, false, StatusOK
	case "set_envoy_filter_state":
		// SetEnvoyFilterStateArguments: path = 1, value = 2, span = 3.
		f, ok := protoFields(args)
		if !ok {
			return nil, false, StatusBadArgument
		}
		path := string(f[1])
		if !wellKnownFilterState[path] {
			return nil, false, StatusNotFound
		}
		s := v.currentStream()
		if s == nil {
			return nil, false, StatusNotFound
		}
		s.filterState[path] = append([]byte(nil), f[2]...)
		return nil, false, StatusOK
	case "declare_property":
		// DeclarePropertyArguments: name = 1, type = 2, span = 3, schema = 4, readonly = 5.
		f, ok := protoFields(args)
		if !ok || len(f[1]) == 0 {
			return nil, false, StatusBadArgument
		}
		d := propertyDecl{readonly: varintField(f[5]) != 0, typ: varintField(f[2])}
		if d.typ > 3 {
			return nil, false, StatusBadArgument
		}
		if v.declared == nil {
			v.declared = map[string]propertyDecl{}
		}
		v.declared[string(f[1])] = d
		return nil, false, StatusOK
	}
	return nil, false, StatusNotFound
}

// protoFields reads a flat protobuf message: each field's last value, by number;
// varints are kept in their wire form for varintField.
func protoFields(b []byte) (map[protowire.Number][]byte, bool) {
	out := map[protowire.Number][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, false
			}
			out[num], b = v, b[m:]
		case protowire.VarintType:
			_, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, false
			}
			out[num], b = b[:m], b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, false
			}
			b = b[m:]
		}
	}
	return out, true
}

func varintField(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0
	}
	return v
}
