package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

// The real-client tests drive the local mesh (the Envoy-faithful host with the
// built filter, fake providers, and for budgets and global limits a real
// shepherd-sidecar in this process) with OpenAI's official SDKs, unchanged:
// github.com/openai/openai-go/v3 here, the Node package `openai` in
// node_test.go. What they assert is what an application sees.

// clientsConfig routes by path prefix, each route one behaviour; the
// application's own route is /v1/ with every default (streamUsage included).
const clientsConfig = `{
  "models": {"gpt-4.1": {"input": 2.00, "cachedInput": 0.50, "output": 8.00}, "deepseek-v3.2": {},
             "text-embedding-3-small": {"input": 0.02, "output": 0}},
  "sidecar": SIDECAR,
  "providers": [
    {"name": "relay", "host": "relay.example.com", "cluster": "relay"},
    {"name": "backup", "host": "backup.example.com", "cluster": "backup"}
  ],
  "routes": [
    {"name": "limited", "match": {"pathPrefix": "/limited/"}, "provider": "relay",
     "limits": {"requestsPerMinute": 30, "requestBurst": 1}},
    {"name": "budget", "match": {"pathPrefix": "/budget/"}, "provider": "relay"},
    {"name": "closed", "match": {"pathPrefix": "/closed/"}, "provider": "relay",
     "globalLimits": {"failureMode": "closed", "timeoutMs": 300}},
    {"name": "small", "match": {"pathPrefix": "/small/"}, "provider": "relay", "maxBodyBytes": 1024},
    {"name": "chain", "match": {"pathPrefix": "/chain/"}, "provider": "relay",
     "fallback": {"models": [{"model": "deepseek-v3.2", "provider": "backup"}], "maxAttempts": 3,
                  "baseBackoffMs": 1, "maxBackoffMs": 2, "retryBudgetPercent": 1000}},
    {"name": "plain", "match": {"pathPrefix": "/plain/"}, "provider": "relay"},
    {"name": "app", "match": {"pathPrefix": "/v1/"}, "provider": "relay"}
  ]
}`

type clientsEnv struct {
	url           string
	relayAddr     string // the relay's own address, for calls that bypass the mesh
	host          *envoy.Host
	sidecar       *sidecar
	relay, backup *fakeprovider.Provider
}

// newClientsEnv starts one Envoy (two workers) with the filter, the relay and
// backup fake providers and a sidecar (the mesh tests' configuration: route
// budget has a monthly budget of $1).
func newClientsEnv(t *testing.T) *clientsEnv {
	var mesh map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(meshConfig), &mesh))
	e := &clientsEnv{
		sidecar: startSidecar(t),
		relay:   fakeprovider.New(fakeprovider.Options{Name: "relay"}),
		backup:  fakeprovider.New(fakeprovider.Options{Name: "backup"}),
	}
	e.relayAddr = scenario.Upstream(t, e.relay)
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(strings.Replace(clientsConfig, "SIDECAR", string(mesh["sidecar"]), 1)), Workers: 2,
		Env: filterEnv(meshFilterToken),
		Clusters: map[string]string{
			"relay": e.relayAddr, "backup": scenario.Upstream(t, e.backup), "sidecar": e.sidecar.addr,
		},
		Routes:    map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	front := serveHost(t, h)
	e.url, e.host = front.URL, h
	return e
}

// client is an SDK client with the application's defaults (two retries)
// whose base URL is the route's prefix, counting the HTTP attempts it makes.
func (e *clientsEnv) client(prefix string, attempts *atomic.Int64, opts ...option.RequestOption) openai.Client {
	count := func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		attempts.Add(1)
		return next(req)
	}
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(e.url + prefix + "v1/"), option.WithAPIKey("sk-the-applications-own-key"),
		option.WithMiddleware(count), option.WithRequestTimeout(20 * time.Second),
	}, opts...)...)
}

// spendBudget reports, as the filter, route budget's monthly $1 spent to the sidecar and
// waits until both workers refuse the route.
func (e *clientsEnv) spendBudget(t *testing.T) {
	pc := policyv1.NewPolicyServiceClient(e.sidecar.client(t))
	_, err := pc.ReportOutcomes(meshFilterCtx(meshFilterToken), &policyv1.ReportOutcomesRequest{Outcomes: []*policyv1.Outcome{
		{Route: "budget", Provider: "relay", StatusCode: 200, CostMicroUsd: 1_000_000},
	}})
	require.NoError(t, err)
	until(t, 10*time.Second, "the spent budget on both workers", func() bool {
		for i := 0; i < 4; i++ {
			resp, err := http.Post(e.url+"/budget/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"gpt-4.1","messages":[]}`))
			require.NoError(t, err)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests {
				return false
			}
		}
		return true
	})
}

// counter waits up to 5 s for counter name to reach want and returns its value
// then: a stream's metrics are recorded when the proxy finishes the stream,
// which can come just after the client has read its last byte.
func (e *clientsEnv) counter(t *testing.T, want uint64, name string) uint64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	got := counterOf(t, e.host, name)
	for got < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		got = counterOf(t, e.host, name)
	}
	return got
}

