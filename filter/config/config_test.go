package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shepherd-mesh/shepherd/filter/openai"
	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func noHeaders(string) (string, bool) { return "", false }

func TestParseValid(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/full.json")
	require.NoError(t, err)
	cfg, err := Parse(data, envOf(map[string]string{"RELAY_API_KEY": "sk-test-123"}))
	require.NoError(t, err)

	require.Len(t, cfg.Providers, 2)
	relay, local := cfg.Providers[0], cfg.Providers[1]
	require.Equal(t, "relay.example.com", relay.Host)
	require.Equal(t, "/openai/v1", relay.PathPrefix)
	require.Equal(t, "outbound|443||relay.example.com", relay.Cluster, "default cluster is Istio's outbound name")
	require.Equal(t, "Bearer sk-test-123", relay.Authorization)
	require.Equal(t, "env RELAY_API_KEY", relay.CredentialSource)
	require.Equal(t, "fake-provider", local.Cluster)
	require.Empty(t, local.Authorization)
	require.Equal(t, "none", local.CredentialSource)

	require.Equal(t, "chat", cfg.Match("/v1/chat/completions", noHeaders).Name, "first match wins")
	require.Equal(t, "rest", cfg.Match("/v1/embeddings", noHeaders).Name)
	require.Equal(t, 1, cfg.Match("/v1/embeddings", noHeaders).Index)
	require.Same(t, local, cfg.Match("/v1/embeddings", noHeaders).Provider)
	require.Nil(t, cfg.Match("/healthz", noHeaders))
}

func TestProviderOperations(t *testing.T) {
	cfg, err := Parse([]byte(`{"providers":[{"name":"a","host":"h","operations":["chat","responses"]},{"name":"b","host":"h"}],`+
		`"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a"}]}`), nil)
	require.NoError(t, err)
	a, b := cfg.Providers[0], cfg.Providers[1]
	for op := openai.Operation(0); op < openai.NumOperations; op++ {
		require.Equal(t, op == openai.OpChat || op == openai.OpResponses, a.Serves(op), op.String())
		require.True(t, b.Serves(op), "a provider without operations serves %s", op)
	}
}

func TestProviderPauses(t *testing.T) {
	cfg, err := Parse([]byte(`{"providers":[{"name":"a","host":"h","pauses":"provider"},{"name":"b","host":"h","pauses":"model"},{"name":"c","host":"h"}],`+
		`"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a"}]}`), nil)
	require.NoError(t, err)
	require.True(t, cfg.Providers[0].PausesWhole)
	require.False(t, cfg.Providers[1].PausesWhole)
	require.False(t, cfg.Providers[2].PausesWhole, "by default a model's exhausted limit pauses the model")
}

func TestDefaultClusterDropsPort(t *testing.T) {
	cfg, err := Parse([]byte(`{"providers":[{"name":"a","host":"api.example.com:8443"}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a"}]}`), nil)
	require.NoError(t, err)
	require.Equal(t, "outbound|443||api.example.com", cfg.Providers[0].Cluster)
}

