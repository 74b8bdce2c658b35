package scenario

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
)

// policyConfig is a route with models, aliases, priority, limits and fallback over
// two providers. Each test fills in the limits it wants.
func policyConfig(limits, fallback string) string {
	cfg := `{
  "models": {
    "gpt-4.1":           {"input": 2.00, "cachedInput": 0.50, "output": 8.00},
    "deepseek-v3.2":     {"input": 0.28, "output": 0.42},
    "gemini-2.5-flash":  {"input": 0.30, "output": 2.50},
    "claude-sonnet-4.5": {"input": 3.00, "output": 15.00}
  },
  "aliases": {"fast": "gemini-2.5-flash"},
  "providers": [
    {"name": "relay", "host": "relay.example.com", "pathPrefix": "/openai/v1", "cluster": "relay",
     "models": {"claude-sonnet-4.5": "anthropic/claude-sonnet-4.5"}},
    {"name": "backup", "host": "backup.example.com", "cluster": "backup"}
  ],
  "routes": [{
    "name": "chat", "match": {"pathPrefix": "/v1/"}, "provider": "relay",
    "defaultModel": "gpt-4.1",
    "priority": {"header": "x-priority", "models": {"high": "claude-sonnet-4.5"}}`
	if limits != "" {
		cfg += `, "limits": ` + limits
	}
	if fallback != "" {
		cfg += `, "fallback": ` + fallback
	}
	return cfg + `}]}`
}

// twoProviders starts the relay and backup fake providers and a mesh over them.
func twoProviders(t *testing.T, run Runner, cfg string) (Mesh, *fakeprovider.Provider, *fakeprovider.Provider) {
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
	backup := fakeprovider.New(fakeprovider.Options{Name: "backup"})
	mesh := run(t, Setup{
		PluginConfig: cfg,
		Clusters:     map[string]string{"relay": Upstream(t, relay), "backup": Upstream(t, backup)},
		Routes:       map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
	})
	return mesh, relay, backup
}

func chat(body string, header ...string) Request {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return Request{Method: http.MethodPost, Path: "/v1/chat/completions", Authority: "api.openai.com", Header: h, Body: body}
}

func requestsMetric(route, provider, model, code string) string {
	return telemetry.Name(telemetry.Requests, telemetry.LabelRoute, route, telemetry.LabelProvider, provider,
		telemetry.LabelModel, model, telemetry.LabelCode, code)
}

// localMetric is shepherd_requests_total of an answer the filter gave itself.
func localMetric(route, model, code, reason string) string {
	return telemetry.Name(telemetry.Requests, telemetry.LabelRoute, route, telemetry.LabelProvider, telemetry.LocalProvider,
		telemetry.LabelModel, model, telemetry.LabelCode, code, telemetry.LabelReason, reason)
}

// attemptsMetric is shepherd_upstream_attempts_total.
func attemptsMetric(route, provider, model, code string) string {
	return telemetry.Name(telemetry.UpstreamAttempts, telemetry.LabelRoute, route, telemetry.LabelProvider, provider,
		telemetry.LabelModel, model, telemetry.LabelCode, code)
}

// fallbackMetric is shepherd_fallbacks_total.
func fallbackMetric(route, from, fromProvider, to, toProvider, reason string) string {
	return telemetry.Name(telemetry.Fallbacks, telemetry.LabelRoute, route, telemetry.LabelFrom, from,
		telemetry.LabelTo, to, telemetry.LabelFromProvider, fromProvider, telemetry.LabelToProvider, toProvider,
		telemetry.LabelReason, reason)
}

// deniedMetric is shepherd_fallbacks_denied_total.
func deniedMetric(route, reason string) string {
	return telemetry.Name(telemetry.FallbacksDenied, telemetry.LabelRoute, route, telemetry.LabelReason, reason)
}

