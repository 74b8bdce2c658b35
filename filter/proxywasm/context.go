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
// a callout completes. Plugin and HTTP contexts, touched on every callback,
// live in tables rather than maps (see table).
type state struct {
	vm       types.VMContext
	roots    table[rootContext]
	http     table[httpContext]
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

// HttpContextReleaser is implemented by a PluginContext that wants its HTTP
// contexts back once the host has deleted them (proxy_on_delete): no callback
// for such a context follows and the binding forgets it, so the plugin may
// reuse it for a later stream. Callouts the stream started are then no longer
// delivered; anything else the plugin handed the context to must have let go.
type HttpContextReleaser interface {
	ReleaseHttpContext(types.HttpContext)
}

// rootContext is a plugin context and, when it has one, its releaser.
type rootContext struct {
	ctx types.PluginContext
	rel HttpContextReleaser
}

// httpContext is an HTTP context and its plugin's releaser.
type httpContext struct {
	ctx types.HttpContext
	rel HttpContextReleaser
}

func (guest) OnContextCreate(contextID, parentID uint32) {
	vm.active = contextID
	if parentID == 0 {
		if vm.vm == nil {
			return
		}
		root := vm.vm.NewPluginContext(contextID)
		rel, _ := root.(HttpContextReleaser)
		vm.roots.put(contextID, rootContext{ctx: root, rel: rel})
		return
	}
	root, ok := vm.roots.get(parentID)
	if !ok {
		return
	}
	if h := root.ctx.NewHttpContext(contextID); h != nil {
		vm.http.put(contextID, httpContext{ctx: h, rel: root.rel})
		return
	}
	if t := root.ctx.NewTcpContext(contextID); t != nil {
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
	root, ok := vm.roots.get(rootID)
	if !ok {
		return false
	}
	return bool(root.ctx.OnPluginStart(int(size)))
}

func (guest) OnTick(rootID uint32) {
	vm.active = rootID
	if root, ok := vm.roots.get(rootID); ok {
		root.ctx.OnTick()
	}
}

func (guest) OnQueueReady(rootID, queueID uint32) {
	vm.active = rootID
	if root, ok := vm.roots.get(rootID); ok {
		root.ctx.OnQueueReady(queueID)
	}
}

func (guest) OnDone(contextID uint32) bool {
	vm.active = contextID
	if root, ok := vm.roots.get(contextID); ok {
		return root.ctx.OnPluginDone()
	}
	return true
}

func (guest) OnLog(contextID uint32) {
	vm.active = contextID
	if h, ok := vm.http.get(contextID); ok {
		h.ctx.OnHttpStreamDone()
	} else if t, ok := vm.tcp[contextID]; ok {
		t.OnStreamDone()
	}
}

func (guest) OnDelete(contextID uint32) {
	if vm.active == contextID {
		vm.active = 0
	}
	if h, ok := vm.http.del(contextID); ok {
		if h.rel != nil {
			h.rel.ReleaseHttpContext(h.ctx)
		}
	} else if _, ok := vm.tcp[contextID]; ok {
		delete(vm.tcp, contextID)
	} else {
		vm.roots.del(contextID)
	}
}

func (guest) OnRequestHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http.get(contextID); ok {
		return uint32(h.ctx.OnHttpRequestHeaders(int(numHeaders), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnRequestBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http.get(contextID); ok {
		return uint32(h.ctx.OnHttpRequestBody(int(bodySize), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnRequestTrailers(contextID, numTrailers uint32) uint32 {
	vm.active = contextID
	if h, ok := vm.http.get(contextID); ok {
		return uint32(h.ctx.OnHttpRequestTrailers(int(numTrailers)))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnResponseHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http.get(contextID); ok {
		return uint32(h.ctx.OnHttpResponseHeaders(int(numHeaders), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnResponseBody(contextID, bodySize uint32, endOfStream bool) uint32 {
	vm.active = contextID
	if h, ok := vm.http.get(contextID); ok {
		return uint32(h.ctx.OnHttpResponseBody(int(bodySize), endOfStream))
	}
	return uint32(types.ActionContinue)
}

func (guest) OnResponseTrailers(contextID, numTrailers uint32) uint32 {
	vm.active = contextID
	if h, ok := vm.http.get(contextID); ok {
		return uint32(h.ctx.OnHttpResponseTrailers(int(numTrailers)))
	}
	return uint32(types.ActionContinue)
}

// switchTo makes contextID the effective context for a callout answer that
// arrived on rootID. It reports false when that context no longer exists or
// the host refuses the switch; the answer is then dropped.
func switchTo(rootID, contextID uint32) bool {
	if contextID != rootID {
		if _, ok := vm.http.get(contextID); !ok {
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
