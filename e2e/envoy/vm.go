package envoy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// vm is one module instance: what Envoy calls a thread-local Wasm VM of one worker.
// Every call into the guest holds mu, so a VM never runs two callbacks at once
// (Envoy runs a VM only on its worker thread).
type vm struct {
	h *Host
	// declared are the properties the plugin declared (declare_property);
	// guarded by mu.
	declared map[string]propertyDecl
	idx      int
	gen      uint64 // configuration generation the VM was started with
	mod      api.Module
	mem      api.Memory
	ctx      context.Context // carries the *vm to host functions

	started VMStartTimings // how long each step of this VM's start took

	fns   map[string]api.Function
	alloc api.Function

	mu     sync.Mutex
	failed atomic.Bool
	closed bool

	// rootID is the root context of the plugin that started the VM; roots are
	// every plugin's root context on this VM (several when plugins share a
	// vm_id: proxy-wasm-cpp-host src/wasm.cc WasmBase::start, one root context
	// per plugin key), rootOf a plugin's root context id.
	rootID    uint32
	roots     map[uint32]*rootContext
	rootOf    map[*Host]uint32
	nextCtxID uint32
	streams   map[uint32]*stream

	// Per-callback state; valid while mu is held and a callback runs.
	cur       uint32 // context id of the running callback
	effective uint32 // proxy_set_effective_context; 0 = none
	stopNext  bool   // proxy_send_local_response stops the current iteration
	after     []func()
	depth     int

	pluginConfig []byte // visible as PLUGIN_CONFIGURATION only while configuring
	configuring  bool

	// Root-context callout state, visible only during the matching callback.
	httpResp    *calloutResponse
	grpcInitMD  []pair
	grpcTrailMD []pair
	grpcRecv    []byte
	grpcMDOpen  int // header map type open during a gRPC metadata callback, or -1
	statusCode  uint32
	statusMsg   string

	metrics       map[uint32]*metric
	nextCounterID uint32
	nextGaugeID   uint32
	nextHistID    uint32

	nextHTTPCall   uint32
	nextGrpcCall   uint32
	nextGrpcStream uint32
	callouts       map[uint32]context.CancelFunc
	grpcStreams    map[uint32]*grpcStream

	callbacks  atomic.Uint64
	guestNanos atomic.Int64 // see VMStat.GuestTime
	hostNanos  atomic.Int64 // see VMStat.HostTime

	// Reused by host functions, which run one at a time under mu.
	allocStack [1]uint64
	pairsBuf   []byte
	stacks     [4][8]uint64 // callLocked's parameters and results, by call depth
	traps      atomic.Uint64
}

type vmKey struct{}

func vmFrom(ctx context.Context) *vm { return ctx.Value(vmKey{}).(*vm) }

var errMissingExport = errors.New("export not found")

// The ABI versions a module may declare, as proxy-wasm-cpp-host src/wasm.cc checks them.
const (
	abi021 = "proxy_abi_version_0_2_1"
	abi020 = "proxy_abi_version_0_2_0"
	abi010 = "proxy_abi_version_0_1_0"
)

var abiExports = []string{abi021, abi020, abi010}

// moduleABI returns the ABI version export of a compiled module, or "".
func moduleABI(c wazero.CompiledModule) string {
	exports := c.ExportedFunctions()
	for _, n := range abiExports {
		if _, ok := exports[n]; ok {
			return n
		}
	}
	return ""
}