// ModelRouting: aliases, the priority header, a default model and a provider's own
// model name all reach the provider, with the body otherwise unchanged.
func ModelRouting(t *testing.T, run Runner) {
	mesh, relay, _ := twoProviders(t, run, policyConfig("", ""))

	cases := []struct {
		name, body, priority, want string
	}{
		{"alias", `{"model":"fast","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`, "", "gemini-2.5-flash"},
		{"priority", `{"model":"gpt-4.1","messages":[]}`, "high", "anthropic/claude-sonnet-4.5"},
		{"default", `{"messages":[{"role":"user","content":"the \"model\" word"}]}`, "", "gpt-4.1"},
		{"unlisted passes", `{"model":"my-own-model","messages":[]}`, "", "my-own-model"},
	}
	for _, tc := range cases {
		var hdr []string
		if tc.priority != "" {
			hdr = []string{"x-priority", tc.priority}
		}
		resp := mesh.Do(t, chat(tc.body, hdr...))
		require.Equal(t, http.StatusOK, resp.Status, "%s: %s", tc.name, resp.Body)
		require.Equal(t, tc.want, relay.Last().Model, tc.name)
		require.Equal(t, tc.want, resp.Header.Get("x-shepherd-model"), tc.name)
		require.Equal(t, "relay", resp.Header.Get("x-shepherd-provider"), tc.name)

		// Everything but the model is byte-for-byte what the client sent.
		var sent, got map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(tc.body), &sent))
		require.NoError(t, json.Unmarshal(relay.Last().Body, &got))
		delete(sent, "model")
		delete(got, "model")
		require.Equal(t, sent, got, tc.name)
	}
	require.EqualValues(t, 1, mesh.Counter(t, requestsMetric("chat", "relay", "other", "2xx")), "unlisted models are labelled other")
	require.EqualValues(t, 1, mesh.Counter(t, requestsMetric("chat", "relay", "gemini-2.5-flash", "2xx")))
}

