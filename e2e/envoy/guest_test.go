package envoy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tetratelabs/wazero"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

var (
	guestOnce sync.Once
	guestWasm []byte
	guestErr  error
	compCache = wazero.NewCompilationCache()
)

// buildGuest compiles testdata/guest once per test binary (go's build cache keeps
// repeated runs quick).
func buildGuest(t testing.TB) []byte {
	t.Helper()
	guestOnce.Do(func() {
		dir, err := os.MkdirTemp("", "envoy-guest")
		if err != nil {
			guestErr = err
			return
		}
		out := filepath.Join(dir, "guest.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/guest")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			guestErr = fmt.Errorf("build guest: %v\n%s", err, b)
			return
		}
		guestWasm, guestErr = os.ReadFile(out)
		_ = os.RemoveAll(dir)
	})
	require.NoError(t, guestErr)
	return guestWasm
}

// echoUpstream answers with the request it saw: method, host, path, the x- headers and body.
func echoUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var xs []string
		for k, v := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-") && !strings.EqualFold(k, "x-request-id") && !strings.EqualFold(k, "x-forwarded-proto") {
				xs = append(xs, strings.ToLower(k)+"="+strings.Join(v, ","))
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %s %s body=%s", r.Method, r.Host, r.URL.RequestURI(), strings.Join(sortStrings(xs), " "), body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func hostPort(u string) string { return strings.TrimPrefix(u, "http://") }

type hostOpt func(*Config)