// newVM instantiates the compiled module and runs Envoy's start sequence
// (proxy-wasm-cpp-host src/wasm.cc WasmBase::initialize/start/configure):
// _initialize, proxy_on_context_create(root, 0), proxy_on_vm_start, proxy_on_configure.
func (h *Host) newVM(ctx context.Context, idx int, gen uint64, pluginConfig []byte) (*vm, error) {
	name := fmt.Sprintf("vm-%d-%d", idx, h.vmSeq.Add(1))
	began := time.Now()
	mod, err := h.rt.InstantiateModule(ctx, h.compiled, wazero.NewModuleConfig().WithName(name).WithStartFunctions())
	instantiated := time.Since(began)
	if err != nil {
		return nil, fmt.Errorf("failed to load wasm module: %w", err)
	}
	v := &vm{
		h: h, idx: idx, gen: gen, mod: mod, mem: mod.Memory(),
		fns:     map[string]api.Function{},
		streams: map[uint32]*stream{}, metrics: map[uint32]*metric{},
		roots: map[uint32]*rootContext{}, rootOf: map[*Host]uint32{},
		nextCounterID: metricCounter, nextGaugeID: metricGauge, nextHistID: metricHistogram,
		nextHTTPCall: calloutHTTP, nextGrpcCall: calloutGrpcCall, nextGrpcStream: calloutGrpcStream,
		callouts: map[uint32]context.CancelFunc{}, grpcStreams: map[uint32]*grpcStream{},
		grpcMDOpen: -1,
	}
	v.started.Instantiate = instantiated
	v.ctx = context.WithValue(context.Background(), vmKey{}, v)
	fail := func(err error) (*vm, error) {
		v.shutdown()
		return nil, err
	}
	if v.mem == nil {
		return fail(errors.New("wasm module has no exported memory"))
	}
	// proxy-wasm-cpp-host src/wasm.cc: "malloc" is preferred, then proxy_on_memory_allocate.
	if v.alloc = mod.ExportedFunction("malloc"); v.alloc == nil {
		v.alloc = mod.ExportedFunction("proxy_on_memory_allocate")
	}
	if v.alloc == nil {
		return fail(errors.New("wasm module is missing malloc function"))
	}
	if err := v.start(pluginConfig); err != nil {
		return fail(err)
	}
	return v, nil
}

// pluginlessVMs are the workers of a host without a plugin (Config.NoPlugin):
// no instance, so every callback is a missing export and streams only route.
func (h *Host) pluginlessVMs(n int, gen uint64) []*vm {
	vms := make([]*vm, n)
	for i := range vms {
		vms[i] = &vm{h: h, idx: i, gen: gen, fns: map[string]api.Function{}, streams: map[uint32]*stream{}, nextCtxID: 1,
			roots: map[uint32]*rootContext{}, rootOf: map[*Host]uint32{}}
		vms[i].rootID = vms[i].newContextID()
		vms[i].roots[vms[i].rootID] = &rootContext{id: vms[i].rootID, h: h}
		vms[i].rootOf[h] = vms[i].rootID
	}
	return vms
}

// start runs Envoy's start sequence under the VM mutex.
func (v *vm) start(pluginConfig []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	began := time.Now()
	if f := v.mod.ExportedFunction("_initialize"); f != nil {
		if _, err := v.callLocked(0, "_initialize"); err != nil {
			return fmt.Errorf("failed to initialize wasm code: %w", err)
		}
	} else if f := v.mod.ExportedFunction("_start"); f != nil {
		if _, err := v.callLocked(0, "_start"); err != nil {
			return fmt.Errorf("failed to initialize wasm code: %w", err)
		}
	}
	v.started.Initialize = time.Since(began)
	v.nextCtxID = 1
	return v.startRootLocked(v.h, pluginConfig, &v.started)
}

// rootContext is one plugin's root context on a VM, with its own tick
// (Envoy keeps one timer per root context: source/extensions/common/wasm/wasm.cc
// Wasm::setTickPeriod, keyed by root context id).
type rootContext struct {
	id         uint32
	h          *Host // the plugin (wasm filter) it belongs to
	tickPeriod time.Duration
	tickStop   chan struct{}
}

// startRootLocked creates the plugin's root context and starts it as
// proxy-wasm-cpp-host src/wasm.cc WasmBase::start and ContextBase::onStart do:
// proxy_on_context_create(root, 0), proxy_on_vm_start (once per root context,
// with the VM configuration), then proxy_on_configure with the plugin's
// configuration. mu must be held; timings may be nil.
func (v *vm) startRootLocked(p *Host, pluginConfig []byte, timings *VMStartTimings) error {
	began := time.Now()
	id := v.newContextID()
	v.roots[id] = &rootContext{id: id, h: p}
	v.rootOf[p] = id
	if v.rootID == 0 {
		v.rootID = id
	}
	if _, err := v.callLocked(id, "proxy_on_context_create", uint64(id), 0); err != nil {
		return fmt.Errorf("failed to start thread-local wasm: %w", err)
	}
	ok, err := v.callLocked(id, "proxy_on_vm_start", uint64(id), uint64(len(v.h.cfg.VMConfig)))
	if err != nil && !errors.Is(err, errMissingExport) {
		return fmt.Errorf("failed to start thread-local wasm: %w", err)
	}
	if err == nil && uint32(ok) == 0 {
		return errors.New("failed to start thread-local wasm: proxy_on_vm_start returned false")
	}
	if timings != nil {
		timings.Start = time.Since(began)
	}
	began = time.Now()
	err = v.configureLocked(id, pluginConfig)
	if timings != nil {
		timings.Configure = time.Since(began)
	}
	return err
}

