package envoy

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

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
