package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// BenchmarkGuestProfile profiles the filter inside the VM with wazero's
// function listeners: per request, how often each guest function ran, its
// self time and its inclusive time, logged as a table (go test -v). Every
// listened call costs the listener's overhead too, which inflates small
// functions; set SHEPHERD_PROFILE_FUNCS to a comma-separated list of name
// fragments (for example "proxy_on_,env.") to listen to those only, which
// gives accurate times for them. The allocation table names the callers of
// runtime.mallocgc.
//
// body-1MiB is the 1 MiB request of BenchmarkCurves/body-size (1024
// messages): where the request body's time goes at the size of the goal.
// The stream cases profile one streamed chat completion per iteration (the
// stream of BenchmarkStreamGuestTime, 202 events, each its own body
// callback), with usage asked by the client and stripped by the filter, and
// in OpenAI's shape ("usage":null in every chunk, cut by the filter).
func BenchmarkGuestProfile(b *testing.B) {
	mod := filterWithNames(b)
	ok := scenario.Upstream(b, okUpstream{})
	sse := &sseUpstream{gate: make(chan struct{}, 1)}
	streamUp := scenario.Upstream(b, sse)
	nullSSE := &sseUpstream{events: openAIEvents, gate: make(chan struct{}, 1)}
	nullUp := scenario.Upstream(b, nullSSE)
	type profCase struct {
		name, method, path, body, up string
		gate                         chan struct{}
	}
	var cases []profCase
	for _, tc := range guestCases() {
		cases = append(cases, profCase{tc.name, tc.method, tc.path, tc.body, ok, nil})
	}
	cases = append(cases,
		profCase{"body-1MiB", http.MethodPost, "/v1/chat/completions", chatOfSize(1<<20, 1024), ok, nil},
		profCase{"stream-usage-asked", http.MethodPost, "/v1/chat/completions",
			`{"model":"fast","max_tokens":100,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}`, streamUp, sse.gate},
		profCase{"stream-usage-stripped", http.MethodPost, "/v1/chat/completions",
			`{"model":"fast","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`, streamUp, sse.gate},
		profCase{"stream-openai-usage-null-stripped", http.MethodPost, "/v1/chat/completions",
			`{"model":"fast","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`, nullUp, nullSSE.gate})
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			up := tc.up
			p := &guestProfile{stats: map[string]*fnStat{}, allocs: map[string]int{}}
			if f := os.Getenv("SHEPHERD_PROFILE_FUNCS"); f != "" {
				p.only = strings.Split(f, ",")
			}
			ctx := experimental.WithFunctionListenerFactory(context.Background(), p)
			h, err := envoy.New(ctx, envoy.Config{
				Module: mod, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
				PluginConfig: []byte(benchConfig), Workers: 1,
				Clusters: map[string]string{"p": up}, DefaultCluster: "p",
				StatsTags: statsTags(), LogWriter: io.Discard,
			})
			require.NoError(b, err)
			defer h.Close(context.Background())
			do := func() {
				r := benchRequest(tc.method, tc.path, tc.body)
				w := httptest.NewRecorder()
				if tc.gate != nil {
					h.ServeHTTP(gatedRecorder{w, tc.gate}, r)
				} else {
					h.ServeHTTP(w, r)
				}
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			warm := 500 // metrics defined, buffers and heap grown
			if tc.gate != nil {
				warm = 20 // a stream is 202 callbacks
			}
			for range warm {
				do()
			}
			p.on = true
			b.ResetTimer()
			for range b.N {
				do()
			}
			b.StopTimer()
			p.on = false
			b.Log("\n" + p.table(b.N))
		})
	}
}

type fnStat struct {
	calls      int
	self, incl time.Duration
}

type fnFrame struct {
	name  string
	start time.Time
	child time.Duration
}

// guestProfile is a wazero FunctionListenerFactory and FunctionListener that
// times every listened function. A VM runs one call at a time, so one stack
// serves.
type guestProfile struct {
	only   []string
	on     bool
	stack  []fnFrame
	stats  map[string]*fnStat
	allocs map[string]int
}

func (p *guestProfile) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	name := def.DebugName()
	if name == ".runtime.mallocgc" {
		return p
	}
	if p.only == nil {
		return p
	}
	for _, f := range p.only {
		if strings.Contains(name, f) {
			return p
		}
	}
	return nil
}

func (p *guestProfile) Before(_ context.Context, _ api.Module, def api.FunctionDefinition, _ []uint64, si experimental.StackIterator) {
	name := def.DebugName()
	if p.on && name == ".runtime.mallocgc" {
		// The first caller outside the runtime and the binding names the allocation.
		si.Next()
		var chain []string
		for si.Next() {
			n := si.Function().Definition().DebugName()
			chain = append(chain, n)
			if !strings.HasPrefix(n, ".runtime.") && !strings.HasPrefix(n, ".internal_runtime") &&
				!strings.Contains(n, "filter_proxywasm") {
				break
			}
		}
		p.allocs[strings.Join(chain, " < ")]++
	}
	p.stack = append(p.stack, fnFrame{name: name, start: time.Now()})
}

func (p *guestProfile) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {
	p.pop()
}

func (p *guestProfile) Abort(context.Context, api.Module, api.FunctionDefinition, error) {
	p.pop()
}

func (p *guestProfile) pop() {
	f := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	took := time.Since(f.start)
	if len(p.stack) > 0 {
		p.stack[len(p.stack)-1].child += took
	}
	if !p.on {
		return
	}
	s := p.stats[f.name]
	if s == nil {
		s = &fnStat{}
		p.stats[f.name] = s
	}
	s.calls++
	s.self += took - f.child
	s.incl += took // a recursive function counts each level
}

func (p *guestProfile) table(n int) string {
	names := make([]string, 0, len(p.stats))
	for k := range p.stats {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return p.stats[names[i]].self > p.stats[names[j]].self })
	var sb strings.Builder
	short := func(s string) string { return strings.ReplaceAll(s, "github.com_shepherd_mesh_shepherd_", "") }
	fmt.Fprintf(&sb, "%-72s %9s %9s %9s\n", "function (per request)", "calls", "self µs", "incl µs")
	for i, k := range names {
		if i == 40 {
			break
		}
		s := p.stats[k]
		fmt.Fprintf(&sb, "%-72s %9.1f %9.2f %9.2f\n", short(k), float64(s.calls)/float64(n),
			float64(s.self.Nanoseconds())/1e3/float64(n), float64(s.incl.Nanoseconds())/1e3/float64(n))
	}
	callers := make([]string, 0, len(p.allocs))
	for k := range p.allocs {
		callers = append(callers, k)
	}
	sort.Slice(callers, func(i, j int) bool { return p.allocs[callers[i]] > p.allocs[callers[j]] })
	sb.WriteString("allocations per request, by caller\n")
	for _, k := range callers {
		fmt.Fprintf(&sb, "%6.2f %s\n", float64(p.allocs[k])/float64(n), short(k))
	}
	return sb.String()
}