// configureLocked calls proxy_on_configure with the plugin configuration visible.
func (v *vm) configureLocked(root uint32, pluginConfig []byte) error {
	v.pluginConfig, v.configuring = pluginConfig, true
	ok, err := v.callLocked(root, "proxy_on_configure", uint64(root), uint64(len(pluginConfig)))
	v.pluginConfig, v.configuring = nil, false
	if err != nil && !errors.Is(err, errMissingExport) {
		return fmt.Errorf("failed to configure thread-local wasm plugin: %w", err)
	}
	if err == nil && uint32(ok) == 0 {
		return errors.New("failed to configure thread-local wasm plugin: proxy_on_configure returned false")
	}
	return nil
}

// currentRoot is the root context of the context host calls act on: itself
// for a root context, its plugin's for a stream, else the VM's first.
func (v *vm) currentRoot() *rootContext {
	id := v.current()
	if r := v.roots[id]; r != nil {
		return r
	}
	if s := v.streams[id]; s != nil {
		if r := v.roots[s.rootID]; r != nil {
			return r
		}
	}
	return v.roots[v.rootID]
}

// plugin is the plugin (wasm filter) of the context host calls act on.
func (v *vm) plugin() *Host {
	if r := v.currentRoot(); r != nil {
		return r.h
	}
	return v.h
}

func (v *vm) newContextID() uint32 {
	id := v.nextCtxID
	v.nextCtxID++
	return id
}

func (v *vm) fn(name string) api.Function {
	f, ok := v.fns[name]
	if !ok && v.mod != nil {
		f = v.mod.ExportedFunction(name)
		v.fns[name] = f
	}
	return f
}