func TestParseInvalid(t *testing.T) {
	want := map[string]string{
		"not-object":                  `config: must be a JSON object, not array`,
		"syntax":                      `config: invalid json at offset 15: unexpected character '}'`,
		"unknown-top":                 `route: unknown field (known: models, aliases, providers, routes, sidecar)`,
		"no-providers":                `providers: at least one provider is required`,
		"provider-no-host":            `providers[0].host: must not be empty`,
		"provider-bad-name":           `providers[0].name: "A b" may hold only lowercase letters, digits, '-' and '_'`,
		"priority-unknown-provider":   `routes[0].priority.models["high"].provider: unknown provider "z"`,
		"fallback-bymodel-unknown":    `routes[0].fallback.byModel["gpt-5"]: unknown model "gpt-5" (list it under models)`,
		"fallback-bymodel-alias":      `routes[0].fallback.byModel["fast"]: is an alias; name the model "a" instead`,
		"fallback-bymodel-not-array":  `routes[0].fallback.byModel["a"]: must be an array of fallback entries, not string`,
		"provider-reserved":           `providers[0].name: "shepherd" is reserved for the filter's own answers in metrics`,
		"provider-dup":                `providers[1].name: duplicate provider name "a"`,
		"provider-bad-host":           `providers[0].host: "x/y" is not a host name (letters, digits, '-', '.', optional :port)`,
		"provider-path":               `providers[0].pathPrefix: must start with '/'`,
		"provider-host-type":          `providers[0].host: must be a string, not number`,
		"provider-operations-unknown": `providers[0].operations[1]: unknown operation "embedding" (known: other, chat, completions, responses, embeddings, moderations, audio, images, files, batches, models)`,
		"provider-operations-dup":     `providers[0].operations[1]: duplicate operation "chat"`,
		"provider-operations-empty":   `providers[0].operations: must not be empty (leave it out to serve every operation)`,
		"provider-operations-type":    `providers[0].operations[1]: must be a string, not number`,
		"cred-both":                   `providers[0].credential: set either env or inline, not both`,
		"cred-empty":                  `providers[0].credential: set env or inline`,
		"cred-env-missing":            `providers[0].credential.env: environment variable "MISSING_KEY" is not set or empty`,
		"cred-crlf":                   `providers[0].credential.inline: holds characters not allowed in a header value`,
		"cred-unknown":                `providers[0].credential.file: unknown field (known: env, inline)`,
		"no-routes":                   `routes: at least one route is required`,
		"route-no-match":              `routes[0].match: is required`,
		"route-bad-prefix":            `routes[0].match.pathPrefix: may not hold spaces, control characters, '?' or '#'`,
		"route-unknown-provider":      `routes[0].provider: unknown provider "b"`,
		"route-dup":                   `routes[1].name: duplicate route name "r"`,
		"route-match-unknown":         `routes[0].match.prefix: unknown field (known: pathPrefix, headers)`,
		"alias-clash":                 `aliases["m"]: is also a listed model; an alias must be a new name`,
		"alias-unknown":               `aliases["fast"]: unknown model "x" (list it under models)`,
		"body-too-big":                `routes[0].maxBodyBytes: must be a whole number, not 1e9`,
		"route-usage-margin":          `routes[0].usageMarginTokens: must be between 0 and 1000000000, not -1`,
		"fallback-answer-too-big":     `routes[0].fallback.maxAnswerBytes: must be between 1024 and 33554432, not 33554433`,
		"fallback-attempts":           `routes[0].fallback.maxAttempts: must be between 1 and 10, not 11`,
		"fallback-backoff-order":      `routes[0].fallback.maxBackoffMs: must not be less than baseBackoffMs`,
		"fallback-bad-status":         `routes[0].fallback.statuses[0]: must be a 4xx or 5xx status`,
		"fallback-unknown-model":      `routes[1].fallback.models[0]: unknown model "x" (list it under models)`,
		"limits-bad-header":           `routes[0].limits.consumerHeader: "X Tenant" is not a lowercase header name`,
		"limits-negative":             `routes[0].limits.requestsPerMinute: must be between 0 and 1000000000, not -1`,
		"limits-consumers-too-many":   `routes[0].limits.maxConsumers: must be between 1 and 65536, not 65537`,
		"limits-none":                 `routes[0].limits: set requestsPerMinute or tokensPerMinute`,
		"model-bad-name":              `models["gpt 4"]: "gpt 4" may hold only visible ASCII characters other than '"', '\', ';' and '='`,
		"price-bad":                   `models["m"].input: pricing: usd "1.2.3": not a decimal number`,
		"price-missing-output":        `models["m"].output: is required when a model has prices (USD per million tokens)`,
		"provider-model-unknown":      `providers[0].models["gpt"]: unknown model "gpt" (list it under models)`,
		"route-both-providers":        `routes[0]: set either provider or providers, not both`,
		"route-default-model-unknown": `routes[0].defaultModel: unknown model "gpt-5" (list it under models)`,
		"route-priority-empty":        `routes[0].priority.models: must map at least one header value to a model`,
		"route-zero-weights":          `routes[0].providers: weights add up to 0; at least one must be positive`,
		"stream-usage-type":           `routes[0].streamUsage: must be true or false, not string`,
		"sidecar-no-cluster":          `sidecar.cluster: must not be empty`,
		"sidecar-poll-too-slow":       `sidecar.policyPollMs: must be between 0 and 1000, not 5000`,
		"sidecar-poll-too-fast":       `sidecar.policyPollMs: must be 0 (off) or at least 50`,
		"sidecar-unknown":             `sidecar.address: unknown field (known: cluster, token, timeoutMs, policyPollMs, reportIntervalMs, reportBatch, quotaReportMs)`,
		"sidecar-quota-report":        `sidecar.quotaReportMs: must be between 50 and 60000, not 10`,
		"sidecar-token-missing-env":   `sidecar.token.env: environment variable "SHEPHERD_FILTER_TOKEN" is not set or empty`,
		"sidecar-token-crlf":          `sidecar.token.inline: holds characters not allowed in a header value`,
		"global-no-sidecar":           `routes[0].globalLimits: needs the top-level sidecar section (the cluster of shepherd-sidecar)`,
		"global-bad-descriptor":       `routes[0].globalLimits.descriptors[1]: unknown descriptor "user" (known: route, provider, model, consumer)`,
		"global-dup-descriptor":       `routes[0].globalLimits.descriptors[1]: descriptor "route" is listed twice`,
		"global-empty-descriptors":    `routes[0].globalLimits.descriptors: must not be empty (leave it out for ["route"])`,
		"global-consumer-no-header":   `routes[0].globalLimits.consumerHeader: is required for the consumer descriptor (or set the route's consumer or limits.consumerHeader)`,
		"global-failure-mode":         `routes[0].globalLimits.failureMode: must be "open" or "closed", not "deny"`,
		"global-mode":                 `routes[0].globalLimits.mode: must be "check" or "quota", not "rlqs"`,
		"global-timeout":              `routes[0].globalLimits.timeoutMs: must be between 1 and 10000, not 0`,
		"canary-one-provider":         `routes[0].canary: needs a route with two or more providers`,
		"canary-unknown-provider":     `routes[0].canary.provider: provider "c" is not one of the route's providers`,
		"canary-bad-header":           `routes[0].canary.stickyHeader: "X-User" is not a lowercase header name`,
		"consumer-and-limits-header":  `routes[0].limits.consumerHeader: set either the route's consumer or consumerHeader, not both`,
		"consumer-bad-header":         `routes[0].consumer.header: "X-Tenant" is not a lowercase header name`,
		"consumer-bad-source":         `routes[0].consumer.from: unknown source "cert" (known: workload, peer, claim, header)`,
		"consumer-claim-bad":          `routes[0].consumer.claim: "a b" must be 1 to 128 visible ASCII characters`,
		"consumer-claim-missing":      `routes[0].consumer.claim: is required when the consumer comes from a claim`,
		"consumer-claim-not-claim":    `routes[0].consumer.claim: applies only to "from": "claim"`,
		"consumer-header-missing":     `routes[0].consumer.header: is required when the consumer comes from a header`,
		"consumer-no-from":            `routes[0].consumer.from: must not be empty`,
		"consumer-not-object":         `routes[0].consumer: must be an object, not string`,
		"consumer-unknown":            `routes[0].consumer.trustDomain: unknown field (known: from, header, claim)`,
		"provider-pauses-unknown":     `providers[0].pauses: unknown scope "account" (known: model, provider)`,
		"provider-pauses-type":        `providers[0].pauses: must be a string, not number`,
	}
	files, err := filepath.Glob("testdata/invalid/*.json")
	require.NoError(t, err)
	require.Len(t, files, len(want), "one fixture per case")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			exp, ok := want[name]
			require.True(t, ok, "no expected error for fixture %s", name)
			_, err = Parse(data, nil)
			require.EqualError(t, err, exp)
		})
	}
}

