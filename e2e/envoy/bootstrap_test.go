package envoy

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func loadTestBootstrap(t *testing.T, edit func(string) string) (*Bootstrap, error) {
	t.Helper()
	data, err := os.ReadFile("testdata/bootstrap/routes.yaml")
	require.NoError(t, err)
	text := string(data)
	if edit != nil {
		text = edit(text)
	}
	return LoadBootstrap([]byte(text), "testdata/bootstrap")
}

func TestBootstrapLoads(t *testing.T) {
	b, err := loadTestBootstrap(t, nil)
	require.NoError(t, err)
	c := b.Config
	require.Equal(t, "127.0.0.1:0", b.Listen)
	require.Equal(t, "127.0.0.1:0", b.Admin)
	require.Equal(t, filepath.Join("testdata/bootstrap", "guest.wasm"), b.WasmFile)
	require.Equal(t, "guest", c.PluginName)
	require.Equal(t, "guest_root", c.RootID)
	require.Equal(t, "guestvm", c.VMID)
	require.True(t, c.FailOpen)
	require.Equal(t, "route", string(c.PluginConfig), "a StringValue configuration is its string")
	require.Equal(t, map[string]string{"GUEST_FLAVOUR": "plain"}, c.Env)
	require.Equal(t, 60*time.Second, c.StreamIdleTimeout)
	require.Equal(t, map[string]string{"primary": "127.0.0.1:1", "backup": "127.0.0.1:2"}, c.Clusters)
	require.Equal(t, []StatsTag{{Name: "route", Regex: `(_route=\.=(.+?);\.;)`}}, c.StatsTags)
	require.Equal(t, "test-node", c.NodeID)
	require.Equal(t, "test-cluster", c.NodeCluster)
	require.Len(t, c.VirtualHosts, 2)
	api := c.VirtualHosts[1]
	require.Equal(t, []string{"*"}, api.Domains)
	require.Equal(t, "/gone", api.Routes[0].Path)
	require.Equal(t, &DirectResponse{Status: 410, Body: []byte("gone for good")}, api.Routes[0].Direct)
	require.Equal(t, "/slow/[0-9]+", api.Routes[1].Regex)
	require.Equal(t, 50*time.Millisecond, *api.Routes[1].Timeout)
	require.Nil(t, api.Routes[2].Timeout, "no timeout: the default")
	var md corev3.Metadata
	require.NoError(t, proto.Unmarshal(api.Routes[2].Metadata, &md))
	require.Equal(t, "gold", md.GetFilterMetadata()["shepherd"].GetFields()["tier"].GetStringValue())
}

// TestBootstrapRefusesWhatItDoesNotServe: every field outside the subset is
// refused with its path, never ignored.
func TestBootstrapRefusesWhatItDoesNotServe(t *testing.T) {
	hcm := "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"route retry policy", "route: {cluster: primary}\n", "route: {cluster: primary, retry_policy: {retry_on: 5xx}}\n",
			hcm + ".route_config.virtual_hosts[1].routes[2].route.retry_policy: not supported"},
		{"listener field", "    filter_chains:\n", "    per_connection_buffer_limit_bytes: 1024\n    filter_chains:\n",
			"static_resources.listeners[0].per_connection_buffer_limit_bytes: not supported"},
		{"cluster type", "  - name: backup\n    type: STATIC\n", "  - name: backup\n    type: ORIGINAL_DST\n",
			"static_resources.clusters[1]"},
		{"second wasm filter's code", "          - name: envoy.filters.http.router\n", `          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config: {vm_config: {vm_id: x, runtime: envoy.wasm.runtime.v8, code: {local: {filename: no-such.wasm}}}}
          - name: envoy.filters.http.router
`, hcm + ".http_filters[1].typed_config.config.vm_config.code.local.filename: open testdata/bootstrap/no-such.wasm"},
		{"remote code", "code: {local: {filename: guest.wasm}}", "code: {remote: {http_uri: {uri: http://x/y, cluster: primary, timeout: 1s}, sha256: ab}}",
			hcm + ".http_filters[0].typed_config.config.vm_config.code.remote: not supported"},
		{"bootstrap extension", "admin:\n", "bootstrap_extensions:\n- name: x\n  typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\nadmin:\n",
			"bootstrap_extensions[0].typed_config: type.googleapis.com/envoy.extensions.filters.http.router.v3.Router is not supported (envoy.extensions.wasm.v3.WasmService)"},
		{"admin access log", "admin:\n", "admin:\n  profile_path: /tmp/x\n", "admin.profile_path: not supported"},
		{"two endpoints", "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}\n",
			"        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}\n        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 3}}}\n",
			"static_resources.clusters[1].load_assignment: want exactly one endpoint"},
		{"not yaml", "node:", "node: [", "bootstrap: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTestBootstrap(t, func(s string) string {
				require.Contains(t, s, tc.old)
				return strings.Replace(s, tc.old, tc.new, 1)
			})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestBootstrapServes runs the test bootstrap with the test guest: wildcard