func chatParams(content string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "gpt-4.1",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
	}
}

// fakeText is the fake provider's completion of n words.
func fakeText(n int) string {
	words := strings.Fields("shepherd herds tokens across the mesh quietly and the flock arrives at the cheapest pasture")
	return strings.Join(words[:n], " ")
}

// tutorialLoop is the streaming loop of countless tutorials: it indexes the
// first choice of every chunk, and so panics on a chunk without choices.
func tutorialLoop(t *testing.T, next func() bool, choices func() []openai.ChatCompletionChunkChoice) (out string) {
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("the tutorial loop broke after %q: %v", out, r)
		}
	}()
	for next() {
		out += choices()[0].Delta.Content
	}
	return out
}

// TestOpenAIGoChat: openai-go's chat completions through the mesh, JSON and
// streaming, the stream read by the tutorial loop and by the SDK's
// accumulator, with include_usage unset, false and true.
func TestOpenAIGoChat(t *testing.T) {
	e := newClientsEnv(t)
	var attempts atomic.Int64
	c := e.client("/", &attempts)
	ctx := context.Background()

	var raw *http.Response
	got, err := c.Chat.Completions.New(ctx, chatParams("count the sheep of the mesh"), option.WithResponseInto(&raw))
	require.NoError(t, err)
	require.Equal(t, fakeText(12), got.Choices[0].Message.Content)
	require.EqualValues(t, 12, got.Usage.CompletionTokens)
	require.Positive(t, got.Usage.PromptTokens)
	require.Equal(t, "relay", raw.Header.Get("x-shepherd-provider"))
	// The relay gets the sidecar's credential once the policy has reached
	// the worker, none before; never the application's.
	require.NotContains(t, e.relay.Last().Header.Values("Authorization"), "Bearer sk-the-applications-own-key",
		"the application's key never reaches the provider")

	streamUsage := func(v *bool) openai.ChatCompletionNewParams {
		p := chatParams("stream the sheep")
		if v != nil {
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(*v)}
		}
		return p
	}
	no, yes := false, true
	for _, tc := range []struct {
		name  string
		usage *bool
	}{{"include_usage unset", nil}, {"include_usage false", &no}} {
		t.Run("tutorial loop, "+tc.name, func(t *testing.T) {
			s := c.Chat.Completions.NewStreaming(ctx, streamUsage(tc.usage))
			defer s.Close()
			out := tutorialLoop(t, s.Next, func() []openai.ChatCompletionChunkChoice { return s.Current().Choices })
			require.NoError(t, s.Err())
			require.Equal(t, fakeText(12)+" ", out)
			require.Contains(t, string(e.relay.Last().Body), `"include_usage":true`, "the filter asked the provider for usage")
		})
	}
	t.Run("accumulator, include_usage true", func(t *testing.T) {
		s := c.Chat.Completions.NewStreaming(ctx, streamUsage(&yes))
		defer s.Close()
		acc := openai.ChatCompletionAccumulator{}
		chunks, empty := 0, 0
		for s.Next() {
			chunks++
			if len(s.Current().Choices) == 0 {
				empty++
			}
			require.True(t, acc.AddChunk(s.Current()))
		}
		require.NoError(t, s.Err())
		require.Equal(t, 1, empty, "the usage chunk the client asked for")
		require.Equal(t, fakeText(12)+" ", acc.Choices[0].Message.Content)
		require.EqualValues(t, 12, acc.Usage.CompletionTokens)
	})
	// Three streams and one JSON answer, every one counted with its real
	// usage: 12 output tokens each.
	require.EqualValues(t, 4*12, e.counter(t, 4*12, telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "app",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, "output")))
	require.EqualValues(t, 4, attempts.Load(), "one attempt per call")
}

