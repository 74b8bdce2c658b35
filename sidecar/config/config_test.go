package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/sidecar/config"
)

func TestLoadValid(t *testing.T) {
	c, err := config.Load("testdata/valid.yaml")
	require.NoError(t, err)
	require.Len(t, c.Providers, 2)
	require.Equal(t, "authorization", c.Providers[0].Credential.Header)
	require.Equal(t, "Bearer ", *c.Providers[0].Credential.Prefix)
	require.Equal(t, "x-api-key", c.Providers[1].Credential.Header)
	require.Equal(t, "", *c.Providers[1].Credential.Prefix)
	p := c.Canary.Routes[0]
	require.Equal(t, []uint32{10, 25, 50, 100}, p.Steps)
	require.Equal(t, config.Duration(2*time.Minute), p.Interval)
	require.Equal(t, uint64(100), p.MinRequests)
	require.Equal(t, 0.02, *p.MaxErrorRate)
	require.Equal(t, 1.2, *p.MaxP99Ratio)
	require.Equal(t, 50.5, c.Budgets.Consumers[0].MonthlyUSD)
	require.Equal(t, config.Duration(30*time.Second), c.Health.Window)
	require.Equal(t, config.Duration(time.Minute), c.Health.Cooldown)
	require.Equal(t, config.DefaultMaxCooldown, c.Health.MaxCooldown)
	require.Equal(t, uint64(config.DefaultHealthMin), c.Health.MinRequests)
	require.Equal(t, config.Duration(10*time.Second), c.Credentials.PollInterval)
}

func TestEmptyHasDefaults(t *testing.T) {
	c := config.Empty()
	require.Empty(t, c.Providers)
	require.Equal(t, config.DefaultCooldown, c.Health.Cooldown)
	require.Equal(t, int64(1), *c.Health.MinRatelimitRemaining)
	require.Equal(t, config.DefaultPollInterval, c.Credentials.PollInterval)
	require.Equal(t, config.Reports{MaxOutcomeUSD: 10, MaxReportUSD: 100, PerCallerPerSecond: 50}, c.Reports)
	require.Empty(t, c.NeedsFilterToken(), "an empty config serves nothing worth a token")
}

// TestNeedsFilterToken names the setting that makes a sidecar refuse to start
// without a filter token.
func TestNeedsFilterToken(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", ""},
		{"health: {cooldown: 10s}", ""},
		{"providers: [{name: a}, {name: b, credential: {file: /k}}]", "providers[1].credential"},
		{"budgets: {routes: [{route: r, monthly_usd: 1}]}", "budgets.routes"},
		{"budgets: {consumers: [{consumer: c, monthly_usd: 1}]}", "budgets.consumers"},
		{"providers: [{name: a}, {name: b}]\ncanary: {routes: [{route: r, baseline: a, canary: b, steps: [50]}]}", "canary.routes"},
		{"providers: [{name: a}]", "providers"},
	} {
		c, err := config.Parse([]byte(tc.yaml))
		require.NoError(t, err, tc.yaml)
		require.Equal(t, tc.want, c.NeedsFilterToken(), tc.yaml)
	}
}

func TestPlanDefaults(t *testing.T) {
	c, err := config.Parse([]byte("providers: [{name: a}, {name: b}]\ncanary: {routes: [{route: r, baseline: a, canary: b, steps: [50]}]}\n"))
	require.NoError(t, err)
	p := c.Canary.Routes[0]
	require.Equal(t, config.DefaultInterval, p.Interval)
	require.Equal(t, uint64(config.DefaultMinRequests), p.MinRequests)
	require.Equal(t, config.DefaultErrorRate, *p.MaxErrorRate)
	require.Equal(t, config.DefaultP99Ratio, *p.MaxP99Ratio)
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"bad-step-order.yaml", "canary.routes[0].steps[2]: must be greater than the previous step"},
		{"bad-step-range.yaml", "canary.routes[0].steps[0]: must be between 1 and 100"},
		{"bad-unknown-provider.yaml", `canary.routes[0].canary: unknown provider "b"`},
		{"bad-same-provider.yaml", "canary.routes[0].canary: must differ from baseline"},
		{"bad-duplicate-provider.yaml", `providers[1].name: duplicate provider "a"`},
		{"bad-empty-credential.yaml", "providers[0].credential.file: must not be empty"},
		{"bad-budget.yaml", "budgets.routes[0].monthly_usd: must be greater than 0"},
		{"bad-consumer.yaml", "budgets.consumers[0].consumer: must not be empty"},
		{"bad-duration.yaml", `health.cooldown: must be a duration string such as "30s"`},
		{"bad-unknown-field.yaml", `parse: unknown field "credentials_file"`},
		{"bad-error-rate.yaml", "canary.routes[0].max_error_rate: must be between 0 and 1"},
		{"bad-cooldown.yaml", "health.max_cooldown: must not be less than health.cooldown"},
		{"bad-reports.yaml", "reports.max_report_usd: must not be less than reports.max_outcome_usd"},
		{"bad-reports-rate.yaml", "reports.per_caller_per_second: must be greater than 0 and at most 1000000"},
		{"bad-two-errors.yaml", "providers[0].name: must not be empty\nhealth.max_error_rate: must be greater than 0 and at most 1"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			_, err := config.Load(path)
			require.EqualError(t, err, "sidecar config "+path+": "+tt.want)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
