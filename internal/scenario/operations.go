package scenario

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
)

func post(path, body string, header ...string) Request {
	r := chat(body, header...)
	r.Path = path
	return r
}

// Operations: each OpenAI operation gets only what fits it. An embeddings
// request keeps its model under the route's priority header and is never
// answered by a chat model of the fallback chain; a streamed Responses
// request reaches the provider without chat's stream_options.
func Operations(t *testing.T, run Runner) {
	mesh, relay, backup := twoProviders(t, run, policyConfig("",
		`{"models": ["deepseek-v3.2", {"model": "gemini-2.5-flash", "provider": "backup"}], "baseBackoffMs": 1, "maxBackoffMs": 2, "retryBudgetPercent": 1000}`))

	emb := `{"model":"text-embedding-3-small","input":["a","b"]}`
	resp := mesh.Do(t, post("/v1/embeddings", emb, "x-priority", "high"))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "text-embedding-3-small", relay.Last().Model, "the priority model is a chat model")
	require.Equal(t, emb, string(relay.Last().Body), "the body is untouched")

	// The primary fails: no other model may answer; the primary's model is
	// retried on the provider that serves it.
	relay.Script(fakeprovider.Fault{Status: 503})
	before := relay.Requests()
	resp = mesh.Do(t, post("/v1/embeddings", emb))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "text-embedding-3-small", relay.Last().Model)
	require.EqualValues(t, 2, relay.Requests()-before)
	require.Zero(t, backup.Requests(), "the backup serves only the chain's chat model")
	var out struct {
		Model string
		Data  []json.RawMessage
	}
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	require.Equal(t, "text-embedding-3-small", out.Model)
	require.Len(t, out.Data, 2)
	// Each answer's usage counted: 2 prompt tokens (one per input), under
	// "other" as the config does not list the model.
	tokens := func(model, typ string) string {
		return telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "chat", telemetry.LabelProvider, "relay",
			telemetry.LabelModel, model, telemetry.LabelType, typ)
	}
	require.EqualValues(t, 4, mesh.Counter(t, tokens("other", "input")))

	// A Responses call answered in JSON: its usage (input_tokens with cached
	// tokens, output_tokens with reasoning tokens) is counted as it came.
	resp = mesh.Do(t, post("/v1/responses", `{"model":"gpt-4.1","input":"hello there"}`,
		"x-fake-cached-tokens", "2", "x-fake-reasoning-tokens", "3"))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	var r struct {
		Usage fakeprovider.ResponsesUsage
	}
	require.NoError(t, json.Unmarshal(resp.Body, &r))
	require.EqualValues(t, r.Usage.InputTokens, mesh.Counter(t, tokens("gpt-4.1", "input")))
	require.EqualValues(t, 12+3, mesh.Counter(t, tokens("gpt-4.1", "output")), "12 words and 3 reasoning tokens")

	// A chat model the config does not list falls back only to the same model.
	relay.Script(fakeprovider.Fault{Status: 503}, fakeprovider.Fault{Status: 503})
	resp = mesh.Do(t, chat(`{"model":"my-own-model","messages":[]}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "my-own-model", relay.Last().Model)
	require.Zero(t, backup.Requests())

	// A streamed Responses call: no stream_options, no default model added.
	rb := `{"model":"gpt-4.1","input":"hi","stream":true,"stream_options":{"include_obfuscation":false}}`
	resp = mesh.Do(t, post("/v1/responses", rb))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, rb, string(relay.Last().Body))
	require.Equal(t, "/openai/v1/responses", relay.Last().Path)

	// A batch is not an inference call: its body is not read, so the route's
	// default model is not added to it.
	bb := `{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h"}`
	resp = mesh.Do(t, post("/v1/batches", bb))
	require.Equal(t, http.StatusNotFound, resp.Status, "the fake provider has no batches")
	require.Equal(t, bb, string(relay.Last().Body))
}

// ProviderOperations: a provider that lists its operations never gets
// another; a route none of whose providers serves an operation answers 404.
func ProviderOperations(t *testing.T, run Runner) {
	chatOnly := fakeprovider.New(fakeprovider.Options{Name: "chatonly"})
	all := fakeprovider.New(fakeprovider.Options{Name: "all"})
	mesh := run(t, Setup{
		PluginConfig: `{
  "providers": [
    {"name": "chatonly", "host": "chatonly.example.com", "cluster": "chatonly", "operations": ["chat"]},
    {"name": "all", "host": "all.example.com", "cluster": "all"}
  ],
  "routes": [
    {"name": "split", "match": {"pathPrefix": "/v1/"}, "providers": [{"name": "chatonly", "weight": 100}, {"name": "all", "weight": 0}]},
    {"name": "narrow", "match": {"pathPrefix": "/narrow/"}, "provider": "chatonly"}
  ]}`,
		Clusters: map[string]string{"chatonly": Upstream(t, chatOnly), "all": Upstream(t, all)},
		Routes:   map[string]string{"chatonly.example.com": "chatonly", "all.example.com": "all"},
	})
	for i := 0; i < 5; i++ {
		resp := mesh.Do(t, chat(`{"model":"m","messages":[]}`))
		require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
		require.Equal(t, "chatonly", resp.Header.Get("x-shepherd-provider"))
		resp = mesh.Do(t, post("/v1/embeddings", `{"model":"e","input":"x"}`))
		require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
		require.Equal(t, "all", resp.Header.Get("x-shepherd-provider"), "weight 0, but the only provider serving embeddings")
	}
	require.EqualValues(t, 5, chatOnly.Requests())
	require.EqualValues(t, 5, all.Requests())

	resp := mesh.Do(t, post("/narrow/v1/responses", `{"model":"m","input":"x"}`))
	require.Equal(t, http.StatusNotFound, resp.Status)
	require.JSONEq(t, `{"error":{"message":"route narrow has no provider for the responses operation","type":"invalid_request_error","code":"unsupported_operation"}}`, string(resp.Body))
	require.EqualValues(t, 5, chatOnly.Requests())
}

// ClientHeaders: the client's credential and account headers never reach a
// provider, the provider's configured organization and project do, and a
// fallback attempt carries the same client headers as the first attempt.
func ClientHeaders(t *testing.T, run Runner) {
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay", APIKey: "relay-key"})
	backup := fakeprovider.New(fakeprovider.Options{Name: "backup", APIKey: "backup-key"})
	mesh := run(t, Setup{
		PluginConfig: `{
  "models": {"a": {}, "b": {}},
  "providers": [
    {"name": "relay", "host": "relay.example.com", "cluster": "relay", "credential": {"inline": "relay-key"},
     "organization": "org-relay", "project": "proj-relay"},
    {"name": "backup", "host": "backup.example.com", "cluster": "backup", "credential": {"inline": "backup-key"}}
  ],
  "routes": [{"name": "r", "match": {"pathPrefix": "/v1/"}, "provider": "relay",
    "fallback": {"models": [{"model": "b", "provider": "backup"}], "baseBackoffMs": 1, "maxBackoffMs": 2}}]}`,
		Clusters: map[string]string{"relay": Upstream(t, relay), "backup": Upstream(t, backup)},
		Routes:   map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
	})
	relay.Script(fakeprovider.Fault{Status: 429})
	client := []string{
		"Authorization", "Bearer sk-client", "Api-Key", "client-azure-key", "X-Api-Key", "client-key",
		"OpenAI-Organization", "org-client", "OpenAI-Project", "proj-client",
		"Accept", "application/json", "User-Agent", "OpenAI/Go 3.0.0",
		"X-Stainless-Lang", "go", "X-Stainless-Retry-Count", "0", "X-Custom", "kept",
	}
	resp := mesh.Do(t, chat(`{"model":"a","messages":[]}`, client...))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, "backup", resp.Header.Get("x-shepherd-provider"))

	first, second := relay.Last().Header, backup.Last().Header
	require.Equal(t, "Bearer relay-key", first.Get("Authorization"))
	require.Equal(t, "org-relay", first.Get("OpenAI-Organization"))
	require.Equal(t, "proj-relay", first.Get("OpenAI-Project"))
	require.Equal(t, "Bearer backup-key", second.Get("Authorization"))
	for _, h := range []http.Header{first, second} {
		require.Empty(t, h.Values("Api-Key"))
		require.Empty(t, h.Values("X-Api-Key"))
		require.Len(t, h.Values("Authorization"), 1)
		require.NotContains(t, h.Values("OpenAI-Organization"), "org-client")
		require.NotContains(t, h.Values("OpenAI-Project"), "proj-client")
		for _, k := range []string{"Accept", "User-Agent", "X-Stainless-Lang", "X-Stainless-Retry-Count", "X-Custom", "Content-Type"} {
			require.Equal(t, first.Values(k), h.Values(k), k)
			require.NotEmpty(t, h.Values(k), k)
		}
	}
	require.Empty(t, second.Values("OpenAI-Organization"), "the backup names no organization")
}

// responsesEvents is a streamed Responses answer as api.openai.com sends it,
// cut where the upstream flushes.
var responsesEvents = []string{
	"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4.1\",\"output\":[],\"usage\":null}}\n\n",
	"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\",\"logprobs\":[]}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,",
	"\"content_index\":0,\"delta\":\" \\\"usage\\\": world\",\"logprobs\":[]}\n\n",
	"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4.1\",",
	"\"output\":[{\"id\":\"msg_1\",\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello \\\"usage\\\": world\"}]}],\"usage\":{\"input_tokens\":7,\"input_tokens_details\":{\"cached_tokens\":3},\"output_tokens\":9,\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":16}}}\n\n",
}