// callLocked runs one guest export; mu must be held. Arguments beyond the export's
// parameter count are dropped, which also serves ABI 0.1.0 (headers callbacks without
// end_of_stream). A trap marks the VM failed, as proxy-wasm-cpp-host does on a runtime
// error (FailState::RuntimeError), and is logged like Envoy logs it.
func (v *vm) callLocked(ctxID uint32, name string, args ...uint64) (uint64, error) {
	f := v.fn(name)
	if f == nil {
		return 0, errMissingExport
	}
	if v.failed.Load() || v.closed {
		return 0, errVMFailed
	}
	if n := len(f.Definition().ParamTypes()); n < len(args) {
		args = args[:n]
	}
	prevCur, prevEff, prevStop := v.cur, v.effective, v.stopNext
	v.cur, v.effective, v.stopNext = ctxID, 0, false
	if t := v.h.trace.Load(); t != nil {
		(*t)(ctxID, name)
	}
	outer := v.depth == 0
	var began time.Time
	if outer {
		began = time.Now()
	}
	v.depth++
	// The parameters and results travel in a per-depth slot of the VM
	// instead of slices allocated per call (calls nest: a host function may
	// call back into the guest).
	def := f.Definition()
	var stack []uint64
	if n := max(len(def.ParamTypes()), len(def.ResultTypes())); v.depth <= len(v.stacks) && n <= len(v.stacks[0]) {
		stack = v.stacks[v.depth-1][:n]
	} else {
		stack = make([]uint64, n)
	}
	clear(stack)
	copy(stack, args)
	err := f.CallWithStack(v.ctx, stack)
	hasResult := len(def.ResultTypes()) > 0
	v.depth--
	if outer {
		v.guestNanos.Add(int64(time.Since(began)))
	}
	stop := v.stopNext
	v.cur, v.effective, v.stopNext = prevCur, prevEff, prevStop
	v.callbacks.Add(1)
	if err != nil {
		v.failed.Store(true)
		v.traps.Add(1)
		v.h.logs.host(v.idx, LogCritical, fmt.Sprintf("Function: %s failed: %v", name, err))
		v.h.vmFailed(v)
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if v.depth == 0 {
		// Deferred "after VM call" actions (proxy-wasm-cpp-host WasmBase::doAfterVmCallActions).
		for len(v.after) > 0 {
			a := v.after[0]
			v.after = v.after[1:]
			a()
		}
	}
	var r uint64
	if hasResult {
		r = stack[0]
	}
	if stop {
		r = stopResult
	}
	return r, nil
}

// stopResult marks a callback result forced to a stop by proxy_send_local_response
// (proxy-wasm-cpp-host WasmBase::stopNextIteration).
const stopResult = 1 << 40

var errVMFailed = errors.New("wasm vm failed")

// callAsync runs a callback from outside any stream (ticks, callouts, queues).
func (v *vm) callAsync(ctxID uint32, name string, args ...uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed || v.failed.Load() {
		return
	}
	_, _ = v.callLocked(ctxID, name, args...)
}

// current returns the id of the context host calls act on: the effective context if
// one was set and still exists, otherwise the running callback's
// (proxy-wasm-cpp-host src/exports.cc contextOrEffectiveContext).
func (v *vm) current() uint32 {
	if v.effective != 0 {
		if v.roots[v.effective] != nil || v.streams[v.effective] != nil {
			return v.effective
		}
	}
	return v.cur
}

// currentStream returns the stream the host call acts on, or nil on the root context.
func (v *vm) currentStream() *stream {
	return v.streams[v.current()]
}

// Memory access.

func (v *vm) read(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return []byte{}, true
	}
	b, ok := v.mem.Read(ptr, size)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

func (v *vm) readString(ptr, size uint32) (string, bool) {
	if size == 0 {
		return "", true
	}
	b, ok := v.mem.Read(ptr, size) // a view of the memory; string copies it once
	if !ok {
		return "", false
	}
	return string(b), true
}

func (v *vm) putU32(ptr, val uint32) bool { return v.mem.WriteUint32Le(ptr, val) }

// copyOut hands data to the guest as proxy-wasm-cpp-host WasmBase::copyToPointerSize
// does: memory from the guest's allocator (called re-entrantly from inside the host
// call), then pointer and size stored at the return pointers. Empty data stores 0, 0.
func (v *vm) copyOut(data []byte, ptrPtr, sizePtr uint32) Status {
	return v.copyOutWith(len(data), func(p uint32) bool { return v.mem.Write(p, data) }, ptrPtr, sizePtr)
}

// copyOutString is copyOut for a string, without converting it to bytes.
func (v *vm) copyOutString(data string, ptrPtr, sizePtr uint32) Status {
	return v.copyOutWith(len(data), func(p uint32) bool { return v.mem.WriteString(p, data) }, ptrPtr, sizePtr)
}

// copyOutWith is copyOut for n bytes that write puts at the guest's pointer.
func (v *vm) copyOutWith(n int, write func(ptr uint32) bool, ptrPtr, sizePtr uint32) Status {
	var ptr uint32
	if n > 0 {
		p, ok := v.allocate(uint32(n))
		if !ok || !write(p) {
			return StatusInvalidMemoryAccess
		}
		ptr = p
	}
	if !v.putU32(ptrPtr, ptr) || !v.putU32(sizePtr, uint32(n)) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

func (v *vm) allocate(size uint32) (uint32, bool) {
	// CallWithStack reuses the VM's slot instead of allocating the call's
	// parameters and results, as a C++ host's call does not.
	v.allocStack[0] = uint64(size)
	if err := v.alloc.CallWithStack(v.ctx, v.allocStack[:]); err != nil || v.allocStack[0] == 0 {
		return 0, false
	}
	return uint32(v.allocStack[0]), true
}

// memoryBytes is the VM's linear memory size.
func (v *vm) memoryBytes() uint64 {
	if v.mem == nil {
		return 0 // no plugin
	}
	return uint64(v.mem.Size())
}

// shutdown releases the instance; outstanding callouts are cancelled.
func (v *vm) shutdown() {
	v.mu.Lock()
	v.closed = true
	for _, r := range v.roots {
		if r.tickStop != nil {
			close(r.tickStop)
			r.tickStop = nil
		}
	}
	for _, c := range v.callouts {
		c()
	}
	for _, gs := range v.grpcStreams {
		gs.cancel()
	}
	v.mu.Unlock()
	if v.mod != nil {
		_ = v.mod.Close(context.Background())
	}
}

// drain runs proxy_on_done and proxy_on_delete on the root context when the VM is
// retired (Envoy: WasmBase destruction after proxy_on_done; the "done" ack of
// proxy_done is not awaited here).
func (v *vm) drain() {
	v.mu.Lock()
	if !v.closed && !v.failed.Load() {
		for _, id := range v.rootIDs() {
			_, _ = v.callLocked(id, "proxy_on_done", uint64(id))
			_, _ = v.callLocked(id, "proxy_on_delete", uint64(id))
		}
	}
	v.mu.Unlock()
	v.shutdown()
}

// rootIDs are the VM's root contexts in the order they were created.
func (v *vm) rootIDs() []uint32 {
	ids := make([]uint32, 0, len(v.roots))
	for id := range v.roots {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func le64(x uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, x)
	return b
}
