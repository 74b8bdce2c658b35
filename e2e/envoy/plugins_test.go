package envoy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	multiOnce sync.Once
	multiWasm []byte
	multiErr  error
)

// buildMulti compiles testdata/multi once per test binary.
func buildMulti(t testing.TB) []byte {
	t.Helper()
	multiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "envoy-multi")
		if err != nil {
			multiErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "multi.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/multi")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			multiErr = fmt.Errorf("build multi: %v\n%s", err, b)
			return
		}
		multiWasm, multiErr = os.ReadFile(out)
	})
	require.NoError(t, multiErr)
	return multiWasm
}

// newChain starts a host whose chain is the given plugins of testdata/multi,
// each {vm_id, vm configuration, plugin configuration}, with root ids r0, r1 ...
func newChain(t *testing.T, workers int, plugins ...[3]string) *Host {
	t.Helper()
	up := echoUpstream(t)
	mod := buildMulti(t)
	cfg := Config{Module: mod, PluginName: "p0", RootID: "r0", VMID: plugins[0][0], VMConfig: []byte(plugins[0][1]),
		PluginConfig: []byte(plugins[0][2]), Workers: workers, Clusters: map[string]string{"up": hostPort(up.URL)},
		DefaultCluster: "up", LogWriter: io.Discard, CompilationCache: compCache}
	for i, p := range plugins[1:] {
		cfg.Filters = append(cfg.Filters, Filter{Module: mod, PluginName: fmt.Sprintf("p%d", i+1), RootID: fmt.Sprintf("r%d", i+1),
			VMID: p[0], VMConfig: []byte(p[1]), PluginConfig: []byte(p[2])})
	}
	h, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

// waitLog waits (up to 10 s) for a log line with the prefix and returns its text.
func waitLog(t *testing.T, h *Host, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range h.Logs() {
			if strings.HasPrefix(l.Message, prefix) {
				return l.Text
			}
		}
		require.True(t, time.Now().Before(deadline), "no log line %q in %v", prefix, logMessages(h))
		time.Sleep(5 * time.Millisecond)
	}
}

// Plugins with the same vm_id (and code and VM configuration) share each
// worker's VM, one root context each, as Envoy does (proxy-wasm-cpp-host
// src/wasm.cc WasmBase::start): the second plugin's configuration and tick are
// its own, and its log lines carry its own prefix.
func TestPluginsShareAVMByVMID(t *testing.T) {
	h := newChain(t, 2, [3]string{"vm1", "", "first"}, [3]string{"vm1", "", "second tick"})
	require.Len(t, h.VMStats(), 2, "one VM per worker for both plugins")

	configured := map[string]int{}
	for _, m := range logMessages(h) {
		if strings.HasPrefix(m, "configure ") {
			configured[m]++
		}
	}
	require.Equal(t, map[string]int{"configure first root=r0 roots=1": 2, "configure second root=r1 roots=2": 2}, configured)

	text := waitLog(t, h, "tick second")
	require.Contains(t, text, " wasm log p1 r1 vm1: tick second")
	for _, m := range logMessages(h) {
		require.NotEqual(t, "tick first", m, "the first plugin set no tick")
	}
}

// Two wasm filters in one chain both see the request, in chain order, and
// the response in reverse order; the second sees the first's header changes.
func TestPluginsSeeTheRequestInChainOrder(t *testing.T) {
	tests := []struct {
		name    string
		plugins [][3]string
		vms     int
	}{
		{"one vm", [][3]string{{"vm1", "", "first"}, {"vm1", "", "second"}}, 1},
		{"two vms", [][3]string{{"vm1", "", "first"}, {"vm2", "", "second"}}, 2},
		{"three filters", [][3]string{{"vm1", "", "first"}, {"vm2", "", "second"}, {"vm1", "", "third"}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newChain(t, 1, tc.plugins...)
			require.Len(t, h.VMStats(), tc.vms)
			var names []string
			for _, p := range tc.plugins {
				names = append(names, p[2])
			}
			resp, body := do(t, h, "GET", "/chain", nil)
			require.Equal(t, 200, resp.StatusCode)
			require.Contains(t, body, "x-order="+strings.Join(names, ","))
			var reversed []string
			for i := len(names) - 1; i >= 0; i-- {
				reversed = append(reversed, names[i])
			}
			require.Equal(t, reversed, resp.Header.Values("x-resp-order"))
			require.Equal(t, []string{"envoy"}, resp.Header.Values("server"))
			require.Len(t, resp.Header.Values("x-envoy-upstream-service-time"), 1)
		})
	}
}

// VMs of one vm_id share data and queues even when they are different VMs
// (here: different VM configurations, so different VM keys); another vm_id
// sees neither (proxy-wasm-cpp-host src/shared_data.cc, src/shared_queue.cc).
func TestPluginsShareDataAndQueuesByVMID(t *testing.T) {
	t.Run("same vm_id", func(t *testing.T) {
		h := newChain(t, 1, [3]string{"vm1", "a", "first share register"}, [3]string{"vm1", "b", "second read send"})
		require.Len(t, h.VMStats(), 2, "different VM configurations: different VMs")
		resp, body := do(t, h, "GET", "/q", nil)
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, "x-sent=ok")
		require.Contains(t, body, "x-shared=from first")
		text := waitLog(t, h, "queue first got from second")
		require.Contains(t, text, " wasm log p0 r0 vm1: ", "the registrant's root context runs on_queue_ready")
	})
	t.Run("other vm_id", func(t *testing.T) {
		h := newChain(t, 1, [3]string{"vm1", "", "first share register"}, [3]string{"vm2", "", "second read send"})
		resp, body := do(t, h, "GET", "/q", nil)
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, "x-sent=error status returned by host: not found")
		require.Contains(t, body, "x-shared=error status returned by host: not found")
	})
}