func newHost(t *testing.T, mode string, upstream string, opts ...hostOpt) *Host {
	t.Helper()
	cfg := Config{
		Module: buildGuest(t), PluginName: "guest", RootID: "guest_root", VMID: "guestvm",
		PluginConfig: []byte(mode), Clusters: map[string]string{"up": hostPort(upstream)},
		DefaultCluster: "up", LogWriter: io.Discard, CompilationCache: compCache,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func do(t *testing.T, h http.Handler, method, target string, body io.Reader) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+target, body)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func logMessages(h *Host) []string {
	var out []string
	for _, l := range h.Logs() {
		out = append(out, l.Message)
	}
	return out
}

func findLog(h *Host, prefix string) (string, bool) {
	for _, m := range logMessages(h) {
		if strings.HasPrefix(m, prefix) {
			return strings.TrimPrefix(m, prefix), true
		}
	}
	return "", false
}

func TestLifecycleHeadersMetricsAndLogs(t *testing.T) {
	up := echoUpstream(t)
	var buf strings.Builder
	var mu sync.Mutex
	h := newHost(t, "basic", up.URL, func(c *Config) {
		c.StatsTags = []StatsTag{{Name: "route", Regex: `(_route=\.=(.+?);\.;)`}}
		c.LogWriter = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	})

	resp, body := do(t, h, "GET", "/hello?q=1", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "ok", resp.Header.Get("x-resp"))
	require.Contains(t, body, "GET 127.0.0.1")
	require.Contains(t, body, "/hello?q=1 x-guest=1 body=")

	// A local reply from the request phase goes through the plugin's response callbacks.
	resp, body = do(t, h, "GET", "/deny", nil)
	require.Equal(t, 403, resp.StatusCode)
	require.Equal(t, "denied", body)
	require.Equal(t, "yes", resp.Header.Get("x-denied"))
	require.Equal(t, "ok", resp.Header.Get("x-resp"))
	require.Equal(t, "text/plain", resp.Header.Get("content-type"))

	tests := []struct{ prefix, want string }{
		{"started in mode ", "basic"},
		{"cas current: ", "ok"},
		{"cas value: ", "v3"},
		{"log phase path=", "/hello?q=1 status=200 err=ok"},
		// A dotted path is one unknown name to Envoy, not request/path.
		{"props: ", "guest|guest_root|guestvm|/hello?q=1|GET|up|default|200|1|" + types.ErrorStatusNotFound.Error()},
	}
	for _, tc := range tests {
		got, ok := findLog(h, tc.prefix)
		require.True(t, ok, "no log line %q in %v", tc.prefix, logMessages(h))
		require.Equal(t, tc.want, got, tc.prefix)
	}
	// Envoy's answers: CAS mismatch, NotFound, counters reject 0, and request headers
	// are not available in the response phase (BadArgument).
	for prefix, want := range map[string]error{
		"cas stale: ":                        types.ErrorStatusCasMismatch,
		"cas missing: ":                      types.ErrorStatusNotFound,
		"counter zero delta: ":               types.ErrorStatusBadArgument,
		"request header in response phase: ": types.ErrorStatusBadArgument,
	} {
		got, ok := findLog(h, prefix)
		require.True(t, ok, prefix)
		require.Equal(t, want.Error(), got, prefix)
	}

	var prom strings.Builder
	h.WritePrometheus(&prom)
	text := prom.String()
	require.Contains(t, text, "# TYPE guest_requests_total counter\nguest_requests_total{} 2\n")
	require.Contains(t, text, "# TYPE guest_calls_total counter\nguest_calls_total{route=\"chat\"} 4\n")
	require.Contains(t, text, "# TYPE guest_sizes histogram\n")
	require.Contains(t, text, "guest_sizes_bucket{le=\"5\"} 0\nguest_sizes_bucket{le=\"10\"} 2\n")
	require.Contains(t, text, "guest_sizes_bucket{le=\"3600000\"} 2\nguest_sizes_bucket{le=\"+Inf\"} 2\nguest_sizes_sum{} 14\nguest_sizes_count{} 2\n")
	require.Contains(t, text, "envoy_wasm_envoy_wasm_runtime_v8_created{} 1\n")

	mu.Lock()
	out := buf.String()
	mu.Unlock()
	// Envoy's default format: [time][thread][level][logger] [file:line] message.
	require.Regexp(t, `(?m)^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[0\]\[info\]\[wasm\] \[source/extensions/common/wasm/context\.cc:1137\] wasm log guest guest_root guestvm: started in mode basic$`, out)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestLocalReplyInResponsePhaseReplacesUpstream(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "replace", up.URL)
	resp, body := do(t, h, "GET", "/x", nil)
	require.Equal(t, 418, resp.StatusCode)
	require.Equal(t, "replaced", body)
	require.Equal(t, "1", resp.Header.Get("x-local"))
}

func TestHTTPCalloutAnsweredOnRootContext(t *testing.T) {
	up := echoUpstream(t)
	side := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "pong")
	}))
	t.Cleanup(side.Close)
	h := newHost(t, "callout", up.URL, func(c *Config) { c.Clusters["side"] = hostPort(side.URL) })
	var mu sync.Mutex
	var calls [][2]string
	trace := func(id uint32, name string) {
		mu.Lock()
		calls = append(calls, [2]string{fmt.Sprint(id), name})
		mu.Unlock()
	}
	h.trace.Store(&trace)

	resp, body := do(t, h, "GET", "/c", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, "x-callout=200 pong")
	got, ok := findLog(h, "unknown cluster: ")
	require.True(t, ok)
	require.Equal(t, types.ErrorStatusBadArgument.Error(), got)

	mu.Lock()
	defer mu.Unlock()
	var ids []string
	for _, c := range calls {
		if c[1] == "proxy_on_http_call_response" {
			ids = append(ids, c[0])
		}
	}
	require.Equal(t, []string{"1"}, ids, "the callout answer arrives on the root context (id 1)")
}

func TestBodyBufferingOnPause(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "buffer", up.URL)
	srv := httptest.NewServer(h)
	defer srv.Close()

	pr, pw := io.Pipe()
	go func() {
		for _, part := range []string{"hello ", "big ", "world"} {
			_, _ = pw.Write([]byte(part))
		}
		pw.Close()
	}()
	req, err := http.NewRequest("POST", srv.URL+"/b", pr)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.True(t, strings.HasPrefix(string(b), "[POST "), string(b))
	require.True(t, strings.HasSuffix(string(b), "body=HELLO BIG WORLD]"), string(b))

	sizes, ok := findLog(h, "request body sizes ")
	require.True(t, ok)
	// Each delivery carries everything buffered so far; the last one is the whole body.
	parts := strings.Split(sizes, ",")
	require.Equal(t, "15", parts[len(parts)-1])
	prev := -1
	for _, p := range parts {
		var n int
		_, err := fmt.Sscan(p, &n)
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, prev)
		prev = n
	}
}