func TestParseBoundsEntries(t *testing.T) {
	many := func(n int, item func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = item(i)
		}
		return strings.Join(parts, ",")
	}
	provider := func(i int) string { return `{"name":"p` + strconv.Itoa(i) + `","host":"h"}` }
	route := func(i int) string {
		return `{"name":"r` + strconv.Itoa(i) + `","match":{"pathPrefix":"/"},"provider":"p0"}`
	}
	model := func(i int) string { return `"m` + strconv.Itoa(i) + `":{}` }
	doc := func(models, providers, routes int) []byte {
		return []byte(`{"models":{` + many(models, model) + `},"providers":[` + many(providers, provider) +
			`],"routes":[` + many(routes, route) + `]}`)
	}
	_, err := Parse(doc(MaxEntries, MaxEntries, MaxEntries), nil)
	require.NoError(t, err)
	_, err = Parse(doc(MaxEntries+1, 1, 1), nil)
	require.EqualError(t, err, "models: at most 4096 models, not 4097")
	_, err = Parse(doc(1, MaxEntries+1, 1), nil)
	require.EqualError(t, err, "providers: at most 4096 providers, not 4097")
	_, err = Parse(doc(1, 1, MaxEntries+1), nil)
	require.EqualError(t, err, "routes: at most 4096 routes, not 4097")
}

