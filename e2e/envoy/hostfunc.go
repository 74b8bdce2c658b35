package envoy

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// hostFunc is one proxy-wasm host function of module "env": the name a module
// imports, the ABI versions that have it (nil: every version), and its Go
// definition. Like wazero's imports/wasi_snapshot_preview1, each function is a
// named definition in the file of its family (env_*.go) and buildEnv only
// registers them.
type hostFunc struct {
	name string
	abis []string
	fn   any
}

// has tells whether the function exists for a module of ABI version abi. As in
// proxy-wasm-cpp-host src/wasm.cc registerCallbacks, some functions exist only
// for some versions: get_configuration, continue_request, continue_response and
// clear_route_cache for 0.1.0; continue_stream and close_stream for 0.2.x;
// get_log_level for 0.2.1.
func (f hostFunc) has(abi string) bool {
	if f.abis == nil {
		return true
	}
	for _, v := range f.abis {
		if v == abi {
			return true
		}
	}
	return false
}

// hostFamily is a named group of host functions defined in one file.
type hostFamily struct {
	name  string
	funcs []hostFunc
}

// envFamilies are the proxy-wasm host functions (module "env") by family, as
// proxy-wasm-cpp-host src/exports.cc and Envoy's
// source/extensions/common/wasm/context.cc implement them.
func envFamilies() []hostFamily {
	return []hostFamily{
		{"logging", loggingFuncs},
		{"timers", timerFuncs},
		{"buffers", bufferFuncs},
		{"headers", headerFuncs},
		{"properties", propertyFuncs},
		{"stream", streamFuncs},
		{"foreign", foreignFuncs},
		{"shared-data", sharedDataFuncs},
		{"shared-queues", sharedQueueFuncs},
		{"metrics", metricFuncs},
		{"callouts", calloutFuncs},
		{"compat", compatFuncs},
	}
}

// buildEnv registers the host functions of every family that exist for the
// module's ABI version. A function a module imports that is not here fails the
// load, as in Envoy.
func (h *Host) buildEnv(ctx context.Context, abi string) error {
	b := h.rt.NewHostModuleBuilder("env")
	for _, fam := range envFamilies() {
		for _, f := range fam.funcs {
			if !f.has(abi) {
				continue
			}
			if h.cfg.TimeHostCalls {
				exportTimed(b, f.name, f.fn)
			} else {
				export(b, f.name, f.fn)
			}
		}
	}
	_, err := b.Instantiate(ctx)
	return err
}

// goModuleFunc turns a host function written as a plain Go func into a
// reflection-free wazero function: wazero's WithFunc calls through reflect on
// every call, which would make the emulated host, not the plugin, dominate
// per-request measurements. Shapes it does not know report ok == false.
func goModuleFunc(f any) (fn api.GoModuleFunc, params []api.ValueType, ok bool) {
	switch g := f.(type) {
	case func(context.Context) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) { s[0] = uint64(g(ctx)) }, u32(0), true
	case func(context.Context, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) { s[0] = uint64(g(ctx, uint32(s[0]))) }, u32(1), true
	case func(context.Context, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) { s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]))) }, u32(2), true
	case func(context.Context, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2])))
		}, u32(3), true
	case func(context.Context, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])))
		}, u32(4), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4])))
		}, u32(5), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5])))
		}, u32(6), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5]), uint32(s[6])))
		}, u32(7), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5]), uint32(s[6]), uint32(s[7])))
		}, u32(8), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5]), uint32(s[6]), uint32(s[7]), uint32(s[8])))
		}, u32(9), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5]), uint32(s[6]), uint32(s[7]), uint32(s[8]), uint32(s[9])))
		}, u32(10), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5]), uint32(s[6]), uint32(s[7]), uint32(s[8]), uint32(s[9]), uint32(s[10])))
		}, u32(11), true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32, uint32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5]), uint32(s[6]), uint32(s[7]), uint32(s[8]), uint32(s[9]), uint32(s[10]), uint32(s[11])))
		}, u32(12), true
	case func(context.Context, uint32, int64) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) { s[0] = uint64(g(ctx, uint32(s[0]), int64(s[1]))) },
			[]api.ValueType{api.ValueTypeI32, api.ValueTypeI64}, true
	case func(context.Context, uint32, uint64) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) { s[0] = uint64(g(ctx, uint32(s[0]), s[1])) },
			[]api.ValueType{api.ValueTypeI32, api.ValueTypeI64}, true
	case func(context.Context, uint32, uint32, uint32, uint32, uint32, uint32, uint32, int32) uint32:
		return func(ctx context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(g(ctx, uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3]), uint32(s[4]), uint32(s[5]), uint32(s[6]), int32(uint32(s[7]))))
		}, u32(8), true
	}
	return nil, nil, false
}

// u32 is n i32 parameters.
func u32(n int) []api.ValueType {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = api.ValueTypeI32
	}
	return p
}

// export registers f under name: without reflection when goModuleFunc knows its
// shape, through wazero's reflective WithFunc otherwise.
func export(b wazero.HostModuleBuilder, name string, f any) {
	if fn, params, ok := goModuleFunc(f); ok {
		b.NewFunctionBuilder().WithGoModuleFunction(fn, params, []api.ValueType{api.ValueTypeI32}).Export(name)
		return
	}
	b.NewFunctionBuilder().WithFunc(f).Export(name)
}

// exportTimed is export with the time each call takes added to the calling
// VM's VMStat.HostTime (Config.TimeHostCalls). Functions of shapes
// goModuleFunc does not know (the few non-proxy_ compatibility imports) are
// exported untimed.
func exportTimed(b wazero.HostModuleBuilder, name string, f any) {
	fn, params, ok := goModuleFunc(f)
	if !ok {
		export(b, name, f)
		return
	}
	timed := func(ctx context.Context, m api.Module, s []uint64) {
		began := time.Now()
		fn(ctx, m, s)
		vmFrom(ctx).hostNanos.Add(int64(time.Since(began)))
	}
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(timed), params, []api.ValueType{api.ValueTypeI32}).Export(name)
}