// domains, a direct response, route metadata and node metadata as the plugin
// sees them.
func TestBootstrapServes(t *testing.T) {
	primary := echoUpstream(t)
	backup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("backup " + r.Host))
	}))
	t.Cleanup(backup.Close)
	b, err := loadTestBootstrap(t, nil)
	require.NoError(t, err)
	cfg := b.Config
	cfg.Module = buildGuest(t)
	cfg.Clusters["primary"], cfg.Clusters["backup"] = hostPort(primary.URL), hostPort(backup.URL)
	cfg.CompilationCache = compCache
	cfg.LogWriter = testWriter{t}
	h, err := New(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(t.Context()) })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	get := func(host, path string) (*http.Response, string) {
		req, err := http.NewRequest("GET", srv.URL+path, nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}
	resp, body := get("eu-canary", "/v1/chat")
	require.Equal(t, "backup eu-canary", body, "the *-canary virtual host")
	require.Equal(t, "canary", resp.Header.Get("x-route-name"))

	resp, body = get("api.example.com", "/gone")
	require.Equal(t, http.StatusGone, resp.StatusCode)
	require.Equal(t, "gone for good", body)
	require.Equal(t, "410", resp.Header.Get("x-seen-status"))

	resp, body = get("api.example.com", "/v1/chat")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.True(t, strings.HasPrefix(body, "GET api.example.com /v1/chat"), body)
	raw, err := hex.DecodeString(resp.Header.Get("x-route-metadata"))
	require.NoError(t, err)
	var md corev3.Metadata
	require.NoError(t, proto.Unmarshal(raw, &md))
	require.Equal(t, "gold", md.GetFilterMetadata()["shepherd"].GetFields()["tier"].GetStringValue())
	require.Equal(t, "team-a", resp.Header.Get("x-node-namespace"), "node.metadata from the bootstrap")
}

// TestIstioEnvoyYAMLLoads: the plain-Envoy bootstrap the project ships is
// served: its TLS clusters, the sidecar's, the wasm filter and its routes.
func TestIstioEnvoyYAMLLoads(t *testing.T) {
	data, err := os.ReadFile("../../istio/envoy/envoy.yaml")
	require.NoError(t, err)
	b, err := LoadBootstrap(data, "../../istio/envoy")
	require.NoError(t, err)
	require.Equal(t, "/etc/envoy/shepherd.wasm", b.WasmFile)
	require.Equal(t, "0.0.0.0:10000", b.Listen)
	require.Equal(t, "127.0.0.1:9901", b.Admin)
	c := b.Config
	require.Equal(t, "shepherd", c.PluginName)
	require.Equal(t, "shepherd", c.VMID)
	require.True(t, c.FailOpen)
	require.Contains(t, string(c.PluginConfig), `"providers"`)
	require.Equal(t, "relay.example.com:443", c.Clusters["relay"])
	require.Equal(t, "api.openai.com:443", c.Clusters["openai"])
	require.Equal(t, "127.0.0.1:8081", c.Clusters["shepherd-sidecar"])
	require.Equal(t, "relay.example.com", c.ClusterTLS["relay"].ServerName)
	require.NotNil(t, c.ClusterTLS["openai"].RootCAs)
	require.Nil(t, c.ClusterTLS["shepherd-sidecar"], "the sidecar is plain h2c")
	require.Len(t, c.VirtualHosts, 2)
	require.Equal(t, 300*time.Second, *c.VirtualHosts[0].Routes[0].Timeout)
	require.Equal(t, PathOptions{Normalize: true, MergeSlashes: true, RejectEscapedSlashes: true}, c.Paths)
	require.NotEmpty(t, c.StatsTags)
	require.Equal(t, "route", c.StatsTags[0].Name)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestBootstrapServesSeveralWasmFilters: two envoy.filters.http.wasm filters of
// one vm_id in one chain, as a plugin author's envoy.yaml has them: both see
// the request in order, on one VM, the second with its own tick; and a
// singleton wasm service from bootstrap_extensions on a VM of its own.
func TestBootstrapServesSeveralWasmFilters(t *testing.T) {
	up := echoUpstream(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "multi.wasm"), buildMulti(t), 0o644))
	filter := func(name, conf string) string {
		return `          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: ` + name + `
                root_id: root_` + name + `
                vm_config: {vm_id: shared, runtime: envoy.wasm.runtime.v8, code: {local: {filename: multi.wasm}}}
                configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: "` + conf + `"}
`
	}
	yaml := `bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: svc
      root_id: root_svc
      vm_config: {vm_id: shared, runtime: envoy.wasm.runtime.v8, code: {local: {filename: multi.wasm}}}
      configuration: {"@type": type.googleapis.com/google.protobuf.StringValue, value: "svc tick"}
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: /}, route: {cluster: up}}]
          http_filters:
` + filter("one", "first") + filter("two", "second tick") + `          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ` + up.URL[strings.LastIndex(up.URL, ":")+1:] + `}}}}]}]
`
	b, err := LoadBootstrap([]byte(yaml), dir)
	require.NoError(t, err)
	require.Len(t, b.Config.Filters, 1)
	require.Equal(t, Filter{Module: buildMulti(t), PluginName: "two", RootID: "root_two", VMID: "shared", PluginConfig: []byte("second tick")}, b.Config.Filters[0])
	cfg := b.Config
	cfg.Module, err = os.ReadFile(b.WasmFile)
	require.NoError(t, err)
	cfg.LogWriter, cfg.CompilationCache = io.Discard, compCache
	h, err := New(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(t.Context()) })
	require.Len(t, h.VMStats(), 2, "the filters' VM and the singleton's")
	require.Len(t, b.Config.Services, 1)
	require.True(t, b.Config.Services[0].Singleton)
	require.Contains(t, waitLog(t, h, "tick svc"), " wasm log svc root_svc shared: tick svc")

	resp, body := do(t, h, http.MethodGet, "/x", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "x-order=first,second")
	require.Contains(t, waitLog(t, h, "tick second"), " wasm log two root_two shared: tick second")
	_, ok := findLog(h, "configure second root=root_two roots=2")
	require.True(t, ok, "the second plugin's root context is on the first's VM")
}