func TestEmptyAndHugeConfig(t *testing.T) {
	_, err := Parse([]byte("  \n"), nil)
	require.EqualError(t, err, "config: empty; expected a JSON object with providers and routes")
	_, err = Parse(make([]byte, MaxConfigSize+1), nil)
	require.EqualError(t, err, "config: larger than 1048576 bytes")
}

func TestCredentialNeverInErrors(t *testing.T) {
	const secret = "sk-live-very-secret"
	cases := []string{
		`{"providers":[{"name":"a","host":"x","credential":{"inline":"` + secret + `\u0000"}}],"routes":[]}`,
		`{"providers":[{"name":"a","host":"x","credential":{"env":"K","inline":"` + secret + `"}}],"routes":[]}`,
		`{"providers":[{"name":"a","host":"x","credential":{"env":"K"}}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"b"}]}`,
	}
	env := envOf(map[string]string{"K": secret})
	for _, c := range cases {
		_, err := Parse([]byte(c), env)
		require.Error(t, err)
		require.NotContains(t, err.Error(), secret)
	}
	// An env variable whose value is unusable is reported by name, not value.
	_, err := Parse([]byte(`{"providers":[{"name":"a","host":"x","credential":{"env":"K"}}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a"}]}`),
		envOf(map[string]string{"K": secret + "\n"}))
	require.EqualError(t, err, `providers[0].credential.env: environment variable "K" holds characters not allowed in a header value`)
}

func TestSidecarToken(t *testing.T) {
	const secret = "filter-token-0123456789"
	doc := func(token string) []byte {
		return []byte(`{"sidecar":{"cluster":"sc"` + token + `},"providers":[{"name":"a","host":"x"}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a"}]}`)
	}
	for _, tc := range []struct {
		name, token, source string
		metadata            [][2]string
	}{
		{"from the proxy's environment", `,"token":{"env":"SHEPHERD_FILTER_TOKEN"}`, "env SHEPHERD_FILTER_TOKEN",
			[][2]string{{"x-shepherd-filter-token", secret}}},
		{"inline", `,"token":{"inline":"` + secret + `"}`, "inline", [][2]string{{"x-shepherd-filter-token", secret}}},
		{"none: calls carry no metadata", ``, "none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(doc(tc.token), envOf(map[string]string{"SHEPHERD_FILTER_TOKEN": secret}))
			require.NoError(t, err)
			require.Equal(t, tc.metadata, cfg.Sidecar.Metadata)
			require.Equal(t, tc.source, cfg.Sidecar.TokenSource)
		})
	}
	_, err := Parse(doc(`,"token":{"env":"T"}`), envOf(map[string]string{"T": secret + "\r\n"}))
	require.EqualError(t, err, `sidecar.token.env: environment variable "T" holds characters not allowed in a header value`)
	require.NotContains(t, err.Error(), secret)
	_, err = Parse(doc(`,"token":{"inline":"`+secret+`","env":"T"}`), nil)
	require.EqualError(t, err, `sidecar.token: set either env or inline, not both`)
}