// ResponsesStream: a streamed Responses call reaches the client byte for
// byte as the provider sent it, and its usage (from response.completed) is
// counted exactly: tokens and cost.
func ResponsesStream(t *testing.T, run Runner) {
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, ev := range responsesEvents {
			_, _ = w.Write([]byte(ev))
			w.(http.Flusher).Flush()
		}
	})
	mesh := run(t, Setup{
		PluginConfig: `{
  "models": {"gpt-4.1": {"input": 2.00, "cachedInput": 0.50, "output": 8.00}},
  "providers": [{"name": "openai", "host": "api.openai.com", "cluster": "openai"}],
  "routes": [{"name": "r", "match": {"pathPrefix": "/v1/"}, "provider": "openai"}]}`,
		Clusters:       map[string]string{"openai": Upstream(t, up)},
		DefaultCluster: "openai",
	})
	resp := mesh.Do(t, post("/v1/responses", `{"model":"gpt-4.1","input":"hi","stream":true}`))
	require.Equal(t, http.StatusOK, resp.Status, "%s", resp.Body)
	require.Equal(t, strings.Join(responsesEvents, ""), string(resp.Body), "the stream is untouched")
	tokens := func(typ string) string {
		return telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "r", telemetry.LabelProvider, "openai",
			telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, typ)
	}
	require.EqualValues(t, 7, mesh.Counter(t, tokens("input")))
	require.EqualValues(t, 9, mesh.Counter(t, tokens("output")))
	// 4 input tokens at 2 USD, 3 cached at 0.50 and 9 output at 8 per million:
	// 8 + 1.5 + 72 = 81.5 micro-USD.
	cost := mesh.Counter(t, telemetry.Name(telemetry.Cost, telemetry.LabelRoute, "r", telemetry.LabelProvider, "openai", telemetry.LabelModel, "gpt-4.1"))
	require.InDelta(t, 81.5, float64(cost), 1)
}