func TestBufferedBodyOverLimitIs413(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "buffer", up.URL, func(c *Config) { c.BufferLimitBytes = 8 })
	bodyCalls := make(chan struct{}, 4)
	trace := func(_ uint32, name string) {
		if name == "proxy_on_request_body" {
			bodyCalls <- struct{}{}
		}
	}
	h.trace.Store(&trace)
	srv := httptest.NewServer(h)
	defer srv.Close()
	pr, pw := io.Pipe()
	go func() {
		// The second part is sent once the plugin has paused on the first, so it is
		// added to a buffered body.
		_, _ = pw.Write([]byte("0123456"))
		select {
		case <-bodyCalls:
		case <-time.After(time.Minute):
			pw.CloseWithError(errors.New("the plugin never read the first part"))
			return
		}
		_, _ = pw.Write([]byte("789abcdef"))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/big", pr)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body) // the plugin buffers this reply's body too, over the same limit
	resp.Body.Close()
	require.Equal(t, 413, resp.StatusCode)
}

func TestHeaderRewriteReroutes(t *testing.T) {
	a := echoUpstream(t)
	b := echoUpstream(t)
	h := newHost(t, "reroute", a.URL, func(c *Config) {
		c.Clusters = map[string]string{"a": hostPort(a.URL), "b": hostPort(b.URL)}
		c.Routes = map[string]string{"a.example": "a", "b.example": "b"}
		c.DefaultCluster = ""
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/orig", nil)
	req.Host = "a.example:8080"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	// Routed by the rewritten :authority with the new :path.
	require.True(t, strings.HasPrefix(string(body), "GET b.example /rewritten"), string(body))
}

func TestHeadersPauseHoldsBodyUntilIdleTimeout(t *testing.T) {
	// Without allow_on_headers_stop_iteration, Envoy gives a plugin that paused in
	// its headers callback no body; the stream sits until the idle timeout (408).
	up := echoUpstream(t)
	h := newHost(t, "holdbody", up.URL, func(c *Config) { c.StreamIdleTimeout = 50 * time.Millisecond })
	var mu sync.Mutex
	var calls []string
	trace := func(_ uint32, name string) { mu.Lock(); calls = append(calls, name); mu.Unlock() }
	h.trace.Store(&trace)
	resp, body := do(t, h, "POST", "/hold", strings.NewReader(`{"go":"to-b"}`))
	require.Equal(t, 408, resp.StatusCode)
	require.Equal(t, "stream timeout", body)
	mu.Lock()
	defer mu.Unlock()
	require.NotContains(t, calls, "proxy_on_request_body")
}

func TestAllowOnHeadersStopIterationRoutesByBody(t *testing.T) {
	a := echoUpstream(t)
	b := echoUpstream(t)
	h := newHost(t, "holdbody", a.URL, func(c *Config) {
		c.AllowOnHeadersStopIteration = true
		c.Clusters = map[string]string{"a": hostPort(a.URL), "b": hostPort(b.URL)}
		c.Routes = map[string]string{"b.example": "b"}
		c.DefaultCluster = "a"
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(`{"go":`))
		_, _ = pw.Write([]byte(`"to-b"}`))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/hold", pr)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, `POST b.example /hold x-body-len=13 body={"go":"to-b"}`, string(body))
}

func TestGrpcCalloutRawBytes(t *testing.T) {
	up := echoUpstream(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var gotMD []string
	var mu sync.Mutex
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(st)
		md, _ := metadata.FromIncomingContext(st.Context())
		mu.Lock()
		gotMD = append(gotMD, method, strings.Join(md.Get("x-md"), ","))
		mu.Unlock()
		var in []byte
		if err := st.RecvMsg(&in); err != nil {
			return err
		}
		out := append([]byte("pong:"), in...)
		return st.SendMsg(&out)
	}))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	h := newHost(t, "grpc", up.URL, func(c *Config) { c.Clusters["grpc"] = lis.Addr().String() })
	resp, body := do(t, h, "GET", "/g", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, "x-grpc=pong:ping")
	mu.Lock()
	require.Equal(t, []string{"/test.Echo/Say", "v"}, gotMD)
	mu.Unlock()
	got, ok := findLog(h, "grpc unknown cluster: ")
	require.True(t, ok)
	require.Equal(t, proxywasm.ErrParseFailure.Error(), got, "Envoy answers ParseFailure for an unknown plain cluster name")
}

func TestGrpcStreamCallbacksInEnvoyOrder(t *testing.T) {
	up := echoUpstream(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		if err := st.SetHeader(metadata.Pairs("x-server", "s1")); err != nil {
			return err
		}
		for {
			var in []byte
			if err := st.RecvMsg(&in); err != nil {
				if err == io.EOF {
					break
				}
				return err
			}
			out := append([]byte("pong:"), in...)
			if err := st.SendMsg(&out); err != nil {
				return err
			}
		}
		st.SetTrailer(metadata.Pairs("x-trailer", "t1"))
		return nil
	}))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	h := newHost(t, "grpcstream", up.URL, func(c *Config) { c.Clusters["grpc"] = lis.Addr().String() })
	resp, body := do(t, h, "GET", "/s", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, "x-stream=im:s1,pong:a,pong:b,tm:t1,close:0")
}

