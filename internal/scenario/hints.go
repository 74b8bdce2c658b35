package scenario

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
)

// RetryHints: every local answer tells OpenAI's SDKs whether to retry it
// (x-should-retry), and a local 429 that invites a retry says how long to
// wait to the millisecond (retry-after-ms) next to Retry-After's whole
// seconds. A failed fallback chain's final answer says not to retry, so an
// SDK does not run the chain again; a provider's error on a route without
// fallback reaches the client as the provider sent it.
func RetryHints(t *testing.T, run Runner) {
	// route chat: seven requests a minute, one at a time (a wait of at most
	// 60/7 s = 8572 ms); route tokens: a token bucket of 100 that refills by
	// one a minute; route plain: bodies up to 1 KiB, no limits, no fallback.
	cfg := `{
  "models": {"gpt-4.1": {}, "deepseek-v3.2": {}},
  "providers": [
    {"name": "relay", "host": "relay.example.com", "cluster": "relay"},
    {"name": "backup", "host": "backup.example.com", "cluster": "backup"}
  ],
  "routes": [
    {"name": "chat", "match": {"pathPrefix": "/v1/"}, "provider": "relay",
     "limits": {"requestsPerMinute": 7, "requestBurst": 1}},
    {"name": "tokens", "match": {"pathPrefix": "/tokens/"}, "provider": "relay",
     "limits": {"tokensPerMinute": 1, "tokenBurst": 100}},
    {"name": "chain", "match": {"pathPrefix": "/chain/"}, "provider": "relay",
     "fallback": {"models": [{"model": "deepseek-v3.2", "provider": "backup"}], "maxAttempts": 3,
                  "baseBackoffMs": 1, "maxBackoffMs": 2, "retryBudgetPercent": 1000}},
    {"name": "plain", "match": {"pathPrefix": "/plain/"}, "provider": "relay", "maxBodyBytes": 1024}
  ]
}`
	mesh, relay, backup := twoProviders(t, run, cfg)
	at := func(path string, r Request) Request {
		r.Path = path
		return r
	}
	small := `{"model":"gpt-4.1","max_tokens":5,"messages":[]}`

	// The first request takes the route's one request; the next waits for
	// the refill, under 8.6 s away.
	require.Equal(t, http.StatusOK, mesh.Do(t, chat(small)).Status)
	limited := mesh.Do(t, chat(small))
	require.Equal(t, http.StatusTooManyRequests, limited.Status, "%s", limited.Body)
	require.Equal(t, "true", limited.Header.Get("x-should-retry"))
	ms, err := strconv.ParseInt(limited.Header.Get("retry-after-ms"), 10, 64)
	require.NoError(t, err, "retry-after-ms %q", limited.Header.Get("retry-after-ms"))
	// Exact to the millisecond: within the refill of one request at seven
	// a minute, not rounded up to Retry-After's 9 s.
	require.Greater(t, ms, int64(8000))
	require.LessOrEqual(t, ms, int64(8572))
	require.Equal(t, strconv.FormatInt((ms+999)/1000, 10), limited.Header.Get("retry-after"),
		"Retry-After is the same wait rounded up to seconds")
	require.EqualValues(t, 1, relay.Requests())

	cases := []struct {
		name   string
		req    Request
		status int
		code   string
	}{
		{"body over maxBodyBytes", at("/plain/chat/completions", chat(`{"model":"gpt-4.1","messages":[{"role":"user","content":"`+strings.Repeat("x", 1100)+`"}]}`)),
			http.StatusRequestEntityTooLarge, "request_too_large"},
		{"invalid JSON", at("/plain/chat/completions", chat(`{"model":"gpt-4.1",`)), http.StatusBadRequest, "invalid_json"},
		{"model named twice", at("/plain/chat/completions", chat(`{"model":"gpt-4.1","model":"x","messages":[]}`)),
			http.StatusBadRequest, "duplicate_model"},
	}
	for _, tc := range cases {
		resp := mesh.Do(t, tc.req)
		require.Equal(t, tc.status, resp.Status, "%s: %s", tc.name, resp.Body)
		require.Contains(t, string(resp.Body), `"code":"`+tc.code+`"`, tc.name)
		require.Equal(t, "false", resp.Header.Get("x-should-retry"), tc.name)
		require.Empty(t, resp.Header.Get("retry-after-ms"), tc.name)
	}

	tokens := []struct {
		name, body string
	}{
		// Larger than the whole bucket: no wait helps.
		{"larger than the bucket", `{"model":"gpt-4.1","max_tokens":500,"messages":[]}`},
		// 100 tokens refill at one a minute: a wait of an hour is past what an
		// SDK should sleep through.
		{"an hour away", `{"model":"gpt-4.1","max_tokens":99,"messages":[]}`},
	}
	require.Equal(t, http.StatusOK, mesh.Do(t, at("/tokens/chat/completions", chat(`{"model":"gpt-4.1","max_tokens":60,"messages":[]}`))).Status)
	for _, tc := range tokens {
		resp := mesh.Do(t, at("/tokens/chat/completions", chat(tc.body)))
		require.Equal(t, http.StatusTooManyRequests, resp.Status, "%s: %s", tc.name, resp.Body)
		require.Equal(t, "false", resp.Header.Get("x-should-retry"), tc.name)
		require.NotEmpty(t, resp.Header.Get("retry-after-ms"), tc.name)
	}

	// A provider's error on a route without fallback is the provider's. (First:
	// the chain below makes the relay ask for a pause, which the provider
	// memory then keeps for every route.)
	relay.Script(fakeprovider.Fault{Status: 503})
	resp := mesh.Do(t, at("/plain/chat/completions", chat(small)))
	require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	require.Empty(t, resp.Header.Get("x-should-retry"))

	// A fallback chain that fails to the end: the last upstream error, told
	// not to be retried, with the provider's Retry-After kept.
	relay.Script(fakeprovider.Fault{Status: 503}, fakeprovider.Fault{Status: 429, RetryAfter: "7"})
	backup.Script(fakeprovider.Fault{Status: 503})
	resp = mesh.Do(t, at("/chain/chat/completions", chat(small)))
	require.Equal(t, http.StatusTooManyRequests, resp.Status, "%s", resp.Body)
	require.Equal(t, "3", resp.Header.Get("x-shepherd-attempts"))
	require.Equal(t, "false", resp.Header.Get("x-should-retry"))
	require.Equal(t, "7", resp.Header.Get("retry-after"))
}