// BodyErrors: a body that is not the JSON object an inference call needs is
// answered 400 in one clear sentence, an empty one like any other, and
// reaches no provider.
func BodyErrors(t *testing.T, run Runner) {
	mesh, relay, _ := twoProviders(t, run, policyConfig("", ""))
	for _, tc := range []struct {
		name, path, body, msg string
	}{
		{"empty chat", "/v1/chat/completions", "", "request body: invalid json at offset 0: empty body"},
		{"empty embeddings", "/v1/embeddings", "", "request body: invalid json at offset 0: empty body"},
		{"truncated", "/v1/chat/completions", `{"model":"gpt-4.1","messages":[`, "request body: invalid json at offset 31: unexpected end of input in array"},
		{"model type", "/v1/responses", `{"model":5,"input":"x"}`, "request body: model must be a string"},
	} {
		resp := mesh.Do(t, post(tc.path, tc.body))
		require.Equal(t, http.StatusBadRequest, resp.Status, tc.name)
		var e struct {
			Error struct{ Message, Type, Code string }
		}
		require.NoError(t, json.Unmarshal(resp.Body, &e), tc.name)
		require.Equal(t, tc.msg, e.Error.Message, tc.name)
		require.Equal(t, "invalid_request_error", e.Error.Type)
		require.Equal(t, "invalid_json", e.Error.Code)
	}
	require.Zero(t, relay.Bodies(), "no provider got a refused body")
	// A call that is not inference passes without a body.
	resp := mesh.Do(t, post("/v1/batches/b1/cancel", ""))
	require.Equal(t, http.StatusNotFound, resp.Status, "answered by the provider")
}