func TestTickDeliveredToRootContext(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "tick", up.URL)
	require.Eventually(t, func() bool {
		var b strings.Builder
		h.WritePrometheus(&b)
		for _, line := range strings.Split(b.String(), "\n") {
			var n int
			if _, err := fmt.Sscanf(line, "guest_ticks{} %d", &n); err == nil && n >= 3 {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
}

func TestSharedQueueDelivery(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "queue", up.URL, func(c *Config) { c.Workers = 2 })
	for _, p := range []string{"/a", "/b"} {
		resp, _ := do(t, h, "GET", p, nil)
		require.Equal(t, 200, resp.StatusCode)
	}
	require.Eventually(t, func() bool {
		_, a := findLog(h, "dequeued job-a")
		_, b := findLog(h, "dequeued job-b")
		return a && b
	}, 10*time.Second, 5*time.Millisecond)
}

func TestTrappedVM(t *testing.T) {
	tests := []struct {
		name       string
		failOpen   bool
		trapStatus int
		nextStatus int
	}{
		{"fail closed", false, 503, 503},
		{"fail open", true, 200, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := echoUpstream(t)
			h := newHost(t, "trap", up.URL, func(c *Config) { c.FailOpen = tc.failOpen })
			resp, _ := do(t, h, "GET", "/ok", nil)
			require.Equal(t, 200, resp.StatusCode)
			resp, body := do(t, h, "GET", "/trap", nil)
			require.Equal(t, tc.trapStatus, resp.StatusCode, body)
			// The VM stays failed: later streams follow fail_open without the plugin.
			resp, _ = do(t, h, "GET", "/ok", nil)
			require.Equal(t, tc.nextStatus, resp.StatusCode)
			st := h.VMStats()
			require.True(t, st[0].Failed)
			require.Equal(t, uint64(1), st[0].Traps)
			require.Contains(t, logMessages(h), "sync: unlock of unlocked mutex",
				"the guest's stderr writes are plugin log lines")
		})
	}
}

func TestFailReloadReplacesFailedVM(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "trap", up.URL, func(c *Config) { c.FailReload = true })
	resp, _ := do(t, h, "GET", "/trap", nil)
	require.Equal(t, 503, resp.StatusCode)
	resp, _ = do(t, h, "GET", "/ok", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.False(t, h.VMStats()[0].Failed)
}

// GuestTime adds up the time of the callbacks the host makes, so it grows with
// every stream the plugin sees.
func TestGuestTimeCountsCallbacks(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "trap", up.URL)
	before := h.VMStats()[0]
	require.Positive(t, before.GuestTime, "the VM's start ran guest code")
	resp, _ := do(t, h, "GET", "/ok", nil)
	require.Equal(t, 200, resp.StatusCode)
	after := h.VMStats()[0]
	require.Greater(t, after.Callbacks, before.Callbacks)
	require.Greater(t, after.GuestTime, before.GuestTime)
	require.Zero(t, after.HostTime, "host calls are timed only when asked")

	// With TimeHostCalls, the host calls the guest made (headers, logs, ...)
	// are a part of its time.
	timed := newHost(t, "trap", up.URL, func(c *Config) { c.TimeHostCalls = true })
	resp, _ = do(t, timed, "GET", "/ok", nil)
	require.Equal(t, 200, resp.StatusCode)
	st := timed.VMStats()[0]
	require.Positive(t, st.HostTime)
	require.Less(t, st.HostTime, st.GuestTime)
}

