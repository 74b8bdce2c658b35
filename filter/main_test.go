//go:build !wasip1

package main

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// TestScenariosNative runs the end-to-end scenarios with the filter compiled into
// this test binary, on the emulated host, against real fake providers. The same
// scenarios run as the compiled .wasm under the Envoy-faithful host in package e2e.
func TestScenariosNative(t *testing.T) {
	scenario.RunAll(t, nativeRunner)
}

// nativeMesh plays Envoy's part around the emulated host: it turns client requests
// into filter callbacks, routes by the (possibly rewritten) authority to a cluster
// and forwards the request there over real HTTP.
type nativeMesh struct {
	host  *proxytest.HostEmulator
	setup scenario.Setup
}

func nativeRunner(t testing.TB, s scenario.Setup) scenario.Mesh {
	for k, v := range s.Env {
		t.Setenv(k, v)
	}
	opt := proxytest.NewEmulatorOption().
		WithVMContext(&vm{}).
		WithPluginConfiguration([]byte(s.PluginConfig))
	for k, v := range s.NodeMetadata {
		opt = opt.WithProperty([]string{"node", "metadata", k}, []byte(v))
	}
	host, release := proxytest.NewHostEmulator(opt)
	t.Cleanup(release)
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin(), "logs: %v", host.GetLogs(proxywasm.LogLevelCritical))
	return &nativeMesh{host: host, setup: s}
}

func (m *nativeMesh) Counter(t testing.TB, name string) uint64 {
	v, err := m.host.GetCounterMetric(name)
	require.NoError(t, err)
	return v
}

func (m *nativeMesh) Defined(_ testing.TB, name string) bool {
	_, err := m.host.GetCounterMetric(name)
	return err == nil
}

func (m *nativeMesh) Do(t testing.TB, r scenario.Request) scenario.Response {
	id := m.host.InitializeHttpContext()
	defer m.host.CompleteHttpContext(id)

	hdrs := [][2]string{{":method", r.Method}, {":path", r.Path}, {":authority", r.Authority}, {":scheme", "http"}}
	for k, vs := range r.Header {
		for _, v := range vs {
			hdrs = append(hdrs, [2]string{strings.ToLower(k), v})
		}
	}
	action := m.host.CallOnRequestHeaders(id, hdrs, r.Body == "")
	if lr := m.host.GetSentLocalResponse(id); lr != nil {
		return scenario.Response{Status: int(lr.StatusCode), Header: toHeader(lr.Headers), Body: lr.Data}
	}
	body := []byte(r.Body)
	if r.Body != "" {
		// Headers may wait for the body (Pause); the body's end releases both.
		action = m.host.CallOnRequestBody(id, body, true)
		if lr := m.host.GetSentLocalResponse(id); lr != nil {
			return scenario.Response{Status: int(lr.StatusCode), Header: toHeader(lr.Headers), Body: lr.Data}
		}
		body = m.host.GetCurrentRequestBody(id)
	}
	require.Equal(t, types.ActionContinue, action)

	// Route as Envoy would after the filter: by the current :authority.
	var method, path, authority string
	out := http.Header{}
	for _, kv := range m.host.GetCurrentRequestHeaders(id) {
		switch kv[0] {
		case ":method":
			method = kv[1]
		case ":path":
			path = kv[1]
		case ":authority":
			authority = kv[1]
		case ":scheme":
		default:
			out.Add(kv[0], kv[1])
		}
	}
	cluster, ok := m.setup.Routes[authority]
	if !ok {
		cluster = m.setup.DefaultCluster
	}
	addr, ok := m.setup.Clusters[cluster]
	require.True(t, ok, "no cluster %q for authority %q", cluster, authority)

	req, err := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Host = authority
	req.Header = out
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	rh := [][2]string{{":status", strconv.Itoa(resp.StatusCode)}}
	for k, vs := range resp.Header {
		for _, v := range vs {
			rh = append(rh, [2]string{strings.ToLower(k), v})
		}
	}
	if m.host.CallOnResponseHeaders(id, rh, len(respBody) == 0) == types.ActionPause {
		// The filter holds the response (a fallback): run its callouts and ticks
		// as Envoy would until it answers or lets the response go.
		if lr := m.drive(t, id); lr != nil {
			return scenario.Response{Status: int(lr.StatusCode), Header: toHeader(lr.Headers), Body: lr.Data}
		}
	}
	if lr := m.host.GetSentLocalResponse(id); lr != nil {
		return scenario.Response{Status: int(lr.StatusCode), Header: toHeader(lr.Headers), Body: lr.Data}
	}
	if len(respBody) > 0 {
		m.host.CallOnResponseBody(id, respBody, true)
		respBody = m.host.GetCurrentResponseBody(id)
	}
	return scenario.Response{Status: resp.StatusCode, Header: toHeader(m.host.GetCurrentResponseHeaders(id)), Body: respBody}
}

