package envoy

import (
	"context"
	"time"
)

// Callouts: http_call and the gRPC calls and streams (proxy-wasm-cpp-host
// src/exports.cc; Envoy's Context::httpCall, grpcCall, grpcStream; the
// implementations are in callout.go).
var calloutFuncs = []hostFunc{
	{name: "proxy_http_call", fn: proxyHttpCall},
	{name: "proxy_grpc_call", fn: proxyGrpcCall},
	{name: "proxy_grpc_stream", fn: proxyGrpcStream},
	{name: "proxy_grpc_send", fn: proxyGrpcSend},
	{name: "proxy_grpc_cancel", fn: proxyGrpcCancel},
	{name: "proxy_grpc_close", fn: proxyGrpcClose},
}

// proxyHttpCall starts an http callout (see httpCall).
func proxyHttpCall(ctx context.Context, uriPtr, uriSize, hdrPtr, hdrSize, bodyPtr, bodySize, trPtr, trSize, timeout, tokenPtr uint32) uint32 {
	v := vmFrom(ctx)
	uri, ok1 := v.readString(uriPtr, uriSize)
	hdrs, ok2 := v.read(hdrPtr, hdrSize)
	body, ok3 := v.read(bodyPtr, bodySize)
	trs, ok4 := v.read(trPtr, trSize)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return uint32(StatusInvalidMemoryAccess)
	}
	// src/exports.cc http_call writes the token first to check the pointer.
	if !v.putU32(tokenPtr, 0) {
		return uint32(StatusInvalidMemoryAccess)
	}
	hp, _ := decodePairs(hdrs)
	tp, _ := decodePairs(trs)
	tok, st := v.httpCall(uri, hp, body, tp, int32(timeout))
	v.putU32(tokenPtr, tok)
	return uint32(st)
}

// proxyGrpcCall starts a unary gRPC call (see grpcCall).
func proxyGrpcCall(ctx context.Context, svcPtr, svcSize, namePtr, nameSize, methPtr, methSize, mdPtr, mdSize, msgPtr, msgSize, timeout, tokenPtr uint32) uint32 {
	v := vmFrom(ctx)
	svc, ok1 := v.read(svcPtr, svcSize)
	name, ok2 := v.readString(namePtr, nameSize)
	meth, ok3 := v.readString(methPtr, methSize)
	md, ok4 := v.read(mdPtr, mdSize)
	msg, ok5 := v.read(msgPtr, msgSize)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return uint32(StatusInvalidMemoryAccess)
	}
	mp, _ := decodePairs(md)
	tok, st := v.grpcCall(svc, name, meth, mp, msg, time.Duration(timeout)*time.Millisecond)
	if st != StatusOK {
		return uint32(st)
	}
	if !v.putU32(tokenPtr, tok) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// proxyGrpcStream opens a gRPC stream (see grpcStreamOpen).
func proxyGrpcStream(ctx context.Context, svcPtr, svcSize, namePtr, nameSize, methPtr, methSize, mdPtr, mdSize, tokenPtr uint32) uint32 {
	v := vmFrom(ctx)
	svc, ok1 := v.read(svcPtr, svcSize)
	name, ok2 := v.readString(namePtr, nameSize)
	meth, ok3 := v.readString(methPtr, methSize)
	md, ok4 := v.read(mdPtr, mdSize)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return uint32(StatusInvalidMemoryAccess)
	}
	mp, _ := decodePairs(md)
	tok, st := v.grpcStreamOpen(svc, name, meth, mp)
	if st != StatusOK {
		return uint32(st)
	}
	if !v.putU32(tokenPtr, tok) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// proxyGrpcSend sends on a gRPC stream.
func proxyGrpcSend(ctx context.Context, tok, msgPtr, msgSize, endStream uint32) uint32 {
	v := vmFrom(ctx)
	msg, ok := v.read(msgPtr, msgSize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(v.grpcSend(tok, msg, endStream != 0))
}

// proxyGrpcCancel cancels a gRPC call or stream.
func proxyGrpcCancel(ctx context.Context, tok uint32) uint32 {
	return uint32(vmFrom(ctx).grpcCancel(tok))
}

// proxyGrpcClose half-closes a gRPC stream.
func proxyGrpcClose(ctx context.Context, tok uint32) uint32 {
	return uint32(vmFrom(ctx).grpcClose(tok))
}
