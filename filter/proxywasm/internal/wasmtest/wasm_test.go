//go:build !wasip1

package wasmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
)

var (
	buildOnce sync.Once
	wasmBytes []byte
	buildErr  error
)

// exampleModule builds internal/example for wasip1 once per test binary.
func exampleModule(tb testing.TB) []byte {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pw-wasmtest")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "example.wasm")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build",
			"-buildmode=c-shared", "-trimpath", "-ldflags=-s -w", "-o", out, "../example")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: string(msg)}
			return
		}
		wasmBytes, buildErr = os.ReadFile(out)
	})
	require.NoError(tb, buildErr)
	return wasmBytes
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build example: " + e.err.Error() + "\n" + e.out }

// miniHost implements the env functions the example imports.
type miniHost struct {
	mod       api.Module
	alloc     api.Function
	effective uint32
	headers   map[uint32][][2]string
	callouts  map[uint32]uint32
	nextCall  uint32
	callBody  []byte
	continued map[uint32]bool
	logs      []string
	metrics   map[string]uint32
	values    map[uint32]uint64
	tick      uint32
	allocs    int
}

func newMiniHost() *miniHost {
	return &miniHost{
		headers:   map[uint32][][2]string{},
		callouts:  map[uint32]uint32{},
		continued: map[uint32]bool{},
		metrics:   map[string]uint32{},
		values:    map[uint32]uint64{},
	}
}

func (h *miniHost) read(off, n uint64) []byte {
	b, ok := h.mod.Memory().Read(uint32(off), uint32(n))
	if !ok {
		panic("out of range read")
	}
	return append([]byte(nil), b...)
}

func (h *miniHost) putU32(off uint64, v uint32) {
	if !h.mod.Memory().WriteUint32Le(uint32(off), v) {
		panic("out of range write")
	}
}

// hand copies data into guest memory obtained from proxy_on_memory_allocate,
// called re-entrantly as Envoy does, and stores its address and size.
func (h *miniHost) hand(ctx context.Context, data []byte, retPtr, retSize uint64) {
	if h.alloc == nil {
		h.alloc = h.mod.ExportedFunction("proxy_on_memory_allocate")
	}
	res, err := h.alloc.Call(ctx, uint64(len(data)))
	if err != nil {
		panic(err)
	}
	h.allocs++
	p := uint32(res[0])
	if !h.mod.Memory().Write(p, data) {
		panic("out of range write")
	}
	h.putU32(retPtr, p)
	h.putU32(retSize, uint32(len(data)))
}

func (h *miniHost) funcs() map[string]api.GoModuleFunc {
	ok := func(stack []uint64) { stack[0] = uint64(abi.StatusOK) }
	return map[string]api.GoModuleFunc{
		"proxy_log": func(_ context.Context, _ api.Module, s []uint64) {
			h.logs = append(h.logs, string(h.read(s[1], s[2])))
			ok(s)
		},
		"proxy_set_tick_period_milliseconds": func(_ context.Context, _ api.Module, s []uint64) {
			h.tick = uint32(s[0])
			ok(s)
		},
		"proxy_set_effective_context": func(_ context.Context, _ api.Module, s []uint64) {
			id := uint32(s[0])
			if _, known := h.headers[id]; !known && id != 1 {
				s[0] = uint64(abi.StatusBadArgument)
				return
			}
			h.effective = id
			ok(s)
		},
		"proxy_get_header_map_pairs": func(ctx context.Context, _ api.Module, s []uint64) {
			if abi.MapType(s[0]) != abi.MapHTTPRequestHeaders {
				s[0] = uint64(abi.StatusBadArgument)
				return
			}
			h.hand(ctx, abi.SerializePairs(h.headers[h.effective]), s[1], s[2])
			ok(s)
		},
		"proxy_get_header_map_value": func(ctx context.Context, _ api.Module, s []uint64) {
			key := string(h.read(s[1], s[2]))
			for _, p := range h.headers[h.effective] {
				if p[0] == key {
					h.hand(ctx, []byte(p[1]), s[3], s[4])
					ok(s)
					return
				}
			}
			s[0] = uint64(abi.StatusNotFound)
		},
		"proxy_add_header_map_value": func(_ context.Context, _ api.Module, s []uint64) {
			h.headers[h.effective] = append(h.headers[h.effective], [2]string{string(h.read(s[1], s[2])), string(h.read(s[3], s[4]))})
			ok(s)
		},
		"proxy_replace_header_map_value": func(_ context.Context, _ api.Module, s []uint64) {
			k, v := string(h.read(s[1], s[2])), string(h.read(s[3], s[4]))
			hs := h.headers[h.effective]
			for i := range hs {
				if hs[i][0] == k {
					hs[i][1] = v
					ok(s)
					return
				}
			}
			h.headers[h.effective] = append(hs, [2]string{k, v})
			ok(s)
		},
		"proxy_define_metric": func(_ context.Context, _ api.Module, s []uint64) {
			name := string(h.read(s[1], s[2]))
			id := uint32(len(h.metrics)+1) << 2
			h.metrics[name] = id
			h.putU32(s[3], id)
			ok(s)
		},
		"proxy_increment_metric": func(_ context.Context, _ api.Module, s []uint64) {
			if int64(s[1]) <= 0 {
				s[0] = uint64(abi.StatusBadArgument)
				return
			}
			h.values[uint32(s[0])] += s[1]
			ok(s)
		},
		"proxy_http_call": func(_ context.Context, _ api.Module, s []uint64) {
			pairs, err := abi.DeserializePairs(h.read(s[2], s[3]))
			if err != nil || len(pairs) != 3 {
				s[0] = uint64(abi.StatusBadArgument)
				return
			}
			h.nextCall++
			h.callouts[h.nextCall] = h.effective
			h.putU32(s[9], h.nextCall)
			ok(s)
		},
		"proxy_get_buffer_bytes": func(ctx context.Context, _ api.Module, s []uint64) {
			if abi.BufferType(s[0]) != abi.BufferHTTPCallResponseBody {
				s[0] = uint64(abi.StatusNotFound)
				return
			}
			// i32 arguments arrive in the low 32 bits of each stack slot.
			start, n := uint64(api.DecodeU32(s[1])), uint64(api.DecodeU32(s[2]))
			if start > uint64(len(h.callBody)) {
				s[0] = uint64(abi.StatusBadArgument)
				return
			}
			end := min(start+n, uint64(len(h.callBody)))
			h.hand(ctx, h.callBody[start:end], s[3], s[4])
			ok(s)
		},
		"proxy_continue_stream": func(_ context.Context, _ api.Module, s []uint64) {
			h.continued[h.effective] = true
			ok(s)
		},
	}
}