// TestOpenAIGoResponsesAndEmbeddings: the Responses API, JSON and streaming
// (usage in response.completed), and embeddings, through the mesh, counted.
func TestOpenAIGoResponsesAndEmbeddings(t *testing.T) {
	e := newClientsEnv(t)
	var attempts atomic.Int64
	c := e.client("/", &attempts)
	ctx := context.Background()
	params := responses.ResponseNewParams{
		Model: "gpt-4.1",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("count the sheep")},
	}

	r, err := c.Responses.New(ctx, params)
	require.NoError(t, err)
	require.Equal(t, "completed", string(r.Status))
	require.Equal(t, fakeText(12), r.Output[0].Content[0].Text)
	require.EqualValues(t, 12, r.Usage.OutputTokens)
	require.NotContains(t, string(e.relay.Last().Body), "stream_options")

	s := c.Responses.NewStreaming(ctx, params)
	var text strings.Builder
	var usage responses.ResponseUsage
	types := map[string]int{}
	for s.Next() {
		ev := s.Current()
		types[ev.Type]++
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed":
			usage = ev.AsResponseCompleted().Response.Usage
		}
	}
	require.NoError(t, s.Err())
	require.NoError(t, s.Close())
	require.Equal(t, 1, types["response.completed"], "%v", types)
	require.Equal(t, strings.TrimSpace(fakeText(12)), strings.TrimSpace(text.String()))
	require.EqualValues(t, 12, usage.OutputTokens)
	require.Positive(t, usage.InputTokens)
	require.NotContains(t, string(e.relay.Last().Body), "stream_options", "a Responses request is not given chat parameters")
	// Both Responses calls counted with their real usage.
	require.EqualValues(t, 2*12, e.counter(t, 2*12, telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "app",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, "output")))
	require.EqualValues(t, r.Usage.InputTokens+usage.InputTokens, e.counter(t, uint64(r.Usage.InputTokens+usage.InputTokens), telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "app",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "gpt-4.1", telemetry.LabelType, "input")))

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a sheep", "the mesh"}},
	})
	require.NoError(t, err)
	require.Len(t, emb.Data, 2)
	require.NotEmpty(t, emb.Data[0].Embedding)
	require.Equal(t, "text-embedding-3-small", e.relay.Last().Model, "embeddings keep their model")
	require.Positive(t, emb.Usage.PromptTokens)
	require.EqualValues(t, emb.Usage.PromptTokens, e.counter(t, uint64(emb.Usage.PromptTokens), telemetry.Name(telemetry.Tokens, telemetry.LabelRoute, "app",
		telemetry.LabelProvider, "relay", telemetry.LabelModel, "text-embedding-3-small", telemetry.LabelType, "input")))
	require.EqualValues(t, 3, attempts.Load())
}

