package scenario

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/telemetry"
)

// answer is one scripted answer of a hostile upstream.
type answer struct {
	status int
	ctype  string
	body   []byte
	stream int // when > 0: the answer is this many bytes of 'x', streamed without content-length
}

// hostileUpstream is an OpenAI-compatible server whose answers are chosen per
// request, as an attacker who controls (or impersonates) a provider would
// choose them. It answers its script in order, then the default answer.
type hostileUpstream struct {
	mu      sync.Mutex
	script  []answer
	def     answer
	last    string // the last request's path, as received
	auth    string // its authorization header
	request atomic.Int64
	bodies  atomic.Int64 // requests whose body arrived in full
}

func newHostile(def answer) *hostileUpstream { return &hostileUpstream{def: def} }

func (h *hostileUpstream) Script(a ...answer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.script = append(h.script, a...)
}

func (h *hostileUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.request.Add(1)
	if _, err := io.Copy(io.Discard, r.Body); err == nil {
		h.bodies.Add(1)
	}
	h.mu.Lock()
	h.last, h.auth = r.URL.RawPath, r.Header.Get("authorization")
	if h.last == "" {
		h.last = r.URL.Path
	}
	a := h.def
	if len(h.script) > 0 {
		a, h.script = h.script[0], h.script[1:]
	}
	h.mu.Unlock()
	w.Header().Set("content-type", a.ctype)
	if a.stream > 0 {
		w.WriteHeader(a.status)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < a.stream; sent += len(chunk) {
			if _, err := w.Write(chunk[:min(len(chunk), a.stream-sent)]); err != nil {
				return // the proxy hung up
			}
		}
		return
	}
	w.Header().Set("content-length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

func jsonAnswer(status int, body string) answer {
	return answer{status: status, ctype: "application/json", body: []byte(body)}
}

// hostileConfig: route "chat" on the hostile provider (with a credential) and
// a fallback to the honest backup; extra goes into the route.
func hostileConfig(extra string) string {
	return `{
  "models": {"gpt-4.1": {"input": 2.00, "output": 8.00}, "deepseek-v3.2": {"input": 0.28, "output": 0.42}},
  "providers": [
    {"name": "hostile", "host": "hostile.example.com", "pathPrefix": "/openai/v1", "cluster": "hostile",
     "credential": {"inline": "sk-hostile-test-key"}},
    {"name": "backup", "host": "backup.example.com", "cluster": "backup"}
  ],
  "routes": [{"name": "chat", "match": {"pathPrefix": "/v1/"}, "provider": "hostile"` + extra + `}]}`
}

func hostileMesh(t *testing.T, run Runner, cfg string, up, backup *hostileUpstream) Mesh {
	return run(t, Setup{
		PluginConfig: cfg,
		Clusters:     map[string]string{"hostile": Upstream(t, up), "backup": Upstream(t, backup)},
		Routes:       map[string]string{"hostile.example.com": "hostile", "backup.example.com": "backup"},
	})
}

const okChat = `{"id":"c","object":"chat.completion","model":"gpt-4.1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`

// HostileTokenNumbers (issue 15.1): output limits that would wrap the
// reservation (2^63-1, or a huge max_completion_tokens beside a small
// max_tokens, or more digits than an int64 holds) are refused as too large
// for the bucket, every time, and never reach the provider.
func HostileTokenNumbers(t *testing.T, run Runner) {
	up, backup := newHostile(jsonAnswer(200, okChat)), newHostile(jsonAnswer(200, okChat))
	mesh := hostileMesh(t, run, hostileConfig(`, "limits": {"tokensPerMinute": 5000}`), up, backup)
	for _, body := range []string{
		`{"model":"gpt-4.1","max_tokens":9223372036854775807,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4.1","max_tokens":9223372036854775807,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4.1","max_tokens":5,"max_completion_tokens":9223372036854775807,"messages":[]}`,
		`{"model":"gpt-4.1","max_completion_tokens":99999999999999999999999999,"messages":[]}`,
		`{"model":"gpt-4.1","max_tokens":5000,"messages":[{"role":"user","content":"hi"}]}`,
	} {
		resp := mesh.Do(t, chat(body))
		require.Equal(t, http.StatusTooManyRequests, resp.Status, "%s: %s", body, resp.Body)
		require.Contains(t, string(resp.Body), "more tokens than the per-minute limit", body)
		require.Equal(t, "false", resp.Header.Get("x-should-retry"), "no wait helps: %s", body)
	}
	require.Zero(t, up.bodies.Load(), "no refused body reached the provider")
	resp := mesh.Do(t, chat(`{"model":"gpt-4.1","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
}

// HostileUsage (issue 15.2): a provider reporting usage of 2^63-1 prompt and
// 2^62 completion tokens cannot refund the bucket, drive the token or cost
// counters wild or wrap them: the report is clipped to the request's bound
// (its reservation plus usageMarginTokens), charged as that, and counted as
// an anomaly. The answer itself reaches the client unchanged. The same holds
// for a stream's usage event.
func HostileUsage(t *testing.T, run Runner) {
	hostileJSON := `{"id":"c","object":"chat.completion","model":"gpt-4.1","choices":[],"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":4611686018427387904}}`
	hostileSSE := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":99999999999999999999999,\"completion_tokens\":9223372036854775807}}\n\ndata: [DONE]\n\n"
	for _, tc := range []struct {
		name   string
		answer answer
		stream bool
	}{
		{"json", jsonAnswer(200, hostileJSON), false},
		{"sse", answer{status: 200, ctype: "text/event-stream", body: []byte(hostileSSE)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, backup := newHostile(tc.answer), newHostile(jsonAnswer(200, okChat))
			// A bucket of 1000 refilling one token a minute; the bound of a
			// request without prompt and with max_tokens 500 is 500 + 100.
			mesh := hostileMesh(t, run, hostileConfig(`, "usageMarginTokens": 100, "limits": {"tokensPerMinute": 1, "tokenBurst": 1000}`), up, backup)
			body := `{"model":"gpt-4.1","max_tokens":500,"messages":[]}`
			if tc.stream {
				body = `{"model":"gpt-4.1","max_tokens":500,"stream":true,"stream_options":{"include_usage":true},"messages":[]}`
			}
			resp := mesh.Do(t, chat(body))
			require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
			require.Equal(t, tc.answer.body, resp.Body, "the answer is passed through")

			require.EqualValues(t, 1, mesh.Counter(t, telemetry.Name(telemetry.UsageAnomalies, telemetry.LabelRoute, "chat", telemetry.LabelProvider, "hostile")))
			tokens := func(typ string) uint64 {
				return mesh.Counter(t, telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "chat", telemetry.LabelProvider, "hostile",
					telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, typ))
			}
			require.EqualValues(t, 600, tokens("input"), "clipped to the bound, input first (no output is left to count)")
			// 600 input tokens at $2 per million.
			require.EqualValues(t, 1200, mesh.Counter(t, telemetry.Name(telemetry.Cost, telemetry.LabelRoute, "chat",
				telemetry.LabelProvider, "hostile", telemetry.LabelModel, "gpt-4.1")))
			// Charged 600: 400 left, so the next reservation of 500 is refused
			// (a refund would have refilled the bucket).
			resp = mesh.Do(t, chat(body))
			require.Equal(t, http.StatusTooManyRequests, resp.Status, "%s", resp.Body)
			require.Equal(t, "400", resp.Header.Get("x-ratelimit-remaining-tokens"))
		})
	}
}

// HostileFallbackAnswer (issue 15.3): a fallback callout answered with more
// than fallback.maxAnswerBytes is a failed attempt: the filter never takes
// it into the VM, counts it, and goes on with the chain (here: nothing left,
// so the client gets the primary's own error).
func HostileFallbackAnswer(t *testing.T, run Runner) {
	big := jsonAnswer(200, `{"pad":"`+strings.Repeat("x", 256<<10)+`"}`)
	up := newHostile(jsonAnswer(503, `{"error":{"message":"primary down","type":"server_error"}}`))
	backup := newHostile(big)
	mesh := hostileMesh(t, run, hostileConfig(`, "fallback": {"models": [{"model": "deepseek-v3.2", "provider": "backup"}],
    "maxAnswerBytes": 65536, "baseBackoffMs": 1, "maxBackoffMs": 2, "retryBudgetPercent": 1000}`), up, backup)
	resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, "%s", resp.Body)
	require.Contains(t, string(resp.Body), "primary down")
	require.EqualValues(t, 1, backup.request.Load())
	require.EqualValues(t, 1, mesh.Counter(t, telemetry.Name(telemetry.AnswersTooLarge, telemetry.LabelRoute, "chat", telemetry.LabelProvider, "backup")))

	// 48 MiB streamed: beyond Envoy's own 32 MiB callout buffer, the host
	// fails the callout (the filter sees no answer); either way the client
	// gets the primary's error, and nothing of it is held.
	backup.Script(answer{status: 200, ctype: "application/json", stream: 48 << 20})
	resp = mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
	require.Equal(t, http.StatusServiceUnavailable, resp.Status, "%.200s", resp.Body)
	require.Contains(t, string(resp.Body), "primary down")

	// An answer within the bound is taken.
	backup.Script(jsonAnswer(200, okChat))
	resp = mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "backup", resp.Header.Get("x-shepherd-provider"))
}

// HostilePaths (issue 15.5): a routed path with a dot-segment, a backslash or
// an encoded '/', '\', '.' or '%' is refused with 400 in OpenAI's error shape
// before a credential is attached; the provider sees nothing.
func HostilePaths(t *testing.T, run Runner) {
	up, backup := newHostile(jsonAnswer(200, okChat)), newHostile(jsonAnswer(200, okChat))
	mesh := hostileMesh(t, run, hostileConfig(""), up, backup)
	for _, p := range []string{
		"/v1/../../admin",
		"/v1/%2e%2e/%2e%2e/admin",
		"/v1/..%2f..%2fadmin",
		"/v1/..%2F..%2Fadmin",
		"/v1/chat%5ccompletions",
		"/v1/./chat/completions",
		"/v1/%252e%252e/admin",
		"/v1/..",
	} {
		r := chat(`{"model":"gpt-4.1","messages":[]}`)
		r.Path = p
		resp := mesh.Do(t, r)
		require.Equal(t, http.StatusBadRequest, resp.Status, "%s: %s", p, resp.Body)
		require.Contains(t, string(resp.Body), `"code":"invalid_path"`, p)
		require.Contains(t, string(resp.Body), `"type":"invalid_request_error"`, p)
		require.False(t, bytes.Contains(resp.Body, []byte("sk-hostile")), p)
	}
	require.Zero(t, up.request.Load(), "no refused path reached the provider")
	// A clean path with dots inside a segment and in the query still goes.
	r := chat(`{"model":"gpt-4.1","messages":[]}`)
	r.Path = "/v1/chat/completions?x=../..&v=1.2"
	resp := mesh.Do(t, r)
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	up.mu.Lock()
	defer up.mu.Unlock()
	require.Equal(t, "/openai/v1/chat/completions", up.last)
	require.Equal(t, "Bearer sk-hostile-test-key", up.auth)
}