type instance struct {
	host  *miniHost
	mod   api.Module
	ctx   context.Context
	funcs map[string]api.Function
}

// call calls an export. Functions are looked up once: wazero builds a new
// call engine, with its own stack, per lookup.
func (in *instance) call(tb testing.TB, name string, args ...uint64) uint64 {
	fn, ok := in.funcs[name]
	if !ok {
		fn = in.mod.ExportedFunction(name)
		require.NotNil(tb, fn, name)
		in.funcs[name] = fn
	}
	res, err := fn.Call(in.ctx, args...)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if len(res) == 0 {
		return 0
	}
	return res[0]
}

// start instantiates the example and runs the lifecycle Envoy runs before
// the first request: _initialize, context create, vm start, configure.
func start(tb testing.TB) *instance {
	tb.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	tb.Cleanup(func() { r.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled, err := r.CompileModule(ctx, exampleModule(tb))
	require.NoError(tb, err)

	h := newMiniHost()
	funcs := h.funcs()
	env := r.NewHostModuleBuilder("env")
	for _, imp := range compiled.ImportedFunctions() {
		mod, name, _ := imp.Import()
		if mod != "env" {
			continue
		}
		fn, ok := funcs[name]
		require.True(tb, ok, "the example imports %s, which this host lacks", name)
		env.NewFunctionBuilder().WithGoModuleFunction(fn, imp.ParamTypes(), imp.ResultTypes()).Export(name)
	}
	_, err = env.Instantiate(ctx)
	require.NoError(tb, err)

	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	require.NoError(tb, err)
	h.mod = mod
	in := &instance{host: h, mod: mod, ctx: ctx, funcs: map[string]api.Function{}}

	h.effective = 1
	in.call(tb, "proxy_on_context_create", 1, 0)
	require.Equal(tb, uint64(1), in.call(tb, "proxy_on_vm_start", 1, 0))
	require.Equal(tb, uint64(1), in.call(tb, "proxy_on_configure", 1, 0))
	require.Equal(tb, uint32(1000), h.tick)
	return in
}

// request runs one stream through request headers and returns the action.
func (in *instance) request(tb testing.TB, id uint32, headers [][2]string) uint64 {
	in.host.headers[id] = headers
	in.host.effective = id
	in.call(tb, "proxy_on_context_create", uint64(id), 1)
	return in.call(tb, "proxy_on_request_headers", uint64(id), uint64(len(headers)), 0)
}

func (in *instance) finish(tb testing.TB, id uint32) {
	in.host.effective = id
	if in.call(tb, "proxy_on_done", uint64(id)) != 1 {
		tb.Fatalf("proxy_on_done(%d) returned false", id)
	}
	in.call(tb, "proxy_on_log", uint64(id))
	in.call(tb, "proxy_on_delete", uint64(id))
	delete(in.host.headers, id)
}

func TestExampleHeadersAndCallout(t *testing.T) {
	in := start(t)
	h := in.host

	require.Equal(t, uint64(0), in.request(t, 2, [][2]string{{":path", "/"}, {"user-agent", "t"}}))
	require.Equal(t, [][2]string{{":path", "/"}, {"user-agent", "t"}, {"x-example", "2"}}, h.headers[2])
	require.Equal(t, uint64(1), h.values[h.metrics["example_requests_total"]])

	require.Equal(t, uint64(1), in.request(t, 3, [][2]string{{":path", "/"}, {"x-callout", "sidecar"}}), "pauses for the callout")
	require.Equal(t, map[uint32]uint32{1: 3}, h.callouts)

	// Envoy answers on the root context; the binding must switch to stream 3.
	h.effective = 1
	h.callBody = []byte("hello")
	in.call(t, "proxy_on_http_call_response", 1, 1, 1, uint64(len(h.callBody)), 0)
	require.Equal(t, uint32(3), h.effective)
	require.Contains(t, h.headers[3], [2]string{"x-callout-body", "hello"})
	require.True(t, h.continued[3])
	require.Empty(t, h.logs, "no warnings: %s", strings.Join(h.logs, "; "))
	require.Positive(t, h.allocs)
	in.finish(t, 2)
	in.finish(t, 3)

	// A body above the allocator's scratch size takes the dedicated-buffer path.
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10)
	require.Equal(t, uint64(1), in.request(t, 4, [][2]string{{"x-callout", "sidecar"}}))
	h.effective = 1
	h.callBody = big
	in.call(t, "proxy_on_http_call_response", 1, 2, 1, uint64(len(big)), 0)
	require.Contains(t, h.headers[4], [2]string{"x-callout-body", string(big)})
	require.Empty(t, h.logs)
	in.finish(t, 4)
}

func TestPanicInCallbackKeepsVM(t *testing.T) {
	in := start(t)
	require.Equal(t, uint64(0), in.request(t, 2, [][2]string{{"x-panic", "1"}}), "a panicking callback answers ActionContinue")
	require.Equal(t, []string{"panic in proxy_on_request_headers: x-panic requested"}, in.host.logs)
	in.finish(t, 2)
	require.Equal(t, uint64(0), in.request(t, 3, [][2]string{{":path", "/"}}))
	require.Contains(t, in.host.headers[3], [2]string{"x-example", "1"}, "the VM still serves requests")
}

// TestExampleHeapStaysBounded drives many requests with a tick every 100;
// the tick's CollectGarbageIfGrown must keep linear memory from growing with
// the request count.
func TestExampleHeapStaysBounded(t *testing.T) {
	in := start(t)
	headers := [][2]string{{":path", "/v1/chat/completions"}, {":authority", "api.example"}, {"content-type", "application/json"}}
	const requests = 20000
	for i := uint32(0); i < requests; i++ {
		id := 2 + i
		require.Equal(t, uint64(0), in.request(t, id, append([][2]string(nil), headers...)))
		in.finish(t, id)
		if i%100 == 99 {
			in.host.effective = 1
			in.call(t, "proxy_on_tick", 1)
		}
	}
	gcs := 0
	for _, l := range in.host.logs {
		if l == "gc" {
			gcs++
		}
	}
	require.Positive(t, gcs, "the tick collected at least once")
	pages := in.mod.Memory().Size() / 65536
	t.Logf("after %d requests: %d collections, linear memory %d MiB", requests, gcs, pages*65536>>20)
	require.Less(t, in.mod.Memory().Size(), uint32(64<<20), "linear memory stays under 64 MiB")
}

// BenchmarkRequestHeaders measures one stream's create, request headers
// (get all headers, add one, get a missing one, increment a counter) and
// teardown through the compiled module under wazero.
func BenchmarkRequestHeaders(b *testing.B) {
	in := start(b)
	headers := [][2]string{{":path", "/v1/chat/completions"}, {":authority", "api.example"}, {"content-type", "application/json"}}
	id := uint32(2)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		in.request(b, id, headers)
		in.finish(b, id)
		id++
		if i%1000 == 999 {
			in.host.effective = 1
			in.call(b, "proxy_on_tick", 1)
		}
	}
}

// BenchmarkTickGCCheck measures proxy_on_tick when little was allocated
// since the last collection: the cost of CollectGarbageIfGrown's check plus
// one callback.
func BenchmarkTickGCCheck(b *testing.B) {
	in := start(b)
	in.host.effective = 1
	in.call(b, "proxy_on_tick", 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		in.call(b, "proxy_on_tick", 1)
	}
}
