package envoy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A host without a plugin is the router alone: the request reaches the upstream
// and the answer the client as they were, no VM exists and no wasm stat moves.
func TestNoPluginOnlyRoutes(t *testing.T) {
	up := echoUpstream(t)
	h, err := New(context.Background(), Config{NoPlugin: true, Workers: 2,
		Clusters: map[string]string{"up": hostPort(up.URL)}, DefaultCluster: "up", LogWriter: io.Discard})
	require.NoError(t, err)

	send := func() {
		resp, body := do(t, h, http.MethodPost, "/v1/x?q=1", strings.NewReader(`{"model":"m"}`))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Regexp(t, `^POST 127\.0\.0\.1:\d+ /v1/x\?q=1 +body=\{"model":"m"\}$`, body)
	}
	send()
	send() // both workers

	st := h.VMStats()
	require.Len(t, st, 2)
	for _, s := range st {
		require.Zero(t, s.Callbacks)
		require.Zero(t, s.GuestTime)
		require.Zero(t, s.MemoryBytes)
		require.Zero(t, s.Streams)
	}
	require.NoError(t, h.Reconfigure([]byte("ignored")))
	send()
	require.NoError(t, h.Close(context.Background()))

	var prom bytes.Buffer
	h.WritePrometheus(&prom)
	require.Contains(t, prom.String(), "envoy_wasm_envoy_wasm_runtime_v8_created{} 0\n")
	require.Contains(t, prom.String(), "envoy_wasm_envoy_wasm_runtime_v8_active{} 0\n")
}

func TestNoPluginTakesNoModule(t *testing.T) {
	_, err := New(context.Background(), Config{NoPlugin: true, Module: buildGuest(t), LogWriter: io.Discard})
	require.EqualError(t, err, "config.module: must be empty without a plugin")
}
