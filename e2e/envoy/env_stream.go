package envoy

import (
	"context"
	"strings"
)

// Stream control and contexts: local replies, continue/close, the route cache,
// the effective context, done and get_status (proxy-wasm-cpp-host
// src/exports.cc; Envoy's Context::sendLocalResponse, continueStream,
// closeStream).
var streamFuncs = []hostFunc{
	{name: "proxy_send_local_response", fn: proxySendLocalResponse},
	{name: "proxy_continue_stream", fn: proxyContinueStream, abis: []string{abi020, abi021}},
	{name: "proxy_close_stream", fn: proxyCloseStream, abis: []string{abi020, abi021}},
	{name: "proxy_continue_request", fn: proxyContinueRequest, abis: []string{abi010}},
	{name: "proxy_continue_response", fn: proxyContinueResponse, abis: []string{abi010}},
	{name: "proxy_clear_route_cache", fn: proxyClearRouteCache, abis: []string{abi010}},
	{name: "proxy_set_effective_context", fn: proxySetEffectiveContext},
	{name: "proxy_done", fn: proxyDone},
	{name: "proxy_get_status", fn: proxyGetStatus},
}

// proxySendLocalResponse records a local reply (see sendLocalResponse).
func proxySendLocalResponse(ctx context.Context, code, detPtr, detSize, bodyPtr, bodySize, hdrPtr, hdrSize uint32, grpcStatus int32) uint32 {
	v := vmFrom(ctx)
	details, ok1 := v.readString(detPtr, detSize)
	body, ok2 := v.read(bodyPtr, bodySize)
	hdrs, ok3 := v.read(hdrPtr, hdrSize)
	if !ok1 || !ok2 || !ok3 {
		return uint32(StatusInvalidMemoryAccess)
	}
	ps, _ := decodePairs(hdrs)
	v.sendLocalResponse(int(code), details, body, ps, grpcStatus)
	return uint32(StatusOK)
}

// proxyContinueStream resumes a paused stream (ABI 0.2.x).
func proxyContinueStream(ctx context.Context, typ uint32) uint32 {
	return uint32(vmFrom(ctx).continueStream(typ))
}

// proxyCloseStream resets the stream (ABI 0.2.x).
func proxyCloseStream(ctx context.Context, typ uint32) uint32 {
	return uint32(vmFrom(ctx).closeStream(typ))
}

// proxyContinueRequest is ABI 0.1.0's continue of the request.
func proxyContinueRequest(ctx context.Context) uint32 {
	return uint32(vmFrom(ctx).continueStream(streamRequest))
}

// proxyContinueResponse is ABI 0.1.0's continue of the response.
func proxyContinueResponse(ctx context.Context) uint32 {
	return uint32(vmFrom(ctx).continueStream(streamResponse))
}

// proxyClearRouteCache (ABI 0.1.0) clears the stream's route cache.
func proxyClearRouteCache(ctx context.Context) uint32 {
	v := vmFrom(ctx)
	if s := v.currentStream(); s != nil {
		s.routeCleared = true
	}
	return uint32(StatusOK)
}

// proxySetEffectiveContext makes later host calls of this callback act on
// another live context; an unknown id is BadArgument.
func proxySetEffectiveContext(ctx context.Context, id uint32) uint32 {
	v := vmFrom(ctx)
	if v.roots[id] == nil && v.streams[id] == nil {
		return uint32(StatusBadArgument)
	}
	v.effective = id
	return uint32(StatusOK)
}

// proxyDone: WasmBase::done lets only a root context that answered
// proxy_on_done with false call it; this host never defers a root context's
// deletion, so it is NotFound.
func proxyDone(ctx context.Context) uint32 {
	return uint32(StatusNotFound)
}

// proxyGetStatus reports the gRPC status of the callback running.
func proxyGetStatus(ctx context.Context, codePtr, ptrPtr, sizePtr uint32) uint32 {
	v := vmFrom(ctx)
	if !v.putU32(codePtr, v.statusCode) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(v.copyOut([]byte(v.statusMsg), ptrPtr, sizePtr))
}

// sendLocalResponse records a local reply; it takes effect after the current callback
// returns (Envoy defers it with addAfterVmCallAction), and the current callback's
// result becomes a stop (proxy-wasm-cpp-host stopNextIteration). On a root context
// without a stream nothing is sent.
func (v *vm) sendLocalResponse(code int, details string, body []byte, hdrs []pair, grpcStatus int32) {
	v.stopNext = true
	s := v.currentStream()
	if s == nil {
		return
	}
	l := &localReply{code: code, body: body, headers: hdrs, details: strings.Join(strings.Fields(details), "_"), grpcStatus: grpcStatus}
	v.after = append(v.after, func() {
		if s.local == nil {
			s.local = l
		}
		s.signal()
	})
}

// continueStream resumes a paused stream after the current callback
// (Envoy's Context::continueStream); continuing the request also ends access to the
// request headers, body and trailers at once, as in Envoy.
func (v *vm) continueStream(typ uint32) Status {
	switch typ {
	case streamRequest, streamResponse:
	case streamDownstream:
		return StatusOK
	case streamUpstream:
		return StatusUnimplemented
	default:
		return StatusBadArgument
	}
	s := v.currentStream()
	if s == nil {
		return StatusOK
	}
	if typ == streamRequest {
		s.reqHOpen, s.reqTOpen = false, false
		v.after = append(v.after, func() { s.continueReq = true; s.signal() })
	} else {
		v.after = append(v.after, func() { s.continueResp = true; s.signal() })
	}
	return StatusOK
}

// closeStream resets the stream after the current callback (Envoy's Context::closeStream).
func (v *vm) closeStream(typ uint32) Status {
	if typ > streamUpstream {
		return StatusBadArgument
	}
	s := v.currentStream()
	if s != nil && (typ == streamRequest || typ == streamResponse) {
		v.after = append(v.after, func() { s.resetAsked = true; s.signal() })
	}
	return StatusOK
}
