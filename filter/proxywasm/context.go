package proxywasm

import (
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// httpCallout is what a pending http callout needs when its answer arrives.
type httpCallout struct {
	callback  func(numHeaders, bodySize, numTrailers int)
	contextID uint32
}

// grpcCall is a pending gRPC call or stream.
type grpcCall struct {
	callbacks GrpcCallbacks
	contextID uint32
	stream    bool
}

// state is everything the binding tracks for one VM. Maps are created once
// by SetVMContext and entries are removed when the host deletes a context or
// a callout completes.
type state struct {
	vm       types.VMContext
	roots    map[uint32]types.PluginContext
	http     map[uint32]types.HttpContext
	tcp      map[uint32]types.TcpContext
	callouts map[uint32]httpCallout
	grpc     map[uint32]grpcCall
	// active is the context whose callback is running (after any effective
	// context switch); host calls apply to it.
	active uint32
}

var vm state

// SetVMContext registers the filter's VM context and clears any contexts
// left from a previous registration. Call it from main or init; it makes no
// host call (Envoy forbids host calls during _initialize).
func SetVMContext(ctx types.VMContext) {
	vm = state{
		vm:       ctx,
		roots:    make(map[uint32]types.PluginContext, 1),
		http:     make(map[uint32]types.HttpContext),
		tcp:      make(map[uint32]types.TcpContext),
		callouts: make(map[uint32]httpCallout),
		grpc:     make(map[uint32]grpcCall),
	}
}

// CurrentContextID returns the id of the context the running callback
// belongs to: the stream after a callout switched to it, the plugin context
// in plugin callbacks, 0 outside callbacks.
func CurrentContextID() uint32 { return vm.active }

// guest routes the ABI callbacks to the registered contexts. It is the
// target of the wasip1 exports and, natively, of package proxytest.
type guest struct{}

var _ abi.Guest = guest{}

func (guest) OnContextCreate(contextID, parentID uint32) {
	vm.active = contextID
	if parentID == 0 {
		if vm.vm == nil {
			return
		}
		vm.roots[contextID] = vm.vm.NewPluginContext(contextID)
		return
	}
	root, ok := vm.roots[parentID]
	if !ok {
		return
	}
	if h := root.NewHttpContext(contextID); h != nil {
		vm.http[contextID] = h
		return
	}
	if t := root.NewTcpContext(contextID); t != nil {
		vm.tcp[contextID] = t
	}
}

func (guest) OnVMStart(rootID, size uint32) bool {
	vm.active = rootID
	if vm.vm == nil {
		return false
	}
	return bool(vm.vm.OnVMStart(int(size)))
}

func (guest) OnConfigure(rootID, size uint32) bool {
	vm.active = rootID
	root, ok := vm.roots[rootID]
	if !ok {
		return false
	}
	return bool(root.OnPluginStart(int(size)))
}

func (guest) OnTick(rootID uint32) {
	vm.active = rootID
	if root, ok := vm.roots[rootID]; ok {
		root.OnTick()
	}
}

func (guest) OnQueueReady(rootID, queueID uint32) {
	vm.active = rootID
	if root, ok := vm.roots[rootID]; ok {
		root.OnQueueReady(queueID)
	}
}

func (guest) OnDone(contextID uint32) bool {
	vm.active = contextID
	if root, ok := vm.roots[contextID]; ok {
		return root.OnPluginDone()
	}
	return true
}

func (guest) OnLog(contextID uint32) {
	vm.active = contextID
	if h, ok := vm.http[contextID]; ok {
		h.OnHttpStreamDone()
	} else if t, ok := vm.tcp[contextID]; ok {
		t.OnStreamDone()
	}
}

// HttpContextDeleter is implemented by an HttpContext that wants to know
// when the host deletes its context (proxy_on_delete). No callback for the
// context follows and the binding forgets it, so the plugin may reuse it for
// a later stream: callouts it started are then no longer delivered, and
// anything else the plugin handed it to must have let go.
type HttpContextDeleter interface {
	OnHttpContextDelete()
}

func (guest) OnDelete(contextID uint32) {
	// A context lives in one of the maps; deleting from a map is costly in a
	// VM, so only that one is touched.
	if h, ok := vm.http[contextID]; ok {
		delete(vm.http, contextID)
		if d, ok := h.(HttpContextDeleter); ok {
			defer d.OnHttpContextDelete()
		}
	} else if _, ok := vm.tcp[contextID]; ok {
		delete(vm.tcp, contextID)
	} else {
		delete(vm.roots, contextID)
	}
	if vm.active == contextID {
		vm.active = 0
	}
}

func (guest) OnRequestHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http[contextID]; ok {
		return uint32(h.OnHttpRequestHeaders(int(numHeaders), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnRequestBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http[contextID]; ok {
		return uint32(h.OnHttpRequestBody(int(bodySize), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnRequestTrailers(contextID, numTrailers uint32) uint32 {
	vm.active = contextID
	if h, ok := vm.http[contextID]; ok {
		return uint32(h.OnHttpRequestTrailers(int(numTrailers)))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnResponseHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http[contextID]; ok {
		return uint32(h.OnHttpResponseHeaders(int(numHeaders), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnResponseBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http[contextID]; ok {
		return uint32(h.OnHttpResponseBody(int(bodySize), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnResponseTrailers(contextID, numTrailers uint32) uint32 {
	vm.active = contextID
	if h, ok := vm.http[contextID]; ok {
		return uint32(h.OnHttpResponseTrailers(int(numTrailers)))
	}
	return uint32(types.ActionContinue)
}

// switchTo makes contextID the effective context for a callout answer that
// arrived on rootID. It reports false when that context no longer exists or
// the host refuses the switch; the answer is then dropped.
func switchTo(rootID, contextID uint32) bool {
	if contextID != rootID {
		if _, ok := vm.http[contextID]; !ok {
			if _, ok := vm.tcp[contextID]; !ok {
				return false
			}
		}
		if abi.SetEffectiveContext(contextID) != abi.StatusOK {
			return false
		}
	}
	vm.active = contextID
	return true
}

func (guest) OnHTTPCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers uint32) {
	vm.active = rootID
	c, ok := vm.callouts[calloutID]
	if !ok {
		return
	}
	delete(vm.callouts, calloutID)
	if c.callback == nil || !switchTo(rootID, c.contextID) {
		return
	}
	c.callback(int(numHeaders), int(bodySize), int(numTrailers))
}

func (guest) OnGrpcReceiveInitialMetadata(rootID, callID, numElements uint32) {
	vm.active = rootID
	c, ok := vm.grpc[callID]
	if !ok || c.callbacks.OnInitialMetadata == nil || !switchTo(rootID, c.contextID) {
		return
	}
	c.callbacks.OnInitialMetadata(int(numElements))
}

// OnGrpcReceive delivers a response message. For a unary call it is also
// the call's successful end: Envoy reports success with the message alone
// and failure with close alone, so the call is released here.
func (guest) OnGrpcReceive(rootID, callID, messageSize uint32) {
	vm.active = rootID
	c, ok := vm.grpc[callID]
	if !ok {
		return
	}
	if !c.stream {
		delete(vm.grpc, callID)
	}
	if c.callbacks.OnMessage == nil || !switchTo(rootID, c.contextID) {
		return
	}
	c.callbacks.OnMessage(int(messageSize))
}

func (guest) OnGrpcReceiveTrailingMetadata(rootID, callID, numElements uint32) {
	vm.active = rootID
	c, ok := vm.grpc[callID]
	if !ok || c.callbacks.OnTrailingMetadata == nil || !switchTo(rootID, c.contextID) {
		return
	}
	c.callbacks.OnTrailingMetadata(int(numElements))
}

func (guest) OnGrpcClose(rootID, callID, statusCode uint32) {
	vm.active = rootID
	c, ok := vm.grpc[callID]
	if !ok {
		return
	}
	delete(vm.grpc, callID)
	if c.callbacks.OnClose == nil || !switchTo(rootID, c.contextID) {
		return
	}
	c.callbacks.OnClose(statusCode)
}

func (guest) OnNewConnection(contextID uint32) uint32 {
	vm.active = contextID
	if t, ok := vm.tcp[contextID]; ok {
		return uint32(t.OnNewConnection())
	}
	return uint32(types.ActionContinue)
}

func (guest) OnDownstreamData(contextID, dataSize uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if t, ok := vm.tcp[contextID]; ok {
		return uint32(t.OnDownstreamData(int(dataSize), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnDownstreamConnectionClose(contextID, peerType uint32) {
	vm.active = contextID
	if t, ok := vm.tcp[contextID]; ok {
		t.OnDownstreamClose(types.PeerType(peerType))
	}
}

func (guest) OnUpstreamData(contextID, dataSize uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if t, ok := vm.tcp[contextID]; ok {
		return uint32(t.OnUpstreamData(int(dataSize), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnUpstreamConnectionClose(contextID, peerType uint32) {
	vm.active = contextID
	if t, ok := vm.tcp[contextID]; ok {
		t.OnUpstreamClose(types.PeerType(peerType))
	}
}
