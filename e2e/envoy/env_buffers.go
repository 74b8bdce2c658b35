package envoy

import "context"

// Buffers: the body, callout, gRPC and configuration buffers
// (proxy-wasm-cpp-host src/exports.cc get_buffer_bytes, get_buffer_status,
// set_buffer_bytes; Envoy's Context::getBuffer), and the 0.1.0
// proxy_get_configuration.
var bufferFuncs = []hostFunc{
	{name: "proxy_get_configuration", fn: proxyGetConfiguration, abis: []string{abi010}},
	{name: "proxy_get_buffer_bytes", fn: proxyGetBufferBytes},
	{name: "proxy_get_buffer_status", fn: proxyGetBufferStatus},
	{name: "proxy_set_buffer_bytes", fn: proxySetBufferBytes},
}

// proxyGetConfiguration (ABI 0.1.0) returns the plugin configuration while
// proxy_on_configure runs, the VM configuration otherwise.
func proxyGetConfiguration(ctx context.Context, ptrPtr, sizePtr uint32) uint32 {
	v := vmFrom(ctx)
	data := v.h.cfg.VMConfig
	if v.configuring {
		data = v.pluginConfig
	}
	return uint32(v.copyOut(data, ptrPtr, sizePtr))
}

// proxyGetBufferBytes copies part of a buffer out; proxy-wasm-cpp-host
// src/exports.cc get_buffer_bytes never reads past the end, and a zero length
// returns Ok without touching the return pointers.
func proxyGetBufferBytes(ctx context.Context, typ, start, length, ptrPtr, sizePtr uint32) uint32 {
	v := vmFrom(ctx)
	if typ > bufMax {
		return uint32(StatusBadArgument)
	}
	buf, st := v.buffer(typ)
	if st != StatusOK {
		return uint32(st)
	}
	if uint64(start)+uint64(length) > 0xffffffff {
		return uint32(StatusBadArgument)
	}
	if start > uint32(len(buf)) {
		return uint32(StatusOK)
	}
	if start+length > uint32(len(buf)) {
		length = uint32(len(buf)) - start
	}
	if length == 0 {
		return uint32(StatusOK)
	}
	return uint32(v.copyOut(buf[start:start+length], ptrPtr, sizePtr))
}

// proxyGetBufferStatus reports a buffer's length (flags are always 0).
func proxyGetBufferStatus(ctx context.Context, typ, lengthPtr, flagsPtr uint32) uint32 {
	v := vmFrom(ctx)
	if typ > bufMax {
		return uint32(StatusBadArgument)
	}
	buf, st := v.buffer(typ)
	if st != StatusOK {
		return uint32(st)
	}
	if !v.putU32(lengthPtr, uint32(len(buf))) || !v.putU32(flagsPtr, 0) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// proxySetBufferBytes changes a mutable buffer (see setBuffer).
func proxySetBufferBytes(ctx context.Context, typ, start, length, dataPtr, dataSize uint32) uint32 {
	v := vmFrom(ctx)
	if typ > bufMax {
		return uint32(StatusBadArgument)
	}
	data, ok := v.read(dataPtr, dataSize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(v.setBuffer(typ, start, length, data))
}

// buffer returns the bytes of a buffer type as Envoy's Context::getBuffer does.
func (v *vm) buffer(typ uint32) ([]byte, Status) {
	s := v.currentStream()
	switch typ {
	case bufRequestBody:
		if s != nil && s.reqBodyOpen {
			return s.reqBody, StatusOK
		}
		return nil, StatusOK
	case bufResponseBody:
		if s != nil && s.respBodyOpen {
			return s.respBody, StatusOK
		}
		return nil, StatusOK
	case bufDownstreamData, bufUpstreamData, bufCallData:
		return nil, StatusOK
	case bufHTTPCallResponse:
		if v.httpResp != nil {
			return v.httpResp.body, StatusOK
		}
		return nil, StatusNotFound
	case bufGrpcReceive:
		return v.grpcRecv, StatusOK
	case bufVMConfig:
		return v.h.cfg.VMConfig, StatusOK
	case bufPluginConfig:
		if v.configuring {
			return v.pluginConfig, StatusOK
		}
		return nil, StatusNotFound
	}
	return nil, StatusNotFound
}

// setBuffer changes a body buffer as Envoy's Buffer::copyFrom does: start 0 drains
// length bytes and prepends the data (start 0, length = size replaces the body);
// start at or past the end appends; anything else is BadArgument. Buffers that are
// not mutable answer BadArgument. A body is changed in place where it can be, so a
// call costs the size of its data, as Envoy's does (bodybuf.go).
func (v *vm) setBuffer(typ, start, length uint32, data []byte) Status {
	s := v.currentStream()
	var b, base *[]byte
	switch typ {
	case bufRequestBody:
		if s != nil && s.reqBodyOpen {
			b, base = &s.reqBody, &s.reqBase
		}
	case bufResponseBody:
		if s != nil && s.respBodyOpen {
			b, base = &s.respBody, &s.respBase
		}
	case bufGrpcReceive:
		b = &v.grpcRecv
	default:
		if typ > bufMax {
			return StatusNotFound
		}
	}
	if b == nil {
		return StatusBadArgument
	}
	cur := *b
	switch {
	case start == 0:
		if int(length) > len(cur) {
			length = uint32(len(cur))
		}
		if base != nil {
			*base, *b = replacePrefix(*base, cur, int(length), data)
			break
		}
		*b = append(append([]byte(nil), data...), cur[length:]...)
	case int(start) >= len(cur):
		if base != nil {
			*base, *b = appendBody(*base, cur, data)
			break
		}
		*b = append(append([]byte(nil), cur...), data...)
	default:
		return StatusBadArgument
	}
	return StatusOK
}
