package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

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

	require.Equal(t, "chat", cfg.Match("/v1/chat/completions").Name, "first match wins")
	require.Equal(t, "rest", cfg.Match("/v1/embeddings").Name)
	require.Equal(t, 1, cfg.Match("/v1/embeddings").Index)
	require.Same(t, local, cfg.Match("/v1/embeddings").Provider)
	require.Nil(t, cfg.Match("/healthz"))
}

func TestDefaultClusterDropsPort(t *testing.T) {
	cfg, err := Parse([]byte(`{"providers":[{"name":"a","host":"api.example.com:8443"}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"a"}]}`), nil)
	require.NoError(t, err)
	require.Equal(t, "outbound|443||api.example.com", cfg.Providers[0].Cluster)
}

func TestParseInvalid(t *testing.T) {
	want := map[string]string{
		"not-object":             `config: must be a JSON object, not array`,
		"syntax":                 `config: invalid json at offset 15: unexpected character '}'`,
		"unknown-top":            `route: unknown field (known: providers, routes)`,
		"no-providers":           `providers: at least one provider is required`,
		"provider-no-host":       `providers[0].host: must not be empty`,
		"provider-bad-name":      `providers[0].name: "A b" may hold only lowercase letters, digits, '-' and '_'`,
		"provider-dup":           `providers[1].name: duplicate provider name "a"`,
		"provider-bad-host":      `providers[0].host: "x/y" is not a host name (letters, digits, '-', '.', optional :port)`,
		"provider-path":          `providers[0].pathPrefix: must start with '/'`,
		"provider-host-type":     `providers[0].host: must be a string, not number`,
		"cred-both":              `providers[0].credential: set either env or inline, not both`,
		"cred-empty":             `providers[0].credential: set env or inline`,
		"cred-env-missing":       `providers[0].credential.env: environment variable "MISSING_KEY" is not set or empty`,
		"cred-crlf":              `providers[0].credential.inline: holds characters not allowed in a header value`,
		"cred-unknown":           `providers[0].credential.file: unknown field (known: env, inline)`,
		"no-routes":              `routes: at least one route is required`,
		"route-no-match":         `routes[0].match: is required`,
		"route-bad-prefix":       `routes[0].match.pathPrefix: may not hold spaces, control characters, '?' or '#'`,
		"route-unknown-provider": `routes[0].provider: unknown provider "b"`,
		"route-dup":              `routes[1].name: duplicate route name "r"`,
		"route-match-unknown":    `routes[0].match.prefix: unknown field (known: pathPrefix)`,
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

func TestValidateAssumesEnvSet(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/full.json")
	require.NoError(t, err)
	require.NoError(t, Validate(data))
	_, err = Parse(data, nil)
	require.EqualError(t, err, `providers[0].credential.env: environment variable "RELAY_API_KEY" is not set or empty`)
}
