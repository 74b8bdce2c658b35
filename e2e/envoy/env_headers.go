package envoy

import "context"

// Header maps: a stream's request/response headers and trailers, gRPC
// metadata and an http callout's answer (proxy-wasm-cpp-host src/exports.cc
// get_header_map_value ... get_header_map_size; Envoy's Context::getHeaderMap*).
var headerFuncs = []hostFunc{
	{name: "proxy_get_header_map_value", fn: proxyGetHeaderMapValue},
	{name: "proxy_get_header_map_pairs", fn: proxyGetHeaderMapPairs},
	{name: "proxy_set_header_map_pairs", fn: proxySetHeaderMapPairs},
	{name: "proxy_add_header_map_value", fn: proxyAddHeaderMapValue},
	{name: "proxy_replace_header_map_value", fn: proxyReplaceHeaderMapValue},
	{name: "proxy_remove_header_map_value", fn: proxyRemoveHeaderMapValue},
	{name: "proxy_get_header_map_size", fn: proxyGetHeaderMapSize},
}

// proxyGetHeaderMapValue answers the first value of a key, NotFound without one.
func proxyGetHeaderMapValue(ctx context.Context, typ, keyPtr, keySize, ptrPtr, sizePtr uint32) uint32 {
	v := vmFrom(ctx)
	if typ > mapMax {
		return uint32(StatusBadArgument)
	}
	key, ok := v.readString(keyPtr, keySize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	m := v.headerMap(typ)
	if m == nil {
		return uint32(StatusBadArgument)
	}
	val, found := m.get(key)
	if !found {
		return uint32(StatusNotFound)
	}
	return uint32(v.copyOutString(val, ptrPtr, sizePtr))
}

// proxyGetHeaderMapPairs serializes a whole map.
func proxyGetHeaderMapPairs(ctx context.Context, typ, ptrPtr, sizePtr uint32) uint32 {
	v := vmFrom(ctx)
	if typ > mapMax {
		return uint32(StatusBadArgument)
	}
	// Envoy's getHeaderMapPairs answers Ok with no pairs for a map not available now.
	var ps []pair
	if m := v.headerMap(typ); m != nil {
		ps = *m.ps
	}
	v.pairsBuf = appendPairs(v.pairsBuf[:0], ps)
	return uint32(v.copyOut(v.pairsBuf, ptrPtr, sizePtr))
}

// proxySetHeaderMapPairs replaces a whole map.
func proxySetHeaderMapPairs(ctx context.Context, typ, ptr, size uint32) uint32 {
	v := vmFrom(ctx)
	if typ > mapMax {
		return uint32(StatusBadArgument)
	}
	data, ok := v.read(ptr, size)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	m := v.mutableHeaderMap(typ)
	if m == nil {
		return uint32(StatusBadArgument)
	}
	ps, _ := decodePairs(data)
	m.setAll(ps)
	v.headersModified(typ)
	return uint32(StatusOK)
}

// proxyAddHeaderMapValue appends a value.
func proxyAddHeaderMapValue(ctx context.Context, typ, keyPtr, keySize, valPtr, valSize uint32) uint32 {
	return uint32(vmFrom(ctx).modifyHeader(typ, keyPtr, keySize, valPtr, valSize, func(m headerMap, k, val string) { m.add(k, val) }))
}

// proxyReplaceHeaderMapValue sets a key to one value.
func proxyReplaceHeaderMapValue(ctx context.Context, typ, keyPtr, keySize, valPtr, valSize uint32) uint32 {
	return uint32(vmFrom(ctx).modifyHeader(typ, keyPtr, keySize, valPtr, valSize, func(m headerMap, k, val string) { m.set(k, val) }))
}

// proxyRemoveHeaderMapValue removes every value of a key.
func proxyRemoveHeaderMapValue(ctx context.Context, typ, keyPtr, keySize uint32) uint32 {
	return uint32(vmFrom(ctx).modifyHeader(typ, keyPtr, keySize, 0, 0, func(m headerMap, k, _ string) { m.del(k) }))
}

// proxyGetHeaderMapSize reports the byte size of a map's keys and values.
func proxyGetHeaderMapSize(ctx context.Context, typ, retPtr uint32) uint32 {
	v := vmFrom(ctx)
	if typ > mapMax {
		return uint32(StatusBadArgument)
	}
	m := v.mutableHeaderMap(typ)
	if m == nil {
		return uint32(StatusBadArgument)
	}
	if !v.putU32(retPtr, uint32(m.byteSize())) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// headerMap returns a header map readable now, or nil (Envoy answers BadArgument).
// Envoy exposes a stream's request/response headers only during their own callbacks
// (and while the stream is paused in them): after a callback returns Continue the map
// pointer is cleared (context.cc decodeHeaders/encodeHeaders). In proxy_on_log the final
// request and response headers are readable (access-log phase).
func (v *vm) headerMap(typ uint32) *headerMap {
	s := v.currentStream()
	switch typ {
	case mapRequestHeaders, mapRequestTrailers, mapResponseHeaders, mapResponseTrailers:
		if s == nil {
			return nil
		}
		if s.logPhase {
			switch typ {
			case mapRequestHeaders:
				return &headerMap{&s.reqH}
			case mapResponseHeaders:
				return &headerMap{&s.respH}
			case mapResponseTrailers:
				return &headerMap{&s.respT}
			}
			return nil
		}
		return v.mutableHeaderMap(typ)
	case mapGrpcInitialMetadata:
		if v.grpcMDOpen == mapGrpcInitialMetadata {
			return &headerMap{&v.grpcInitMD}
		}
	case mapGrpcTrailingMetadata:
		if v.grpcMDOpen == mapGrpcTrailingMetadata {
			return &headerMap{&v.grpcTrailMD}
		}
	case mapHTTPCallResponseHeaders:
		if v.httpResp != nil {
			return &headerMap{&v.httpResp.headers}
		}
	case mapHTTPCallResponseTrailers:
		if v.httpResp != nil {
			return &headerMap{&v.httpResp.trailers}
		}
	}
	return nil
}

// mutableHeaderMap returns a stream header map that may be changed now, or nil.
func (v *vm) mutableHeaderMap(typ uint32) *headerMap {
	s := v.currentStream()
	if s == nil || s.logPhase {
		return nil
	}
	switch typ {
	case mapRequestHeaders:
		if s.reqHOpen {
			return &headerMap{&s.reqH}
		}
	case mapRequestTrailers:
		if s.reqTOpen {
			return &headerMap{&s.reqT}
		}
	case mapResponseHeaders:
		if s.respHOpen {
			return &headerMap{&s.respH}
		}
	case mapResponseTrailers:
		if s.respTOpen {
			return &headerMap{&s.respT}
		}
	}
	return nil
}

func (v *vm) modifyHeader(typ, keyPtr, keySize, valPtr, valSize uint32, op func(headerMap, string, string)) Status {
	if typ > mapMax {
		return StatusBadArgument
	}
	key, ok1 := v.readString(keyPtr, keySize)
	val, ok2 := v.readString(valPtr, valSize)
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	m := v.mutableHeaderMap(typ)
	if m == nil {
		return StatusBadArgument
	}
	op(*m, key, val)
	v.headersModified(typ)
	return StatusOK
}

// headersModified: a change to the request headers clears the route cache
// (Envoy's Context::onHeadersModified → clearRouteCache).
func (v *vm) headersModified(typ uint32) {
	if typ == mapRequestHeaders {
		if s := v.currentStream(); s != nil {
			s.routeCleared = true
		}
	}
}
