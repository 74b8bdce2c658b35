//go:build wasip1

package proxywasm

// The proxy-wasm callbacks. Each one delegates to guest, which routes it to
// the registered context.

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion021() {}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) {
	guest{}.OnContextCreate(contextID, parentID)
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID, size uint32) bool { return guest{}.OnVMStart(rootID, size) }

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, size uint32) bool { return guest{}.OnConfigure(rootID, size) }

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) { guest{}.OnTick(rootID) }

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, queueID uint32) { guest{}.OnQueueReady(rootID, queueID) }

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) bool { return guest{}.OnDone(contextID) }

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) { guest{}.OnLog(contextID) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) { guest{}.OnDelete(contextID) }

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	return guest{}.OnRequestHeaders(contextID, numHeaders, endOfStream)
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	return guest{}.OnRequestBody(contextID, bodySize, endOfStream)
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID, numTrailers uint32) uint32 {
	return guest{}.OnRequestTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	return guest{}.OnResponseHeaders(contextID, numHeaders, endOfStream)
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	return guest{}.OnResponseBody(contextID, bodySize, endOfStream)
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID, numTrailers uint32) uint32 {
	return guest{}.OnResponseTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHTTPCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers uint32) {
	guest{}.OnHTTPCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func proxyOnGrpcReceiveInitialMetadata(rootID, callID, numElements uint32) {
	guest{}.OnGrpcReceiveInitialMetadata(rootID, callID, numElements)
}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGrpcReceive(rootID, callID, messageSize uint32) {
	guest{}.OnGrpcReceive(rootID, callID, messageSize)
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func proxyOnGrpcReceiveTrailingMetadata(rootID, callID, numElements uint32) {
	guest{}.OnGrpcReceiveTrailingMetadata(rootID, callID, numElements)
}

//go:wasmexport proxy_on_grpc_close
func proxyOnGrpcClose(rootID, callID, statusCode uint32) {
	guest{}.OnGrpcClose(rootID, callID, statusCode)
}

//go:wasmexport proxy_on_new_connection
func proxyOnNewConnection(contextID uint32) uint32 { return guest{}.OnNewConnection(contextID) }

//go:wasmexport proxy_on_downstream_data
func proxyOnDownstreamData(contextID, dataSize uint32, endOfStream bool) uint32 {
	return guest{}.OnDownstreamData(contextID, dataSize, endOfStream)
}

//go:wasmexport proxy_on_downstream_connection_close
func proxyOnDownstreamConnectionClose(contextID, peerType uint32) {
	guest{}.OnDownstreamConnectionClose(contextID, peerType)
}

//go:wasmexport proxy_on_upstream_data
func proxyOnUpstreamData(contextID, dataSize uint32, endOfStream bool) uint32 {
	return guest{}.OnUpstreamData(contextID, dataSize, endOfStream)
}

//go:wasmexport proxy_on_upstream_connection_close
func proxyOnUpstreamConnectionClose(contextID, peerType uint32) {
	guest{}.OnUpstreamConnectionClose(contextID, peerType)
}
