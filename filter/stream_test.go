//go:build !wasip1

package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
)

// A finished stream is reused for the next one, starting from a clean state
// except its scanners' buffers; one something else still holds is not.
func TestStreamsAreReused(t *testing.T) {
	v := &capturingVM{}
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(v).
		WithPluginConfiguration([]byte(`{"providers":[{"name":"p","host":"p.example.com","credential":{"inline":"k"}}],` +
			`"routes":[{"name":"r","match":{"pathPrefix":"/v1/"},"provider":"p","limits":{"requestsPerMinute":1}}]}`)))
	defer release()
	host.StartVM()
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
	p := v.plugin
	hdrs := [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "api.openai.com"}}

	// The first stream reads a JSON response, then ends.
	id := host.InitializeHttpContext()
	require.Equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, hdrs, true))
	host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"content-type", "application/json"}}, false)
	host.CallOnResponseBody(id, []byte(`{"usage":{"prompt_tokens":3,"completion_tokens":4}}`), true)
	require.Empty(t, p.free)
	host.CompleteHttpContext(id)
	require.Len(t, p.free, 1)
	reused := p.free[0]
	require.NotNil(t, reused.json, "the first stream scanned its response")

	// The second is refused by the limit (1/min): it must not inherit the
	// first one's route state, scanner or status.
	id2 := host.InitializeHttpContext()
	require.Empty(t, p.free)
	host.CallOnRequestHeaders(id2, hdrs, true)
	lr := host.GetSentLocalResponse(id2)
	require.NotNil(t, lr)
	require.Equal(t, uint32(429), lr.StatusCode)
	require.Equal(t, id2, reused.id)
	require.Nil(t, reused.json)
	require.Zero(t, reused.status)
	host.CompleteHttpContext(id2)

	// A stream waiting for a retry is never handed out again.
	reused = p.free[0]
	id3 := host.InitializeHttpContext()
	require.Equal(t, id3, reused.id)
	reused.escaped = true
	host.CompleteHttpContext(id3)
	require.Empty(t, p.free)
}

// capturingVM is the filter's VM context, keeping its plugin for the test.
type capturingVM struct {
	vm
	plugin *plugin
}

func (c *capturingVM) NewPluginContext(uint32) types.PluginContext {
	c.plugin = &plugin{}
	return c.plugin
}