func TestValidateAssumesEnvSet(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/full.json")
	require.NoError(t, err)
	require.NoError(t, Validate(data))
	_, err = Parse(data, nil)
	require.EqualError(t, err, `providers[0].credential.env: environment variable "RELAY_API_KEY" is not set or empty`)
}

func TestParseFullExample(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/example.json")
	require.NoError(t, err)
	cfg, err := Parse(data, func(string) (string, bool) { return "k", true })
	require.NoError(t, err)

	require.Len(t, cfg.Models, 5)
	require.Equal(t, "claude-sonnet-4.5", cfg.Models[0].Name, "models are sorted")
	require.Equal(t, "gemini-2.5-flash", cfg.Model("fast").Name, "aliases resolve")
	require.Equal(t, "other", cfg.ModelLabel("gpt-9"), "unlisted models share one label")
	require.Equal(t, "gpt-4.1", cfg.ModelLabel("gpt-4.1"))
	cost, known := cfg.Prices.Cost("gpt-4.1", 1_000_000, 0, 1_000_000)
	require.True(t, known)
	require.EqualValues(t, 10_000_000, cost, "$2 in + $8 out per million")
	_, known = cfg.Prices.Cost("unpriced-model", 1, 0, 1)
	require.False(t, known)
	require.False(t, cfg.Model("unpriced-model").Priced)

	relay := cfg.Providers[0]
	require.Equal(t, "anthropic/claude-sonnet-4.5", relay.ModelName("claude-sonnet-4.5"))
	require.Equal(t, "gpt-4.1", relay.ModelName("gpt-4.1"))

	chat := cfg.Routes[1]
	require.Equal(t, []Backend{{relay, 90}, {cfg.Providers[1], 10}}, chat.Backends)
	require.Same(t, relay, chat.Provider)
	require.Equal(t, "gpt-4.1", chat.DefaultModel.Name)
	require.Equal(t, "x-priority", chat.PriorityHeader)
	require.Equal(t, "claude-sonnet-4.5", chat.Priority["high"].Name)
	require.EqualValues(t, 600, chat.Limits.Requests.PerMinute)
	require.EqualValues(t, 200000, chat.Limits.Tokens.PerMinute)
	require.Equal(t, "x-tenant", chat.Limits.ConsumerHeader)
	require.EqualValues(t, 2048, chat.Limits.DefaultMaxTokens)
	require.Len(t, chat.Fallback.Chain, 2)
	require.Equal(t, "deepseek-v3.2", chat.Fallback.Chain[0].Model.Name)
	require.Nil(t, chat.Fallback.Chain[0].Provider, "same provider")
	require.Same(t, cfg.Providers[1], chat.Fallback.Chain[1].Provider)
	require.Equal(t, []int{429, 500, 502, 503, 504}, chat.Fallback.Policy.Statuses)
	require.EqualValues(t, 200_000_000, chat.Fallback.Policy.BaseBackoff)
	require.Equal(t, 20, chat.Fallback.Budget.Percent)
	require.True(t, chat.StreamUsage)
	require.True(t, chat.NeedsBody)
	require.Equal(t, DefaultMaxBodyBytes, chat.MaxBodyBytes)

	emb := cfg.Routes[0]
	require.Equal(t, []HeaderMatch{{"x-team", "search"}}, emb.Headers)
	require.Equal(t, 65536, emb.MaxBodyBytes)
	require.True(t, emb.NeedsBody, "aliases exist, so every route reads the model")

	hdr := func(v string) func(string) (string, bool) {
		return func(n string) (string, bool) { return v, n == "x-team" }
	}
	require.Same(t, emb, cfg.Match("/v1/embeddings", hdr("search")))
	require.Same(t, chat, cfg.Match("/v1/embeddings", hdr("other")), "a header that does not match falls through")
	require.Same(t, emb, cfg.Match("/v1/chat/completions", hdr("search")), "first match wins")
	require.Nil(t, cfg.Match("/healthz", hdr("search")))
}