func TestChainRefusesWhatItCannotServe(t *testing.T) {
	mod := buildMulti(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"fail reload", Config{Module: mod, FailReload: true, Filters: []Filter{{Module: mod}}}, "config.fail_reload: not supported with several filters or services"},
		{"no plugin", Config{NoPlugin: true, Filters: []Filter{{Module: mod}}}, "config.no_plugin: further filters and services need a plugin in the first filter"},
		{"no plugin, a service", Config{NoPlugin: true, Services: []Service{{Filter: Filter{Module: mod}}}}, "config.no_plugin: further filters and services need a plugin in the first filter"},
		{"failing service", Config{Module: mod, PluginConfig: []byte("first"), LogWriter: io.Discard, Services: []Service{{Filter: Filter{Module: mod}, Singleton: true}}},
			"config.services[0]: vm 0: failed to configure thread-local wasm plugin: proxy_on_configure returned false"},
	} {
		_, err := New(context.Background(), tc.cfg)
		require.EqualError(t, err, tc.want, tc.name)
	}
	h := newChain(t, 1, [3]string{"vm1", "", "first"}, [3]string{"vm1", "", "second"})
	require.EqualError(t, h.Reconfigure([]byte("first")), "reconfigure: a host with several filters is configured only at its start")
}

// A singleton wasm service (bootstrap_extensions envoy.bootstrap.wasm) runs on a
// VM of its own, with its own root context and tick, and shares queues and data
// with the filters of its vm_id: a queue it registers is filled by a filter's
// VM and drained by the service (proxy-wasm-cpp-host src/shared_queue.cc).
// A service that is not a singleton runs on each worker's VM.
func TestServicesShareQueuesWithFilters(t *testing.T) {
	up := echoUpstream(t)
	mod := buildMulti(t)
	for _, tc := range []struct {
		name      string
		singleton bool
		vms       int
		roots     string
	}{
		{"singleton", true, 3, "roots=1"},
		{"per worker", false, 2, "roots=2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(context.Background(), Config{Module: mod, PluginName: "f", RootID: "rf", VMID: "vm1",
				PluginConfig: []byte("filter send"), Workers: 2, Clusters: map[string]string{"up": hostPort(up.URL)},
				DefaultCluster: "up", LogWriter: io.Discard, CompilationCache: compCache,
				Services: []Service{{Filter: Filter{Module: mod, PluginName: "s", RootID: "rs", VMID: "vm1",
					PluginConfig: []byte("svc register tick share")}, Singleton: tc.singleton}}})
			require.NoError(t, err)
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			require.Len(t, h.VMStats(), tc.vms)
			_, ok := findLog(h, "configure svc root=rs "+tc.roots)
			require.True(t, ok, logMessages(h))

			resp, body := do(t, h, "GET", "/s", nil)
			require.Equal(t, 200, resp.StatusCode)
			require.Contains(t, body, "x-sent=ok")
			require.Contains(t, waitLog(t, h, "queue svc got from filter"), " wasm log s rs vm1: ")
			require.Contains(t, waitLog(t, h, "tick svc"), " wasm log s rs vm1: ")
		})
	}
}

// Request headers reach the plugin in wire order on a plain HTTP/1.1
// connection (Envoy's HTTP/1 codec keeps the order it parses), request after
// request on one kept-alive connection, bodies of either framing skipped.
func TestRequestHeadersInWireOrder(t *testing.T) {
	h := newChain(t, 1, [3]string{"vm1", "", "first names"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ConnContext: WireOrderConnContext, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(WireOrderListener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	br := bufio.NewReader(conn)
	for _, tc := range []struct {
		name, request, want string
	}{
		{"get", "GET /a HTTP/1.1\r\nHost: x\r\nZ-Last: 1\r\nA-First: 2\r\nM-Mid: 3\r\nA-First: 4\r\n\r\n",
			"z-last a-first m-mid a-first x-forwarded-proto x-request-id"},
		{"content-length body that looks like a head", "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\nY-Two: 1\r\n\r\nQ-Fake: 1\r\nP-Fake: 2\r\n\r\n",
			"content-length y-two x-forwarded-proto x-request-id"},
		{"chunked body", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nB-After: 1\r\nA-Before: 2\r\n\r\n5\r\nK-X: \r\n0\r\nT-Trailer: 1\r\n\r\n",
			"b-after a-before x-forwarded-proto x-request-id"},
		{"after the bodies", "GET /d HTTP/1.1\r\nHost: x\r\nC-1: 1\r\nB-2: 2\r\nA-3: 3\r\n\r\n",
			"c-1 b-2 a-3 x-forwarded-proto x-request-id"},
	} {
		_, err := io.WriteString(conn, tc.request)
		require.NoError(t, err, tc.name)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, tc.name)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err, tc.name)
		require.Equal(t, 200, resp.StatusCode, tc.name)
		require.Contains(t, string(body), "x-names=:authority :path :method :scheme "+tc.want+" ", tc.name)
	}
}
