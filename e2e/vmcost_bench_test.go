package e2e_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// BenchmarkModuleCompile measures compiling the release module with wazero's
// optimizing compiler, as a host does once per module (and Envoy per worker
// thread's runtime): a fresh runtime each time, no compilation cache.
func BenchmarkModuleCompile(b *testing.B) {
	mod := module(b)
	ctx := context.Background()
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rt := wazero.NewRuntime(ctx)
		start := time.Now()
		_, err := rt.CompileModule(ctx, mod)
		ds = append(ds, time.Since(start))
		require.NoError(b, err)
		require.NoError(b, rt.Close(ctx))
	}
	b.StopTimer()
	b.ReportMetric(float64(median(ds).Microseconds())/1e3, "compile-ms")
	b.ReportMetric(float64(len(mod)), "module-bytes")
}

// fnCalls counts the entries into one function. With fresh set, it counts only
// calls that start the function, not a Go goroutine's resumption of it: Go's
// wasm port unwinds the wasm stack when a goroutine parks and re-enters each
// frame's function on resumption, passing the resume point as the first
// parameter (0 on a fresh call; an i32, so only the low 32 bits of the
// listener's parameter are its value).
type fnCalls struct {
	fresh bool
	n     atomic.Int64
}

func (c *fnCalls) Before(_ context.Context, _ api.Module, _ api.FunctionDefinition, params []uint64, _ experimental.StackIterator) {
	if !c.fresh || len(params) == 0 || uint32(params[0]) == 0 {
		c.n.Add(1)
	}
}

func (*fnCalls) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (*fnCalls) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

// callCounters is a function listener factory that listens to the named
// functions only (a guest function by its name-section name, a host function by
// its export name) and to nothing else.
type callCounters map[string]*fnCalls

func (c callCounters) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	if l, ok := c[def.Name()]; ok {
		return l
	}
	return nil
}

func (c callCounters) reset() {
	for _, l := range c {
		l.n.Store(0)
	}
}

var (
	namedFilterOnce sync.Once
	namedFilter     []byte
	namedFilterErr  error
)

// filterWithNames builds the filter as the release does but without -s -w, so
// the module keeps its name section and listeners can find runtime functions
// by name.
func filterWithNames(b *testing.B) []byte {
	namedFilterOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shepherd-named-")
		if err != nil {
			namedFilterErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "filter.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./filter")
		cmd.Dir = wasmbuild.Root()
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if msg, err := cmd.CombinedOutput(); err != nil {
			namedFilterErr = err
			b.Logf("%s", msg)
			return
		}
		namedFilter, namedFilterErr = os.ReadFile(out)
	})
	require.NoError(b, namedFilterErr)
	return namedFilter
}

// BenchmarkGCCycles counts the guest's garbage collections per 10k requests
// through one VM, by listening to the Go runtime's own functions in a build
// that keeps its name section: completed cycles (runtime.gcMarkTermination,
// whatever started them), explicit ones (runtime.GC, which the filter calls
// past 4 MiB of allocation), and WASI poll_oneoff calls (what the collector's
// stop-the-world makes when runtime timers are pending, and what hosts before
// proxy-wasm-cpp-host PR #533 answer with ENOSYS). It also reports the guest's
// allocations per request (runtime.mallocgc). Each run sends max(b.N, 10000)
// requests after 1000 to warm up; ns/op is per request, slowed a little by the
// listeners. The legacy-wasi case runs the same traffic with poll_oneoff
// answering ENOSYS (Config.LegacyWASI, shepherd-local --legacy-wasi) and
// reports the requests that failed and the VM's traps.
func BenchmarkGCCycles(b *testing.B) {
	mod := filterWithNames(b)
	up := scenario.Upstream(b, okUpstream{})
	big := body8k()
	cases := []struct {
		name, method, path, body string
		legacy                   bool
		requests                 int // at least; 0 is 10k
	}{
		{"headers-only", http.MethodGet, "/v1/models", "", false, 0},
		{"body-8KiB", http.MethodPost, "/v1/chat/completions", big, false, 0},
		// A long-context body: read and rewritten in the buffers the VM
		// keeps, so no guest allocation per request (fewer requests: each
		// costs milliseconds).
		{"body-1MiB", http.MethodPost, "/v1/chat/completions", chatOfSize(1<<20, 1024), false, 300},
		{"headers-only-legacy-wasi", http.MethodGet, "/v1/models", "", true, 0},
		{"body-8KiB-legacy-wasi", http.MethodPost, "/v1/chat/completions", big, true, 0},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			counts := callCounters{
				"runtime.gcMarkTermination": {fresh: true},
				"runtime.gcStart":           {fresh: true},
				"runtime.GC":                {fresh: true},
				"runtime.mallocgc":          {fresh: true},
				"poll_oneoff":               {},
			}
			ctx := experimental.WithFunctionListenerFactory(context.Background(), counts)
			h, err := envoy.New(ctx, envoy.Config{
				Module: mod, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
				PluginConfig: []byte(benchConfig), Workers: 1, LegacyWASI: tc.legacy,
				Clusters: map[string]string{"p": up}, DefaultCluster: "p",
				StatsTags: statsTags(), LogWriter: io.Discard,
			})
			require.NoError(b, err)
			defer h.Close(context.Background())
			failed := 0
			send := func(n int) {
				for i := 0; i < n; i++ {
					r := benchRequest(tc.method, tc.path, tc.body)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						if !tc.legacy {
							b.Fatalf("status %d: %s", w.Code, w.Body)
						}
						failed++
					}
				}
			}
			least := tc.requests
			if least == 0 {
				least = 10_000
			}
			send(min(1000, least))
			counts.reset()
			n := max(b.N, least)
			b.ResetTimer()
			start := time.Now()
			send(n)
			elapsed := time.Since(start)
			b.StopTimer()
			per10k := func(name string) float64 { return float64(counts[name].n.Load()) * 1e4 / float64(n) }
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/op")
			b.ReportMetric(per10k("runtime.gcMarkTermination"), "gc-cycles/10k-req")
			b.ReportMetric(per10k("runtime.gcStart"), "gcStart/10k-req")
			b.ReportMetric(per10k("runtime.GC"), "explicit-gc/10k-req")
			b.ReportMetric(per10k("poll_oneoff"), "poll_oneoff/10k-req")
			b.ReportMetric(per10k("runtime.mallocgc")/1e4, "guest-mallocs/req")
			st := h.VMStats()[0]
			b.ReportMetric(float64(st.MemoryBytes)/(1<<20), "MiB-memory/vm")
			if tc.legacy {
				b.ReportMetric(float64(failed), "failed-requests")
				b.ReportMetric(float64(st.Traps), "traps")
			}
		})
	}
}