func TestHeadersOnlyRouteNeedsNoBody(t *testing.T) {
	cfg, err := Parse([]byte(`{"providers":[{"name":"a","host":"x"}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a","streamUsage":false,"limits":{"requestsPerMinute":5}}]}`), nil)
	require.NoError(t, err)
	require.False(t, cfg.Routes[0].NeedsBody)
}

func TestParseSidecarGlobalLimitsCanary(t *testing.T) {
	cfg, err := Parse([]byte(`{
  "sidecar": {"cluster": "shepherd-sidecar", "policyPollMs": 250},
  "providers": [{"name": "a", "host": "x"}, {"name": "b", "host": "y"}],
  "routes": [
    {"name": "chat", "match": {"pathPrefix": "/v1/"}, "providers": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}],
     "limits": {"requestsPerMinute": 100, "consumerHeader": "x-tenant"},
     "globalLimits": {"domain": "llm", "descriptors": ["route", "provider", "consumer"], "tokens": true, "failureMode": "closed", "timeoutMs": 80},
     "canary": {"stickyHeader": "x-user"}},
    {"name": "quota", "match": {"pathPrefix": "/q/"}, "provider": "a", "globalLimits": {"mode": "quota", "failureMode": "closed"}},
    {"name": "rest", "match": {"pathPrefix": "/"}, "provider": "a", "globalLimits": {"mode": "check"}}
  ]}`), nil)
	require.NoError(t, err)
	require.Equal(t, &Sidecar{Cluster: "shepherd-sidecar", TimeoutMs: DefaultSidecarTimeoutMs, PolicyPollMs: 250,
		ReportIntervalMs: DefaultReportIntervalMs, ReportBatch: DefaultReportBatch, QuotaReportMs: DefaultQuotaReportMs, TokenSource: "none"}, cfg.Sidecar)
	chat := cfg.Routes[0]
	require.Equal(t, &GlobalLimits{Domain: "llm", Keys: []DescriptorKey{KeyRoute, KeyProvider, KeyConsumer},
		ConsumerHeader: "x-tenant", PerConsumer: true, Tokens: true, FailClosed: true, TimeoutMs: 80}, chat.GlobalLimits)
	require.Equal(t, &Canary{Provider: cfg.Providers[1], Header: "x-canary", StickyHeader: "x-user"}, chat.Canary,
		"the canary defaults to the last provider")
	require.Equal(t, &GlobalLimits{Domain: "shepherd", Keys: []DescriptorKey{KeyRoute}, FailClosed: true, TimeoutMs: DefaultSidecarTimeoutMs, Quota: true},
		cfg.Routes[1].GlobalLimits)
	rest := cfg.Routes[2]
	require.Equal(t, &GlobalLimits{Domain: "shepherd", Keys: []DescriptorKey{KeyRoute}, TimeoutMs: DefaultSidecarTimeoutMs}, rest.GlobalLimits,
		"defaults: check mode, domain shepherd, the route descriptor, fail open, the sidecar's timeout")
	require.Nil(t, rest.Canary)
}

// TestDocumentedExampleValidates keeps docs/CONFIG.md honest: its complete
// example must pass the validator.
func TestDocumentedExampleValidates(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	require.NoError(t, err)
	text := string(doc)
	start := strings.Index(text, "## A complete example")
	require.GreaterOrEqual(t, start, 0)
	open := strings.Index(text[start:], "```json\n")
	require.GreaterOrEqual(t, open, 0)
	body := text[start+open+len("```json\n"):]
	example := body[:strings.Index(body, "```")]
	require.NoError(t, Validate([]byte(example)))
}

