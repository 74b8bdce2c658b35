package ratelimit_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

func TestLookupSetTakesTheConfigsOrder(t *testing.T) {
	cfg, err := ratelimit.ParseConfig("set.yaml", []byte(`
domain: llm
descriptors:
  - key: model
    value: gpt
    rate_limit: {name: gpt, unit: second, requests_per_unit: 10}
    descriptors:
      - key: tier
        value: free
        rate_limit: {name: gpt-free, unit: second, requests_per_unit: 1}
  - key: tier
    descriptors:
      - key: model
        value: "claude-*"
        rate_limit: {name: tier-claude, unit: minute, requests_per_unit: 5}
      - key: region
        rate_limit: {name: tier-region, unit: hour, requests_per_unit: 7}
  - key: user
    rate_limit: {name: user, unit: day, requests_per_unit: 3}
`))
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		domain  string
		entries map[string]string
		want    string // limit name; "" for none
	}{
		{"one entry", "llm", map[string]string{"model": "gpt"}, "gpt"},
		{"nested as configured", "llm", map[string]string{"model": "gpt", "tier": "free"}, "gpt-free"},
		{"the other nesting through a key-only level and a wildcard", "llm", map[string]string{"model": "claude-3", "tier": "pro"}, "tier-claude"},
		{"key-only at both levels", "llm", map[string]string{"tier": "x", "region": "eu"}, "tier-region"},
		{"key-only top level", "llm", map[string]string{"user": "alice"}, "user"},
		{"an entry the path cannot take", "llm", map[string]string{"model": "gpt", "user": "alice"}, ""},
		{"a level without a limit", "llm", map[string]string{"tier": "x"}, ""},
		{"no value matches", "llm", map[string]string{"model": "llama"}, ""},
		{"unknown domain", "other", map[string]string{"model": "gpt"}, ""},
		{"empty set", "llm", map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := cfg.LookupSet(tc.domain, tc.entries)
			if tc.want == "" {
				require.Nil(t, l)
				return
			}
			require.NotNil(t, l)
			require.Equal(t, tc.want, l.Name)
		})
	}
}
