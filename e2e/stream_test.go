package e2e_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/promtext"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// gatedStream is a provider that sends the first SSE event, then waits until the
// test has seen it at the client before sending the rest: the response can only
// complete if the proxy forwards events as they come.
type gatedStream struct{ seen chan struct{} }

func (g gatedStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("content-type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n")
	w.(http.Flusher).Flush()
	select {
	case <-g.seen:
	case <-r.Context().Done():
		return
	}
	io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7,\"total_tokens\":10}}\n\n")
	io.WriteString(w, "data: [DONE]\n\n")
}

// TestStreamFlowsUnbuffered: SSE passes through the filter event by event, and
// time to first token and usage are recorded from the stream.
func TestStreamFlowsUnbuffered(t *testing.T) {
	g := gatedStream{seen: make(chan struct{})}
	up := scenario.Upstream(t, g)
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(`{"models":{"gpt-4.1":{"input":2,"output":8}},"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],` +
			`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p","limits":{"tokensPerMinute":100000}}]}`),
		Workers: 1, Clusters: map[string]string{"p": up}, Routes: map[string]string{"p.example.com": "p"},
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	defer h.Close(context.Background())
	front := httptest.NewServer(h)
	defer front.Close()

	resp, err := http.Post(front.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, first, `"content":"first"`, "the first event arrives while the provider still holds the rest")
	close(g.seen)
	rest, err := io.ReadAll(rd)
	require.NoError(t, err)
	require.Contains(t, string(rest), "[DONE]")

	var text strings.Builder
	h.WritePrometheus(&text)
	samples := promtext.Parse(strings.NewReader(text.String()))
	ttft, ok := promtext.Find(samples, "shepherd_time_to_first_token_ms_count", map[string]string{"route": "chat", "provider": "p"})
	require.True(t, ok, text.String())
	require.EqualValues(t, 1, ttft)
	out, ok := promtext.Find(samples, "shepherd_tokens_total", map[string]string{"route": "chat", "provider": "p", "model": "gpt-4.1", "type": "output"})
	require.True(t, ok)
	require.EqualValues(t, 7, out)
	cost, ok := promtext.Find(samples, "shepherd_cost_usd_micros_total", map[string]string{"route": "chat", "provider": "p", "model": "gpt-4.1"})
	require.True(t, ok)
	require.EqualValues(t, 3*2+7*8, cost, "micro-USD at $2/$8 per million")
}