// TestOpenAIGoErrorsAndRetries: every local answer, as openai-go's error type
// sees it, and how many HTTP attempts the SDK makes on it with its default of
// two retries. A rate limit is retried after exactly the wait shepherd names;
// nothing else local is retried; a failed fallback chain is not run again; a
// provider's own 503 on a route without fallback is retried as the SDK always
// does.
func TestOpenAIGoErrorsAndRetries(t *testing.T) {
	e := newClientsEnv(t)
	ctx := context.Background()
	apiError := func(t *testing.T, err error) *openai.Error {
		var ae *openai.Error
		require.True(t, errors.As(err, &ae), "%v", err)
		return ae
	}

	t.Run("rate limit: retried after retry-after-ms, then served", func(t *testing.T) {
		var attempts atomic.Int64
		c := e.client("/limited/", &attempts)
		_, err := c.Chat.Completions.New(ctx, chatParams("takes the route's one request"))
		require.NoError(t, err)

		// Without retries the application sees the refusal and the hints.
		_, err = c.Chat.Completions.New(ctx, chatParams("refused"), option.WithMaxRetries(0))
		ae := apiError(t, err)
		require.Equal(t, http.StatusTooManyRequests, ae.StatusCode)
		require.Equal(t, "rate_limit_exceeded", ae.Code)
		require.Equal(t, "true", ae.Response.Header.Get("x-should-retry"))
		ms, err := strconv.Atoi(ae.Response.Header.Get("retry-after-ms"))
		require.NoError(t, err)
		require.Positive(t, ms)
		require.LessOrEqual(t, ms, 2000, "one request every two seconds")
		require.Equal(t, strconv.Itoa((ms+999)/1000), ae.Response.Header.Get("retry-after"))

		// With its retries the SDK waits retry-after-ms and is served.
		attempts.Store(0)
		got, err := c.Chat.Completions.New(ctx, chatParams("waits its turn"))
		require.NoError(t, err)
		require.Equal(t, fakeText(12), got.Choices[0].Message.Content)
		require.EqualValues(t, 2, attempts.Load(), "one refusal, one success")
		require.EqualValues(t, 2, e.relay.Bodies())
	})

	t.Run("budget spent: not retried", func(t *testing.T) {
		e.spendBudget(t)
		var attempts atomic.Int64
		before := e.relay.Bodies()
		c := e.client("/budget/", &attempts)
		_, err := c.Chat.Completions.New(ctx, chatParams("one more"))
		ae := apiError(t, err)
		require.Equal(t, http.StatusTooManyRequests, ae.StatusCode)
		require.Equal(t, "insufficient_quota", ae.Code)
		require.Equal(t, "insufficient_quota", ae.Type)
		require.EqualValues(t, 1, attempts.Load(), "the SDK would retry a 429 twice without x-should-retry: false")
		require.Equal(t, before, e.relay.Bodies())
	})

	cases := []struct {
		name   string
		prefix string
		call   func(c openai.Client) error
		status int
		code   string
	}{
		{"body over maxBodyBytes", "/small/", func(c openai.Client) error {
			_, err := c.Chat.Completions.New(ctx, chatParams(strings.Repeat("baa ", 400)))
			return err
		}, http.StatusRequestEntityTooLarge, "request_too_large"},
		{"invalid JSON", "/plain/", func(c openai.Client) error {
			_, err := c.Chat.Completions.New(ctx, chatParams("x"), option.WithRequestBody("application/json", []byte(`{"model":"gpt-4.1",`)))
			return err
		}, http.StatusBadRequest, "invalid_json"},
	}
	for _, tc := range cases {
		t.Run(tc.name+": not retried", func(t *testing.T) {
			var attempts atomic.Int64
			before := e.relay.Bodies()
			ae := apiError(t, tc.call(e.client(tc.prefix, &attempts)))
			require.Equal(t, tc.status, ae.StatusCode)
			require.Equal(t, tc.code, ae.Code)
			require.Equal(t, "invalid_request_error", ae.Type)
			require.EqualValues(t, 1, attempts.Load())
			require.Equal(t, before, e.relay.Bodies(), "no body reached the provider")
		})
	}

	t.Run("failed fallback chain: not run again", func(t *testing.T) {
		e.relay.Script(fakeprovider.Fault{Status: 503}, fakeprovider.Fault{Status: 503})
		e.backup.Script(fakeprovider.Fault{Status: 503})
		// Bodies, not Requests: a request an earlier case refused at its body
		// may reach the provider's handler late, without a body.
		relay0, backup0 := e.relay.Bodies(), e.backup.Bodies()
		var attempts atomic.Int64
		var raw *http.Response
		c := e.client("/chain/", &attempts)
		_, err := c.Chat.Completions.New(ctx, chatParams("everyone is down"), option.WithResponseInto(&raw))
		ae := apiError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, ae.StatusCode)
		require.Equal(t, "3", ae.Response.Header.Get("x-shepherd-attempts"))
		require.EqualValues(t, 1, attempts.Load())
		require.EqualValues(t, 2, e.relay.Bodies()-relay0, "gpt-4.1 twice")
		require.EqualValues(t, 1, e.backup.Bodies()-backup0, "deepseek-v3.2 once: three upstream calls, not nine")
	})

	t.Run("provider's 503 without fallback: the SDK retries it", func(t *testing.T) {
		e.relay.Script(fakeprovider.Fault{Status: 503}, fakeprovider.Fault{Status: 503}, fakeprovider.Fault{Status: 503})
		relay0 := e.relay.Bodies()
		var attempts atomic.Int64
		c := e.client("/plain/", &attempts, option.WithMaxRetryDelay(20*time.Millisecond))
		_, err := c.Chat.Completions.New(ctx, chatParams("the provider is down"))
		ae := apiError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, ae.StatusCode)
		require.Empty(t, ae.Response.Header.Get("x-should-retry"), "the provider's answer, untouched")
		require.EqualValues(t, 3, attempts.Load())
		require.EqualValues(t, 3, e.relay.Bodies()-relay0)
	})

	// Last: it stops the sidecar.
	t.Run("global limits unavailable on a fail-closed route: not retried", func(t *testing.T) {
		var attempts atomic.Int64
		c := e.client("/closed/", &attempts)
		_, err := c.Chat.Completions.New(ctx, chatParams("checked and admitted"))
		require.NoError(t, err)
		e.sidecar.stop(t)
		attempts.Store(0)
		_, err = c.Chat.Completions.New(ctx, chatParams("nobody to ask"))
		ae := apiError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, ae.StatusCode)
		require.Equal(t, "ratelimit_unavailable", ae.Code)
		require.Equal(t, "server_error", ae.Type)
		require.EqualValues(t, 1, attempts.Load())
	})
}
