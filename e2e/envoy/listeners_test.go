package envoy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// listenersBootstrap has two listeners, each with its own routes and a wasm
// filter of testdata/multi (plugin configurations IN and OUT) on vm_id vm1,
// and the cluster "up".
const listenersBootstrap = `
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: in
              domains: ["*"]
              routes:
              - match: {prefix: /in}
                route: {cluster: up}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: in
                root_id: in
                configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: IN}
                vm_config: {vm_id: vm1, runtime: envoy.wasm.runtime.v8, code: {local: {filename: multi.wasm}}}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  - name: egress
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: egress
          route_config:
            virtual_hosts:
            - name: out
              domains: ["*"]
              routes:
              - match: {prefix: /out}
                route: {cluster: up}
              - match: {prefix: /}
                direct_response: {status: 403, body: {inline_string: egress only}}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: out
                root_id: out
                configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: OUT}
                vm_config: {vm_id: vm1, runtime: envoy.wasm.runtime.v8, code: {local: {filename: multi.wasm}}}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
`

// startListeners loads listenersBootstrap with the given plugin configurations
// and runs its host against an echo upstream.
func startListeners(t *testing.T, in, out string) (*Bootstrap, *Host) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "multi.wasm"), buildMulti(t), 0o600))
	yaml := strings.Replace(strings.Replace(listenersBootstrap, "value: IN}", "value: "+in+"}", 1), "value: OUT}", "value: "+out+"}", 1)
	b, err := LoadBootstrap([]byte(yaml), dir)
	require.NoError(t, err)
	mod, err := os.ReadFile(b.WasmFile)
	require.NoError(t, err)
	require.Equal(t, []ListenerAddr{{Name: "egress", Listen: "127.0.0.1:1", FirstCode: true}}, b.Listeners)
	b.SetModule(mod)
	b.Config.Clusters["up"] = hostPort(echoUpstream(t).URL)
	b.Config.Workers, b.Config.LogWriter, b.Config.CompilationCache = 2, io.Discard, compCache
	h, err := New(context.Background(), b.Config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return b, h
}

// Envoy serves every listener of a bootstrap from one process: each listener
// its own route configuration and HTTP filter chain, while wasm filters of
// one VM key run on the same VMs (proxy-wasm-cpp-host src/wasm.cc createWasm
// and makeVmKey, keyed by vm_id, configuration and code, not by listener) and
// shared data and queues are the process's by vm_id (proxy-wasm-cpp-host
// src/shared_data.cc, src/shared_queue.cc).
func TestListenersServeTheirOwnRoutesAndShareVMs(t *testing.T) {
	b, h := startListeners(t, "in write register", "out read send")
	require.Equal(t, "127.0.0.1:0", b.Listen)
	require.Len(t, h.Listeners(), 1)
	require.Len(t, h.VMStats(), 2, "one VM per worker for both listeners' plugins (one VM key)")
	configured := map[string]int{}
	for _, m := range logMessages(h) {
		if strings.HasPrefix(m, "configure ") {
			configured[m]++
		}
	}
	require.Equal(t, map[string]int{"configure in root=in roots=1": 2, "configure out root=out roots=2": 2}, configured)
	ingress, egress := http.Handler(h), h.Listeners()[0]

	tests := []struct {
		name     string
		h        http.Handler
		path     string
		write    string
		status   int
		contains []string
	}{
		{"ingress routes /in through its plugin", ingress, "/in/a", "hello", 200, []string{"GET", "/in/a", "x-order=in", "x-write=hello"}},
		{"egress reads what ingress wrote", egress, "/out/b", "", 200, []string{"/out/b", "x-order=out", "x-shared=hello", "x-sent=ok"}},
		{"ingress has no /out route", ingress, "/out/b", "", 404, nil},
		{"egress answers /in with its direct response", egress, "/in/a", "", 403, []string{"egress only"}},
		{"a second write through ingress", ingress, "/in/c", "again", 200, []string{"x-order=in"}},
		{"egress sees the second write", egress, "/out/d", "", 200, []string{"x-shared=again"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptestServer(t, tc.h)
			req, err := http.NewRequest("GET", srv+tc.path, nil)
			require.NoError(t, err)
			if tc.write != "" {
				req.Header.Set("x-write", tc.write)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			for _, c := range tc.contains {
				require.Contains(t, string(body), c)
			}
			if tc.h == egress && tc.status == 200 {
				require.NotContains(t, string(body), "x-order=in", "the egress chain has only its own filter")
			}
		})
	}
	// The queue ingress's plugin registered takes what egress's plugin sent.
	text := waitLog(t, h, "queue in got from out")
	require.Contains(t, text, " wasm log in in vm1: ")
}

// Listeners with different vm_ids run on different VMs and share nothing.
func TestListenersOfOtherVMIDsShareNothing(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "multi.wasm"), buildMulti(t), 0o600))
	yaml := strings.Replace(listenersBootstrap, "value: IN}", "value: in write}", 1)
	yaml = strings.Replace(yaml, "value: OUT}", "value: out read send}", 1)
	yaml = strings.Replace(yaml, "vm_id: vm1", "vm_id: vm2", 2) // the second listener's
	yaml = strings.Replace(yaml, "vm_id: vm2", "vm_id: vm1", 1) // the first listener's back
	b, err := LoadBootstrap([]byte(yaml), dir)
	require.NoError(t, err)
	require.Equal(t, "vm2", b.Config.Listeners[0].VMID)
	mod, err := os.ReadFile(b.WasmFile)
	require.NoError(t, err)
	b.SetModule(mod)
	b.Config.Clusters["up"] = hostPort(echoUpstream(t).URL)
	b.Config.Workers, b.Config.LogWriter, b.Config.CompilationCache = 1, io.Discard, compCache
	h, err := New(context.Background(), b.Config)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	require.Len(t, h.VMStats(), 2, "a VM per vm_id")

	req, _ := http.NewRequest("GET", httptestServer(t, h)+"/in/a", nil)
	req.Header.Set("x-write", "hello")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	_, body := do(t, h.Listeners()[0], "GET", "/out/b", nil)
	require.Contains(t, body, "x-shared=error status returned by host: not found")
	require.Contains(t, body, "x-sent=error status returned by host: not found")
}

// Two listeners cannot bind one address (port 0 binds a free port each).
func TestBootstrapRefusesListenersOnOneAddress(t *testing.T) {
	yaml := strings.Replace(listenersBootstrap, "port_value: 0}}", "port_value: 1}}", 1)
	_, err := LoadBootstrap([]byte(yaml), t.TempDir())
	require.EqualError(t, err, "bootstrap: static_resources.listeners[1].address: 127.0.0.1:1 is already static_resources.listeners[0]'s")
}

func httptestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
