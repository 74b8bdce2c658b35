//go:build !wasip1

package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
)

// configAtMaxima is a pluginConfig with every bound docs/CONFIG.md states at its
// largest allowed value: 4096 models, providers and routes, names of the longest
// length, and one route whose every number is at its maximum. The figures are
// the documented ones, written out, so a runtime bound tighter than the
// validator's (or than the docs) fails to configure here.
func configAtMaxima() string {
	var b strings.Builder
	b.WriteString(`{"sidecar":{"cluster":"sidecar","timeoutMs":10000,"policyPollMs":1000,"reportIntervalMs":60000,"reportBatch":10000,"quotaReportMs":60000},"models":{`)
	model := func(i int) string { return "m" + strconv.Itoa(i) }
	longModel := strings.Repeat("M", 128)
	b.WriteString(`"` + longModel + `":{"input":1,"output":2}`)
	for i := 1; i < 4096; i++ {
		b.WriteString(`,"` + model(i) + `":{}`)
	}
	b.WriteString(`},"aliases":{"fast":"m1"},"providers":[`)
	longProvider := strings.Repeat("p", 64)
	b.WriteString(`{"name":"` + longProvider + `","host":"a.example.com","models":{"` + longModel + `":"upstream-name"}}`)
	for i := 1; i < 4096; i++ {
		b.WriteString(`,{"name":"p` + strconv.Itoa(i) + `","host":"h` + strconv.Itoa(i) + `"}`)
	}
	longRoute := strings.Repeat("r", 64)
	b.WriteString(`],"routes":[{"name":"` + longRoute + `","match":{"pathPrefix":"/v1/max/","headers":{"x-team":"t"}},` +
		`"providers":[{"name":"` + longProvider + `","weight":10000},{"name":"p1","weight":10000}],` +
		`"defaultModel":"` + longModel + `","priority":{"header":"x-priority","models":{"high":"m2"}},` +
		`"maxBodyBytes":67108864,"usageMarginTokens":1000000000,` +
		`"limits":{"requestsPerMinute":1000000000,"tokensPerMinute":1000000000,"requestBurst":1000000000,"tokenBurst":1000000000,` +
		`"consumerHeader":"x-tenant","maxConsumers":65536,"defaultMaxTokens":10000000},` +
		`"globalLimits":{"descriptors":["route","provider","model","consumer"],"consumerHeader":"x-user","tokens":true,"timeoutMs":10000},` +
		`"canary":{"provider":"p1","stickyHeader":"x-user"},` +
		`"fallback":{"models":["m3",{"model":"m4","provider":"p2"}],"maxAttempts":10,"baseBackoffMs":3600000,"maxBackoffMs":3600000,` +
		`"retryAfterCapMs":3600000,"budgetMs":3600000,"retryBudgetPercent":1000,"timeoutMs":600000,"maxAnswerBytes":33554432}}`)
	for i := 1; i < 4096; i++ {
		b.WriteString(`,{"name":"r` + strconv.Itoa(i) + `","match":{"pathPrefix":"/v1/` + strconv.Itoa(i) + `/"},"provider":"p` + strconv.Itoa(i) + `"}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

func TestConfigAtEveryMaximumConfigures(t *testing.T) {
	cfg := configAtMaxima()
	require.LessOrEqual(t, len(cfg), config.MaxConfigSize)
	parsed, err := config.Parse([]byte(cfg), nil)
	require.NoError(t, err, "the validator (shepherdctl validate) accepts it")
	require.Len(t, parsed.Routes, 4096)
	require.Equal(t, 65536, parsed.Routes[0].Limits.MaxConsumers)

	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(&vm{}).
		WithPluginConfiguration([]byte(cfg)))
	defer release()
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin(), "logs: %v", host.GetLogs(proxywasm.LogLevelCritical))
}

// Each bound one past its maximum is refused by the validator, so the maxima
// above are the bounds, not just values that happen to pass.
func TestConfigOnePastEachMaximumIsRefused(t *testing.T) {
	base := configAtMaxima()
	for _, tc := range []struct{ from, to, err string }{
		{`"maxConsumers":65536`, `"maxConsumers":65537`, "maxConsumers: must be between 1 and 65536"},
		{`"maxBodyBytes":67108864`, `"maxBodyBytes":67108865`, "maxBodyBytes: must be between 1024 and 67108864"},
		{`"usageMarginTokens":1000000000`, `"usageMarginTokens":1000000001`, "usageMarginTokens: must be between 0 and 1000000000"},
		{`"requestsPerMinute":1000000000`, `"requestsPerMinute":1000000001`, "requestsPerMinute: must be between 0 and 1000000000"},
		{`"tokenBurst":1000000000`, `"tokenBurst":1000000001`, "tokenBurst: must be between 0 and 1000000000"},
		{`"defaultMaxTokens":10000000`, `"defaultMaxTokens":10000001`, "defaultMaxTokens: must be between 1 and 10000000"},
		{`"maxAttempts":10`, `"maxAttempts":11`, "maxAttempts: must be between 1 and 10"},
		{`"budgetMs":3600000`, `"budgetMs":3600001`, "budgetMs: must be between 1 and 3600000"},
		{`"retryBudgetPercent":1000`, `"retryBudgetPercent":1001`, "retryBudgetPercent: must be between 0 and 1000"},
		{`"timeoutMs":600000`, `"timeoutMs":600001`, "timeoutMs: must be between 1 and 600000"},
		{`"maxAnswerBytes":33554432`, `"maxAnswerBytes":33554433`, "maxAnswerBytes: must be between 1024 and 33554432"},
		{`"weight":10000}`, `"weight":10001}`, "weight: must be between 0 and 10000"},
		{`"reportBatch":10000`, `"reportBatch":10001`, "reportBatch: must be between 1 and 10000"},
		{`"reportIntervalMs":60000`, `"reportIntervalMs":60001`, "reportIntervalMs: must be between 0 and 60000"},
		{`"policyPollMs":1000`, `"policyPollMs":1001`, "policyPollMs: must be between 0 and 1000"},
		{`"quotaReportMs":60000`, `"quotaReportMs":60001`, "quotaReportMs: must be between 50 and 60000"},
		{`"timeoutMs":10000}`, `"timeoutMs":10001}`, "timeoutMs: must be between 1 and 10000"},
		{`"` + strings.Repeat("p", 64) + `"`, `"` + strings.Repeat("p", 65) + `"`, "longer than 64 characters"},
		{`{"name":"r1",`, `{"name":"r1",` + `"x":1,`, "unknown field"},
		{`]}`, `,{"name":"extra","match":{"pathPrefix":"/"},"provider":"p1"}]}`, "at most 4096 routes"},
	} {
		t.Run(tc.to, func(t *testing.T) {
			cfg := strings.Replace(base, tc.from, tc.to, 1)
			require.NotEqual(t, base, cfg)
			_, err := config.Parse([]byte(cfg), nil)
			require.ErrorContains(t, err, tc.err)
		})
	}
}