// drive answers the filter's http callouts with real requests to their clusters
// and ticks the plugin, until the filter sends a local reply (returned) or
// resumes the held response (nil).
func (m *nativeMesh) drive(t testing.TB, id uint32) *proxytest.LocalHttpResponse {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if lr := m.host.GetSentLocalResponse(id); lr != nil {
			return lr
		}
		if m.host.GetCurrentHttpStreamAction(id) == types.ActionContinue {
			return nil
		}
		for _, ctx := range []uint32{id, proxytest.RootContextID} {
			for _, c := range m.host.GetCalloutAttributesFromContext(ctx) {
				m.callout(t, c)
			}
		}
		m.host.Tick()
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("stream %d: the filter neither answered nor resumed within 30s", id)
	return nil
}

// callout performs one http callout against its cluster, as Envoy's async client.
func (m *nativeMesh) callout(t testing.TB, c proxytest.HttpCalloutAttribute) {
	addr, ok := m.setup.Clusters[c.Upstream]
	if !ok {
		m.host.FailHttpCall(c.CalloutID)
		return
	}
	var method, path, authority string
	hdr := http.Header{}
	for _, kv := range c.Headers {
		switch kv[0] {
		case ":method":
			method = kv[1]
		case ":path":
			path = kv[1]
		case ":authority":
			authority = kv[1]
		default:
			hdr.Add(kv[0], kv[1])
		}
	}
	req, err := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(c.Body))
	require.NoError(t, err)
	req.Host, req.Header = authority, hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.host.FailHttpCall(c.CalloutID)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		m.host.FailHttpCall(c.CalloutID)
		return
	}
	rh := [][2]string{{":status", strconv.Itoa(resp.StatusCode)}}
	for k, vs := range resp.Header {
		for _, v := range vs {
			rh = append(rh, [2]string{strings.ToLower(k), v})
		}
	}
	m.host.CallOnHttpCallResponse(c.CalloutID, rh, nil, b)
}

func toHeader(pairs [][2]string) http.Header {
	h := http.Header{}
	for _, kv := range pairs {
		if !strings.HasPrefix(kv[0], ":") {
			h.Add(kv[0], kv[1])
		}
	}
	return h
}

func TestBadConfigFailsStartNamingTheField(t *testing.T) {
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(&vm{}).
		WithPluginConfiguration([]byte(`{"providers":[{"name":"relay","host":"relay.example.com","credential":{"env":"SHEPHERD_TEST_UNSET_KEY"}}],"routes":[]}`)))
	defer release()
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusFailed, host.StartPlugin())
	require.Contains(t, strings.Join(host.GetLogs(proxywasm.LogLevelCritical), "\n"),
		`shepherd: invalid pluginConfig: providers[0].credential.env: environment variable "SHEPHERD_TEST_UNSET_KEY" is not set or empty`)
}

func TestCredentialNeverLogged(t *testing.T) {
	const key = "sk-never-in-logs-42"
	t.Setenv("RELAY_API_KEY", key)
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(&vm{}).
		WithLogLevel(proxywasm.LogLevelTrace).
		WithPluginConfiguration([]byte(`{"providers":[{"name":"relay","host":"relay.example.com","credential":{"env":"RELAY_API_KEY"}}],"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"relay"}]}`)))
	defer release()
	host.StartVM()
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":path", "/v1/chat/completions"}, {":authority", "x"}, {":method", "POST"}}, true)
	host.CompleteHttpContext(id)
	for _, lvl := range []proxywasm.LogLevel{proxywasm.LogLevelTrace, proxywasm.LogLevelDebug, proxywasm.LogLevelInfo, proxywasm.LogLevelWarn, proxywasm.LogLevelError, proxywasm.LogLevelCritical} {
		for _, line := range host.GetLogs(lvl) {
			require.NotContains(t, line, key)
		}
	}
	require.Contains(t, host.GetCurrentRequestHeaders(id), [2]string{"authorization", "Bearer " + key})
}