// RequestLimit: a requests-per-minute limit holds across the mesh's worker VMs,
// and refusals carry Retry-After, OpenAI's x-ratelimit headers and an OpenAI
// error body.
func RequestLimit(t *testing.T, run Runner) {
	// A burst of 5 that refills by one a minute: the test is over long before.
	mesh, relay, _ := twoProviders(t, run, policyConfig(`{"requestsPerMinute": 1, "requestBurst": 5}`, ""))
	ok, limited := 0, 0
	var last Response
	for i := 0; i < 9; i++ {
		resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
		switch resp.Status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			last = resp
		default:
			t.Fatalf("unexpected status %d: %s", resp.Status, resp.Body)
		}
	}
	require.Equal(t, 5, ok)
	require.Equal(t, 4, limited)
	require.EqualValues(t, 5, relay.Requests(), "refused requests never reach the provider")
	require.Equal(t, "5", last.Header.Get("x-ratelimit-limit-requests"))
	require.Equal(t, "0", last.Header.Get("x-ratelimit-remaining-requests"))
	require.NotEmpty(t, last.Header.Get("x-ratelimit-reset-requests"))
	ra, err := strconv.Atoi(last.Header.Get("retry-after"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, ra, 1)
	var e struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(last.Body, &e))
	require.Equal(t, "rate_limit_exceeded", e.Error.Type)
	require.Contains(t, e.Error.Message, "route chat")
	require.EqualValues(t, 4, mesh.Counter(t, telemetry.Name(telemetry.RateLimited, telemetry.LabelRoute, "chat", telemetry.LabelKind, "requests")))
	// The refusals are shepherd's own answers, not the provider's: the limit
	// refuses at the headers, before the body names a model.
	require.EqualValues(t, 4, mesh.Counter(t, localMetric("chat", "other", "4xx", "ratelimit")))
	require.EqualValues(t, 5, mesh.Counter(t, requestsMetric("chat", "relay", "gpt-4.1", "2xx")))
	// A priority request names its model in a header, so its refusal is
	// counted under that model.
	resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`, "x-priority", "high"))
	require.Equal(t, http.StatusTooManyRequests, resp.Status)
	require.EqualValues(t, 1, mesh.Counter(t, localMetric("chat", "claude-sonnet-4.5", "4xx", "ratelimit")))
}

// LocalAnswers: requests the filter refuses itself (bad JSON, an oversized
// body) are counted with provider "shepherd" and the reason, never against a
// provider, and reach no provider.
func LocalAnswers(t *testing.T, run Runner) {
	cfg := strings.Replace(policyConfig("", ""), `"defaultModel"`, `"maxBodyBytes": 1024, "defaultModel"`, 1)
	mesh, relay, _ := twoProviders(t, run, cfg)
	for _, tc := range []struct {
		name, body string
		status     int
		reason     string
	}{
		{"invalid-json", `{"model":"gpt-4.1","messages":[`, http.StatusBadRequest, "invalid"},
		{"too-large", `{"model":"gpt-4.1","messages":[{"role":"user","content":"` + strings.Repeat("x", 1100) + `"}]}`, http.StatusRequestEntityTooLarge, "too_large"},
	} {
		resp := mesh.Do(t, chat(tc.body))
		require.Equal(t, tc.status, resp.Status, "%s: %s", tc.name, resp.Body)
		require.EqualValues(t, 1, mesh.Counter(t, localMetric("chat", "other", "4xx", tc.reason)), tc.name)
	}
	require.Zero(t, relay.Bodies(), "no provider saw a refused request")
	require.False(t, mesh.Defined(t, requestsMetric("chat", "relay", "other", "4xx")), "no provider is blamed")
}

// TokenLimit: tokens are reserved at admission (prompt estimate + max_tokens) and
// settled to the real usage when the response ends, so the refund admits
// requests a reservation alone would refuse.
func TokenLimit(t *testing.T, run Runner) {
	// A bucket of 100 that refills by one token a minute, so refill cannot blur the
	// arithmetic however slowly the test runs.
	mesh, relay, _ := twoProviders(t, run, policyConfig(`{"tokensPerMinute": 1, "tokenBurst": 100}`, ""))
	// Each request reserves 1 (prompt) + 60 (max_tokens); the fake provider uses
	// 2 + 12 = 14. Without settlement the second request would not fit (39 < 61).
	body := `{"model":"gpt-4.1","max_tokens":60,"messages":[{"role":"user","content":"hi"}]}`
	for i := 0; i < 3; i++ {
		resp := mesh.Do(t, chat(body))
		require.Equal(t, http.StatusOK, resp.Status, "request %d: %s", i, resp.Body)
	}
	// 100 - 3*14 = 58 left (59 if a minute passed): the next reservation of 61 is
	// refused.
	resp := mesh.Do(t, chat(body))
	require.Equal(t, http.StatusTooManyRequests, resp.Status)
	require.Equal(t, "100", resp.Header.Get("x-ratelimit-limit-tokens"))
	// The refusal comes when the body has been read: the request's headers may
	// already have reached the provider, but it is cancelled before any body.
	require.EqualValues(t, 3, relay.Bodies())

	// A request larger than the whole bucket says so.
	resp = mesh.Do(t, chat(`{"model":"gpt-4.1","max_tokens":5000,"messages":[]}`))
	require.Equal(t, http.StatusTooManyRequests, resp.Status)
	require.Contains(t, string(resp.Body), "more tokens than the per-minute limit")

	require.EqualValues(t, 3*2, mesh.Counter(t, telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, "input")))
	require.EqualValues(t, 3*12, mesh.Counter(t, telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, "output")))
	// gpt-4.1: $2/M in, $8/M out: 3 × (2×2 + 12×8) = 300 micro-USD.
	require.EqualValues(t, 300, mesh.Counter(t, telemetry.Name(telemetry.Cost, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "gpt-4.1")))
}

// Fallback: a 429 from the primary is retried on the next model of the chain, on
// another provider, and the client gets the success with headers that say so.
func Fallback(t *testing.T, run Runner) {
	mesh, relay, backup := twoProviders(t, run, policyConfig("",
		`{"models": ["deepseek-v3.2", {"model": "gemini-2.5-flash", "provider": "backup"}], "baseBackoffMs": 5, "maxBackoffMs": 20}`))
	relay.Script(fakeprovider.Fault{Status: 429}, fakeprovider.Fault{Status: 503})

	resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "backup", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "gemini-2.5-flash", resp.Header.Get("x-shepherd-model"))
	require.Equal(t, "3", resp.Header.Get("x-shepherd-attempts"))
	require.EqualValues(t, 2, relay.Requests(), "gpt-4.1 then deepseek-v3.2 on the relay")
	require.EqualValues(t, 1, backup.Requests())
	require.Equal(t, "gemini-2.5-flash", backup.Last().Model)
	require.Equal(t, "/v1/chat/completions", backup.Last().Path)
	var out struct {
		Echo fakeprovider.Echo `json:"x_echo"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	require.Equal(t, "backup", out.Echo.Provider)

	require.EqualValues(t, 1, mesh.Counter(t, fallbackMetric("chat", "gpt-4.1", "relay", "deepseek-v3.2", "relay", "status")))
	require.EqualValues(t, 1, mesh.Counter(t, fallbackMetric("chat", "deepseek-v3.2", "relay", "gemini-2.5-flash", "backup", "status")))
	require.EqualValues(t, 1, mesh.Counter(t, requestsMetric("chat", "backup", "gemini-2.5-flash", "2xx")))
	// Every attempt is counted, also those whose failure the client never saw.
	require.EqualValues(t, 1, mesh.Counter(t, attemptsMetric("chat", "relay", "gpt-4.1", "4xx")))
	require.EqualValues(t, 1, mesh.Counter(t, attemptsMetric("chat", "relay", "deepseek-v3.2", "5xx")))
	require.EqualValues(t, 1, mesh.Counter(t, attemptsMetric("chat", "backup", "gemini-2.5-flash", "2xx")))
}

// FallbackGivesUp: when every attempt fails, the client gets the last real
// upstream error, and attempts stay within maxAttempts.
func FallbackGivesUp(t *testing.T, run Runner) {
	mesh, relay, backup := twoProviders(t, run, policyConfig("",
		`{"models": [{"model": "deepseek-v3.2", "provider": "backup"}], "maxAttempts": 3, "baseBackoffMs": 1, "maxBackoffMs": 2, "retryBudgetPercent": 1000}`))
	relay.Script(fakeprovider.Fault{Status: 500}, fakeprovider.Fault{Status: 502})
	backup.Script(fakeprovider.Fault{Status: 503})

	resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
	require.Equal(t, http.StatusBadGateway, resp.Status, "the last attempt's answer: %s", resp.Body)
	require.Equal(t, "3", resp.Header.Get("x-shepherd-attempts"))
	require.Contains(t, string(resp.Body), "relay answered 502")
	require.EqualValues(t, 2, relay.Requests())
	require.EqualValues(t, 1, backup.Requests())
}

// RetryAfter: a Retry-After on a retry of the same entry is waited for.
func RetryAfter(t *testing.T, run Runner) {
	mesh, relay, _ := twoProviders(t, run, policyConfig("", `{"maxAttempts": 2, "retryAfterCapMs": 5000}`))
	relay.Script(fakeprovider.Fault{Status: 429, RetryAfter: "1"})
	start := time.Now()
	resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.EqualValues(t, 2, relay.Requests())
	// A lower bound only: the retry may not start before Retry-After has passed.
	require.GreaterOrEqual(t, time.Since(start), time.Second)
}

// RetryBudget: a provider that always fails cannot multiply the load: extra
// attempts stay within the route's retry budget.
func RetryBudget(t *testing.T, run Runner) {
	mesh, relay, _ := twoProviders(t, run, policyConfig("",
		`{"maxAttempts": 3, "baseBackoffMs": 1, "maxBackoffMs": 1, "retryBudgetPercent": 10}`))
	const n = 60
	faults := make([]fakeprovider.Fault, 3*n)
	for i := range faults {
		faults[i] = fakeprovider.Fault{Status: 503}
	}
	relay.Script(faults...)
	for i := 0; i < n; i++ {
		resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
		require.Equal(t, http.StatusServiceUnavailable, resp.Status)
	}
	// Without a budget 3n attempts would be made. The budget allows 10% of n, or
	// the floor of one retry per second over its 10 s window (10 retries) on each
	// worker VM, whichever is more; runners use at most 4 VMs.
	require.LessOrEqual(t, relay.Requests(), int64(n+max(n/10, 4*10)), "attempts: %d", relay.Requests())
	require.GreaterOrEqual(t, relay.Requests(), int64(n))
	// Each request ended on one refused retry, counted with its reason: the
	// budget, or the attempts it had used up.
	denied := mesh.Counter(t, deniedMetric("chat", "retry_budget"))
	require.Positive(t, denied, "the budget refused retries")
	require.EqualValues(t, n, denied+mesh.Counter(t, deniedMetric("chat", "attempts_exhausted")))
}

// FailoverNeedsNoBudget: the retry budget protects the provider a retry goes
// to. With the primary failing every request and the fallback provider
// healthy, every request gets the fallback's answer: a first visit of another
// provider is no retry of the failing one, however small the budget.
func FailoverNeedsNoBudget(t *testing.T, run Runner) {
	mesh, relay, backup := twoProviders(t, run, policyConfig("",
		`{"models": [{"model": "deepseek-v3.2", "provider": "backup"}], "maxAttempts": 3, "baseBackoffMs": 1, "maxBackoffMs": 1, "retryBudgetPercent": 0}`))
	const n = 40
	faults := make([]fakeprovider.Fault, n)
	for i := range faults {
		faults[i] = fakeprovider.Fault{Status: 429}
	}
	relay.Script(faults...)
	for i := 0; i < n; i++ {
		resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
		require.Equal(t, http.StatusOK, resp.Status, "request %d: %s", i, resp.Body)
		require.Equal(t, "backup", resp.Header.Get("x-shepherd-provider"))
		require.Equal(t, "2", resp.Header.Get("x-shepherd-attempts"))
	}
	require.EqualValues(t, n, relay.Requests(), "the failing provider saw each request once")
	require.EqualValues(t, n, backup.Requests())
	require.False(t, mesh.Defined(t, deniedMetric("chat", "retry_budget")))
	require.EqualValues(t, n, mesh.Counter(t, attemptsMetric("chat", "relay", "gpt-4.1", "4xx")))
}

// Streaming: SSE flows through as it is produced, the filter asks the provider for
// usage and records tokens and time to first token. A client that did not ask
// for usage gets the stream without it, byte for byte what the provider sends
// without include_usage; a client that asked gets it unchanged.
func Streaming(t *testing.T, run Runner) {
	mesh, relay, _ := twoProviders(t, run, policyConfig("", ""))
	output := telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, "output")
	const usage = `"usage":{"prompt_tokens":2,"completion_tokens":12,"total_tokens":14}`
	for i, body := range []string{
		`{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
	} {
		asked := strings.Contains(body, `"include_usage":true`)
		resp := mesh.Do(t, chat(body))
		require.Equal(t, http.StatusOK, resp.Status)
		require.True(t, strings.HasPrefix(resp.Header.Get("content-type"), "text/event-stream"))
		require.Contains(t, string(relay.Last().Body), `"stream_options":{"include_usage":true}`)
		require.True(t, strings.HasSuffix(string(resp.Body), "data: [DONE]\n\n"))
		if asked {
			require.Contains(t, string(resp.Body), usage)
		} else {
			require.NotContains(t, string(resp.Body), `"usage"`, "the client did not ask for usage")
			require.Equal(t, 15, strings.Count(string(resp.Body), "data: "), "role, 12 words, stop, [DONE]")
		}
		require.EqualValues(t, 12*(i+1), mesh.Counter(t, output), "usage is counted either way")
	}
}

// PriorityAndChainsPerModel: a priority value may name the provider as well
// as the model, and fallback.byModel gives a model its own chain instead of
// the route's.
func PriorityAndChainsPerModel(t *testing.T, run Runner) {
	cfg := strings.Replace(policyConfig("", `{"models": ["deepseek-v3.2"],
	  "byModel": {"claude-sonnet-4.5": [{"model": "gemini-2.5-flash", "provider": "relay"}]},
	  "baseBackoffMs": 1, "maxBackoffMs": 2}`),
		`"models": {"high": "claude-sonnet-4.5"}`, `"models": {"high": {"model": "claude-sonnet-4.5", "provider": "backup"}}`, 1)
	mesh, relay, backup := twoProviders(t, run, cfg)

	// The priority request goes to the provider its value names.
	resp := mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`, "x-priority", "high"))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "backup", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "claude-sonnet-4.5", backup.Last().Model)
	require.Zero(t, relay.Requests())

	// Its model's own chain: gemini on the relay, not the route's deepseek.
	backup.Script(fakeprovider.Fault{Status: 429})
	resp = mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`, "x-priority", "high"))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "relay", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "gemini-2.5-flash", resp.Header.Get("x-shepherd-model"))
	require.Equal(t, "gemini-2.5-flash", relay.Last().Model)

	// Other models keep the route's chain.
	relay.Script(fakeprovider.Fault{Status: 429})
	resp = mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "deepseek-v3.2", resp.Header.Get("x-shepherd-model"))
	require.Equal(t, "relay", resp.Header.Get("x-shepherd-provider"))
}

// EmbeddingsChainPerModel: an embeddings request is answered only by its own
// model, so the route's chain (chat models) never serves it; a
// fallback.byModel chain for the embedding model sends it to the same model
// on another provider when the first fails. A listed embedding model without
// a chain of its own is retried on its own provider only.
func EmbeddingsChainPerModel(t *testing.T, run Runner) {
	cfg := strings.Replace(policyConfig("", `{"models": ["deepseek-v3.2"],
	  "byModel": {"text-embedding-3-small": [{"model": "text-embedding-3-small", "provider": "backup"}]},
	  "baseBackoffMs": 1, "maxBackoffMs": 2}`),
		`"claude-sonnet-4.5": {"input": 3.00, "output": 15.00}`,
		`"claude-sonnet-4.5": {"input": 3.00, "output": 15.00},
    "text-embedding-3-small": {"input": 0.02, "output": 0},
    "text-embedding-3-large": {"input": 0.13, "output": 0}`, 1)
	mesh, relay, backup := twoProviders(t, run, cfg)
	embed := func(model string) Request {
		return Request{Method: http.MethodPost, Path: "/v1/embeddings", Authority: "api.openai.com",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"model":"` + model + `","input":"hello"}`}
	}

	// Served by the relay while it works.
	resp := mesh.Do(t, embed("text-embedding-3-small"))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "relay", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "/openai/v1/embeddings", relay.Last().Path)

	// The relay fails: the model's own chain, the same model on backup.
	relay.Script(fakeprovider.Fault{Status: http.StatusServiceUnavailable})
	resp = mesh.Do(t, embed("text-embedding-3-small"))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "backup", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "text-embedding-3-small", resp.Header.Get("x-shepherd-model"))
	require.Equal(t, "2", resp.Header.Get("x-shepherd-attempts"))
	require.Contains(t, string(resp.Body), `"embedding"`, "backup's embeddings answer")
	last := backup.Last()
	require.Equal(t, "/v1/embeddings", last.Path)
	require.Equal(t, "text-embedding-3-small", last.Model)
	require.JSONEq(t, `{"model":"text-embedding-3-small","input":"hello"}`, string(last.Body), "the kept body, unchanged")
	require.EqualValues(t, 1, mesh.Counter(t, attemptsMetric("chat", "relay", "text-embedding-3-small", "5xx")))
	require.EqualValues(t, 1, mesh.Counter(t, attemptsMetric("chat", "backup", "text-embedding-3-small", "2xx")))

	// A listed embedding model without a chain of its own: the route's chain
	// names a chat model, which cannot answer it, so the retry goes to the
	// same model on the relay again, and backup is not asked.
	relay.Script(fakeprovider.Fault{Status: http.StatusServiceUnavailable})
	resp = mesh.Do(t, embed("text-embedding-3-large"))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "relay", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "text-embedding-3-large", resp.Header.Get("x-shepherd-model"))
	require.Equal(t, "2", resp.Header.Get("x-shepherd-attempts"))
	require.Equal(t, "text-embedding-3-large", relay.Last().Model)
	require.EqualValues(t, 1, backup.Requests(), "backup was asked once, by the chain of the small model")

	// Chat keeps the route's chain.
	relay.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests})
	resp = mesh.Do(t, chat(`{"model":"gpt-4.1","messages":[]}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "relay", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "deepseek-v3.2", resp.Header.Get("x-shepherd-model"))
}