// TestPriorityProviderAndChainsPerModel: a priority value is a model name or
// {"model", "provider"}; fallback.byModel gives listed models their own chain.
func TestPriorityProviderAndChainsPerModel(t *testing.T) {
	cfg, err := Parse([]byte(`{"models": {"a": {}, "b": {}, "c": {}}, "aliases": {"fast": "c"},
	  "providers": [{"name": "p", "host": "p.example.com"}, {"name": "q", "host": "q.example.com"}],
	  "routes": [{"name": "r", "match": {"pathPrefix": "/"}, "provider": "p",
	    "priority": {"models": {"high": {"model": "b", "provider": "q"}, "low": "c"}},
	    "fallback": {"models": ["c"], "byModel": {"b": [{"model": "a", "provider": "p"}, "c"], "a": []}}}]}`), nil)
	require.NoError(t, err)
	r := cfg.Routes[0]
	require.Equal(t, "b", r.Priority["high"].Name)
	require.Equal(t, "q", r.PriorityProvider["high"].Name)
	require.Equal(t, "c", r.Priority["low"].Name)
	require.NotContains(t, r.PriorityProvider, "low")
	f := r.Fallback
	b, a, c := cfg.Model("b"), cfg.Model("a"), cfg.Model("c")
	require.Len(t, f.ChainFor(b), 2)
	require.Equal(t, "a", f.ChainFor(b)[0].Model.Name)
	require.Equal(t, "p", f.ChainFor(b)[0].Provider.Name)
	require.Empty(t, f.ChainFor(a), "an empty chain: no fallback for a")
	require.Equal(t, f.Chain, f.ChainFor(c))
	require.Equal(t, f.Chain, f.ChainFor(nil))
}

func TestParseConsumer(t *testing.T) {
	const head = `{"sidecar":{"cluster":"sc"},"providers":[{"name":"a","host":"x"}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a",`
	const tail = `"limits":{"requestsPerMinute":10},"globalLimits":{"descriptors":["route","consumer"]}}]}`
	for _, tc := range []struct {
		name, route string
		want        Consumer
		header      string // limits' and globalLimits' consumerHeader
	}{
		{"workload", `"consumer":{"from":"workload"},`, Consumer{From: ConsumerFromWorkload, Header: "x-tenant"}, ""},
		{"workload drops a named header", `"consumer":{"from":"workload","header":"x-team"},`, Consumer{From: ConsumerFromWorkload, Header: "x-team"}, ""},
		{"peer", `"consumer":{"from":"peer"},`, Consumer{From: ConsumerFromPeer, Header: "x-tenant"}, ""},
		{"claim", `"consumer":{"from":"claim","claim":"sub"},`, Consumer{From: ConsumerFromClaim, Header: "x-tenant", Claim: "sub"}, ""},
		{"header", `"consumer":{"from":"header","header":"x-tenant"},`, Consumer{From: ConsumerFromHeader, Header: "x-tenant"}, "x-tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head+tc.route+tail), nil)
			require.NoError(t, err)
			r := cfg.Routes[0]
			require.Equal(t, tc.want, r.Consumer)
			require.True(t, r.Limits.PerConsumer)
			require.True(t, r.GlobalLimits.PerConsumer)
			require.Equal(t, tc.header, r.Limits.ConsumerHeader)
			require.Equal(t, tc.header, r.GlobalLimits.ConsumerHeader)
		})
	}
	t.Run("consumerHeader is the header form's alias", func(t *testing.T) {
		cfg, err := Parse([]byte(head+`"limits":{"requestsPerMinute":10,"consumerHeader":"x-tenant"}}]}`), nil)
		require.NoError(t, err)
		require.Equal(t, Consumer{From: ConsumerFromHeader, Header: "x-tenant"}, cfg.Routes[0].Consumer)
		require.True(t, cfg.Routes[0].Limits.PerConsumer)
	})
	t.Run("no consumer keeps one bucket per route", func(t *testing.T) {
		cfg, err := Parse([]byte(head+`"limits":{"requestsPerMinute":10}}]}`), nil)
		require.NoError(t, err)
		require.Equal(t, ConsumerNone, cfg.Routes[0].Consumer.From)
		require.False(t, cfg.Routes[0].Limits.PerConsumer)
	})
}