func TestLegacyWASIKillsGoGuestOnGC(t *testing.T) {
	tests := []struct {
		legacy bool
		status int
	}{{false, 200}, {true, 503}}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("legacy=%v", tc.legacy), func(t *testing.T) {
			up := echoUpstream(t)
			h := newHost(t, "gc", up.URL, func(c *Config) { c.LegacyWASI = tc.legacy })
			resp, body := do(t, h, "GET", "/gc", nil)
			require.Equal(t, tc.status, resp.StatusCode, body)
			if !tc.legacy {
				require.Contains(t, body, "x-gc=done")
			}
			require.Equal(t, tc.legacy, h.VMStats()[0].Failed)
		})
	}
}

func TestStartFailureReturnsPluginLogs(t *testing.T) {
	_, err := New(context.Background(), Config{Module: buildGuest(t), PluginName: "guest", PluginConfig: []byte("startfail"),
		LogWriter: io.Discard, CompilationCache: compCache})
	require.Error(t, err)
	require.Contains(t, err.Error(), "proxy_on_configure returned false")
	require.Contains(t, err.Error(), "wasm log guest: refusing configuration")
}

func TestReconfigureKeepsOldConfigOnFailure(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "basic", up.URL)
	require.Error(t, h.Reconfigure([]byte("startfail")))
	resp, _ := do(t, h, "GET", "/x", nil)
	require.Equal(t, "ok", resp.Header.Get("x-resp"))
	require.NoError(t, h.Reconfigure([]byte("replace")))
	resp, _ = do(t, h, "GET", "/x", nil)
	require.Equal(t, 418, resp.StatusCode)
}

// importingModule assembles a module that declares ABI 0.2.1 and imports one
// function of type () -> () from module "env".
func importingModule(name string) []byte {
	const abi = "proxy_abi_version_0_2_1"
	imp := append([]byte{1, 3, 'e', 'n', 'v', byte(len(name))}, name...)
	imp = append(imp, 0, 0)
	exp := append([]byte{1, byte(len(abi))}, abi...)
	exp = append(exp, 0, 1)
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, 1, 4, 1, 0x60, 0, 0)
	m = append(append(m, 2, byte(len(imp))), imp...)
	m = append(m, 3, 2, 1, 0)
	m = append(append(m, 7, byte(len(exp))), exp...)
	m = append(m, 10, 4, 1, 2, 0, 0x0b)
	return m
}

