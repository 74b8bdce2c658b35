package abi

// Guest is the module side of the ABI: one method per proxy_on_* callback,
// with the callback's parameters. In a wasip1 build the host reaches these
// through `//go:wasmexport` functions; in a native build package proxytest
// calls them directly through the Guest registered here.
type Guest interface {
	OnContextCreate(contextID, parentID uint32)
	OnVMStart(rootID, vmConfigSize uint32) bool
	OnConfigure(rootID, pluginConfigSize uint32) bool
	OnTick(rootID uint32)
	OnQueueReady(rootID, queueID uint32)
	OnDone(contextID uint32) bool
	OnLog(contextID uint32)
	OnDelete(contextID uint32)

	OnRequestHeaders(contextID, numHeaders uint32, endOfStream bool) uint32
	OnRequestBody(contextID, bodySize uint32, endOfStream bool) uint32
	OnRequestTrailers(contextID, numTrailers uint32) uint32
	OnResponseHeaders(contextID, numHeaders uint32, endOfStream bool) uint32
	OnResponseBody(contextID, bodySize uint32, endOfStream bool) uint32
	OnResponseTrailers(contextID, numTrailers uint32) uint32

	OnHTTPCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers uint32)
	OnGrpcReceiveInitialMetadata(rootID, callID, numElements uint32)
	OnGrpcReceive(rootID, callID, messageSize uint32)
	OnGrpcReceiveTrailingMetadata(rootID, callID, numElements uint32)
	OnGrpcClose(rootID, callID, statusCode uint32)

	OnNewConnection(contextID uint32) uint32
	OnDownstreamData(contextID, dataSize uint32, endOfStream bool) uint32
	OnDownstreamConnectionClose(contextID, peerType uint32)
	OnUpstreamData(contextID, dataSize uint32, endOfStream bool) uint32
	OnUpstreamConnectionClose(contextID, peerType uint32)
}

var guest Guest

// RegisterGuest records the module's callback table. Package proxywasm
// registers itself in native builds; it holds no state and calls no host.
func RegisterGuest(g Guest) { guest = g }

// RegisteredGuest returns the table recorded by RegisterGuest, or nil.
func RegisteredGuest() Guest { return guest }
