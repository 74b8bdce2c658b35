//go:build wasip1

package proxywasm

import "github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"

// The proxy-wasm callbacks. Each one delegates to guest, which routes it to
// the registered context.
//
// A panic in a filter callback would trap and take the whole VM (every
// stream of this worker) down. The exports recover it, log it at critical
// level, and answer the host as if the callback had returned its neutral
// value: ActionContinue for stream callbacks, false for start and
// configure, true for done. Native builds do not recover, so tests see the
// panic.

// recovered logs a recovered panic; it reports whether there was one.
func recovered(callback string, r any) bool {
	if r == nil {
		return false
	}
	msg := "non-error value"
	switch v := r.(type) {
	case error:
		msg = v.Error()
	case string:
		msg = v
	}
	abi.Log(abi.LogCritical, "panic in "+callback+": "+msg)
	return true
}

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion021() {}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) {
	defer func() { recovered("proxy_on_context_create", recover()) }()
	guest{}.OnContextCreate(contextID, parentID)
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID, size uint32) (ok bool) {
	defer func() {
		if recovered("proxy_on_vm_start", recover()) {
			ok = false
		}
	}()
	return guest{}.OnVMStart(rootID, size)
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, size uint32) (ok bool) {
	defer func() {
		if recovered("proxy_on_configure", recover()) {
			ok = false
		}
	}()
	return guest{}.OnConfigure(rootID, size)
}

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) {
	defer func() { recovered("proxy_on_tick", recover()) }()
	guest{}.OnTick(rootID)
}

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, queueID uint32) {
	defer func() { recovered("proxy_on_queue_ready", recover()) }()
	guest{}.OnQueueReady(rootID, queueID)
}

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) (ok bool) {
	defer func() {
		if recovered("proxy_on_done", recover()) {
			ok = true
		}
	}()
	return guest{}.OnDone(contextID)
}

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) {
	defer func() { recovered("proxy_on_log", recover()) }()
	guest{}.OnLog(contextID)
}

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) {
	defer func() { recovered("proxy_on_delete", recover()) }()
	guest{}.OnDelete(contextID)
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders uint32, endOfStream bool) (action uint32) {
	defer func() {
		if recovered("proxy_on_request_headers", recover()) {
			action = 0
		}
	}()
	return guest{}.OnRequestHeaders(contextID, numHeaders, endOfStream)
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, bodySize uint32, endOfStream bool) (action uint32) {
	defer func() {
		if recovered("proxy_on_request_body", recover()) {
			action = 0
		}
	}()
	return guest{}.OnRequestBody(contextID, bodySize, endOfStream)
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID, numTrailers uint32) (action uint32) {
	defer func() {
		if recovered("proxy_on_request_trailers", recover()) {
			action = 0
		}
	}()
	return guest{}.OnRequestTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders uint32, endOfStream bool) (action uint32) {
	defer func() {
		if recovered("proxy_on_response_headers", recover()) {
			action = 0
		}
	}()
	return guest{}.OnResponseHeaders(contextID, numHeaders, endOfStream)
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, bodySize uint32, endOfStream bool) (action uint32) {
	defer func() {
		if recovered("proxy_on_response_body", recover()) {
			action = 0
		}
	}()
	return guest{}.OnResponseBody(contextID, bodySize, endOfStream)
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID, numTrailers uint32) (action uint32) {
	defer func() {
		if recovered("proxy_on_response_trailers", recover()) {
			action = 0
		}
	}()
	return guest{}.OnResponseTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHTTPCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers uint32) {
	defer func() { recovered("proxy_on_http_call_response", recover()) }()
	guest{}.OnHTTPCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func proxyOnGrpcReceiveInitialMetadata(rootID, callID, numElements uint32) {
	defer func() { recovered("proxy_on_grpc_receive_initial_metadata", recover()) }()
	guest{}.OnGrpcReceiveInitialMetadata(rootID, callID, numElements)
}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGrpcReceive(rootID, callID, messageSize uint32) {
	defer func() { recovered("proxy_on_grpc_receive", recover()) }()
	guest{}.OnGrpcReceive(rootID, callID, messageSize)
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func proxyOnGrpcReceiveTrailingMetadata(rootID, callID, numElements uint32) {
	defer func() { recovered("proxy_on_grpc_receive_trailing_metadata", recover()) }()
	guest{}.OnGrpcReceiveTrailingMetadata(rootID, callID, numElements)
}

//go:wasmexport proxy_on_grpc_close
func proxyOnGrpcClose(rootID, callID, statusCode uint32) {
	defer func() { recovered("proxy_on_grpc_close", recover()) }()
	guest{}.OnGrpcClose(rootID, callID, statusCode)
}

//go:wasmexport proxy_on_new_connection
func proxyOnNewConnection(contextID uint32) (action uint32) {
	defer func() {
		if recovered("proxy_on_new_connection", recover()) {
			action = 0
		}
	}()
	return guest{}.OnNewConnection(contextID)
}

//go:wasmexport proxy_on_downstream_data
func proxyOnDownstreamData(contextID, dataSize uint32, endOfStream bool) (action uint32) {
	defer func() {
		if recovered("proxy_on_downstream_data", recover()) {
			action = 0
		}
	}()
	return guest{}.OnDownstreamData(contextID, dataSize, endOfStream)
}

//go:wasmexport proxy_on_downstream_connection_close
func proxyOnDownstreamConnectionClose(contextID, peerType uint32) {
	defer func() { recovered("proxy_on_downstream_connection_close", recover()) }()
	guest{}.OnDownstreamConnectionClose(contextID, peerType)
}

//go:wasmexport proxy_on_upstream_data
func proxyOnUpstreamData(contextID, dataSize uint32, endOfStream bool) (action uint32) {
	defer func() {
		if recovered("proxy_on_upstream_data", recover()) {
			action = 0
		}
	}()
	return guest{}.OnUpstreamData(contextID, dataSize, endOfStream)
}

//go:wasmexport proxy_on_upstream_connection_close
func proxyOnUpstreamConnectionClose(contextID, peerType uint32) {
	defer func() { recovered("proxy_on_upstream_connection_close", recover()) }()
	guest{}.OnUpstreamConnectionClose(contextID, peerType)
}