func TestLoadFailsLikeEnvoy(t *testing.T) {
	tests := []struct {
		name   string
		module []byte
		want   string
	}{
		{"import Envoy lacks", importingModule("proxy_no_such_call"), "proxy_no_such_call"},
		// ABI 0.1.0 only: Envoy does not register it for a 0.2.1 module.
		{"import of another ABI", importingModule("proxy_clear_route_cache"), "proxy_clear_route_cache"},
		{"no abi version", []byte{0, 'a', 's', 'm', 1, 0, 0, 0}, "missing or unknown proxy-wasm abi version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Config{Module: tc.module, LogWriter: io.Discard})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestStreamingResponseFlowsChunkByChunk(t *testing.T) {
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			_ = rc.Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	h := newHost(t, "basic", up.URL)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/sse")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("content-type"))
	rd := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		// The event arrives before the upstream is allowed to write the next one.
		line, err := rd.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("data: %d\n", i), line)
		_, _ = rd.ReadString('\n')
		next <- struct{}{}
	}
}

func BenchmarkVMInstantiate(b *testing.B) {
	wasm := buildGuest(b)
	h, err := New(context.Background(), Config{Module: wasm, PluginConfig: []byte("none"), LogWriter: io.Discard, CompilationCache: compCache})
	require.NoError(b, err)
	defer h.Close(context.Background())
	b.ResetTimer()
	var mem uint64
	for i := 0; i < b.N; i++ {
		v, err := h.newVM(context.Background(), 0, 1, []byte("none"))
		if err != nil {
			b.Fatal(err)
		}
		mem = v.memoryBytes()
		v.shutdown()
	}
	b.ReportMetric(float64(mem)/(1<<20), "MiB-memory/vm")
}

func BenchmarkRequestHeadersOnly(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	h, err := New(context.Background(), Config{Module: buildGuest(b), PluginConfig: []byte("basic"),
		Clusters: map[string]string{"up": hostPort(up.URL)}, DefaultCluster: "up", LogWriter: io.Discard, CompilationCache: compCache})
	require.NoError(b, err)
	defer h.Close(context.Background())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// TestHTTPCalloutAnswerBeyondTheBufferLimitFails: an answer larger than the
// callout buffer limit fails the callout as Envoy's async client does
// (ExceedResponseBufferLimit): the plugin gets proxy_on_http_call_response
// with no headers, body or trailers, whether the answer announced its length
// or not, and the host stops reading it instead of buffering it whole.
func TestHTTPCalloutAnswerBeyondTheBufferLimitFails(t *testing.T) {
	const limit = 64 << 10
	cases := []struct {
		name     string
		size     int
		announce bool
		failed   bool // the guest got no headers, body or trailers
	}{
		{"at the limit", limit, true, false},
		{"at the limit, streamed", limit, false, false},
		{"one byte over, announced", limit + 1, true, true},
		{"one byte over, streamed", limit + 1, false, true},
		{"256 MiB streamed", 256 << 20, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			side := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				chunk := bytes.Repeat([]byte("x"), 32<<10)
				if tc.announce {
					w.Header().Set("content-length", strconv.Itoa(tc.size))
				}
				var err error
				for sent := 0; sent < tc.size && err == nil; sent += len(chunk) {
					if _, err = w.Write(chunk[:min(len(chunk), tc.size-sent)]); err == nil && !tc.announce {
						w.(http.Flusher).Flush() // no content-length: chunked
					}
				}
				done <- err
			}))
			t.Cleanup(side.Close)
			up := echoUpstream(t)
			h := newHost(t, "callout", up.URL, func(c *Config) {
				c.Clusters["side"] = hostPort(side.URL)
				c.CalloutBufferLimitBytes = limit
			})
			resp, body := do(t, h, "GET", "/c", nil)
			require.Equal(t, 200, resp.StatusCode)
			_, sizes, _ := strings.Cut(body, "x-callout-sizes=")
			sizes, _, _ = strings.Cut(sizes, " ")
			if tc.failed {
				require.Equal(t, "0,0,0", sizes)
			} else {
				n, b, _ := strings.Cut(sizes, ",")
				require.NotEqual(t, "0", n, "headers arrived")
				require.True(t, strings.HasPrefix(b, strconv.Itoa(limit)+","), "the whole body arrived: %s", sizes)
			}
			select {
			case err := <-done:
				if tc.size >= 1<<20 {
					require.Error(t, err, "the host hung up instead of reading the whole answer")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the side server never finished")
			}
		})
	}
}
