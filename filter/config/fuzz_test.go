package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzSecret is what every environment variable holds while fuzzing.
const fuzzSecret = "sk-env-FUZZ-secret-value"

// FuzzParse feeds pluginConfig documents to Parse: it never panics, a config it
// accepts validates again (and parses the same way twice), and no error text
// holds a credential: neither the environment's value nor an inline one.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		require.NoError(f, err)
		for _, file := range files {
			data, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(data)
		}
	}
	f.Add([]byte(`{"providers":[{"name":"a","host":"x","credential":{"inline":"sk-inline-FUZZ-1234"}}],` +
		`"routes":[{"name":"r","match":{"pathPrefix":"/","headers":{"x-team":"a"}},"provider":"a"}]}`))
	f.Add([]byte(`{"providers":[{"name":"a","host":"x","credential":{"inline":"sk-inline-FUZZ-1234"}}],"routes":[{"name":"r"}]}`))
	f.Add([]byte(`{"providers":[{"name":"a","host":"x","credential":{"env":"K"}}],"routes":[{"name":"r","match":{"pathPrefix":"/"},"provider":"b"}]}`))
	env := func(string) (string, bool) { return fuzzSecret, true }
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, env)
		if err != nil {
			msg := err.Error()
			require.NotContains(t, msg, fuzzSecret)
			for _, v := range inlineCredentials(data) {
				// A value that also appears elsewhere in the document may be
				// quoted for that other field; only a credential-only value
				// must never show.
				if len(v) >= 6 && strings.Count(string(data), v) == 1 {
					require.NotContains(t, msg, v, "the error quotes an inline credential")
				}
			}
			return
		}
		require.NotNil(t, cfg)
		require.NoError(t, Validate(data), "an accepted config validates again")
		again, err := Parse(data, env)
		require.NoError(t, err)
		require.Equal(t, len(cfg.Providers), len(again.Providers))
		require.Equal(t, len(cfg.Routes), len(again.Routes))
		for _, p := range cfg.Providers {
			require.True(t, validHeaderValue(p.Host), "host %q", p.Host)
			require.True(t, validHeaderValue(p.Cluster), "cluster %q", p.Cluster)
			require.True(t, validHeaderValue(p.Authorization), "the credential is a valid header value")
		}
	})
}

// inlineCredentials returns providers[*].credential.inline of a document that
// decodes as JSON (none otherwise).
func inlineCredentials(data []byte) []string {
	var doc struct {
		Providers []struct {
			Credential struct {
				Inline string `json:"inline"`
			} `json:"credential"`
		} `json:"providers"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return nil
	}
	var out []string
	for _, p := range doc.Providers {
		if p.Credential.Inline != "" {
			out = append(out, p.Credential.Inline)
		}
	}
	return out
}

// TestHeaderInjectionRejected: every config value that ends up in a header
// (or in a header's name) refuses CR, LF and other characters a header cannot
// carry, naming the field.
func TestHeaderInjectionRejected(t *testing.T) {
	const provider = `{"name":"a","host":"x.example.com"}`
	route := func(extra string) string {
		return `{"name":"r","match":{"pathPrefix":"/v1/"},"provider":"a"` + extra + `}`
	}
	doc := func(providers, routes string) string {
		return `{"providers":[` + providers + `],"routes":[` + routes + `]}`
	}
	for _, tc := range []struct {
		name, doc, field string
	}{
		{"host", doc(`{"name":"a","host":"x.example.com\r\nx-evil: 1"}`, route("")), "providers[0].host"},
		{"host-space", doc(`{"name":"a","host":"x.example.com x"}`, route("")), "providers[0].host"},
		{"cluster", doc(`{"name":"a","host":"x","cluster":"c\r\nx-evil: 1"}`, route("")), "providers[0].cluster"},
		{"cluster-nul", doc(`{"name":"a","host":"x","cluster":"c\u0000"}`, route("")), "providers[0].cluster"},
		{"provider-path", doc(`{"name":"a","host":"x","pathPrefix":"/v1\r\nx-evil: 1"}`, route("")), "providers[0].pathPrefix"},
		{"inline-credential", doc(`{"name":"a","host":"x","credential":{"inline":"sk\nx-evil: 1"}}`, route("")), "providers[0].credential.inline"},
		{"match-header-name", doc(provider, `{"name":"r","match":{"pathPrefix":"/v1/","headers":{"x-team\r\nx-evil":"a"}},"provider":"a"}`), "routes[0].match.headers"},
		{"match-header-name-upper", doc(provider, `{"name":"r","match":{"pathPrefix":"/v1/","headers":{"X-Team":"a"}},"provider":"a"}`), "routes[0].match.headers"},
		{"match-header-value", doc(provider, `{"name":"r","match":{"pathPrefix":"/v1/","headers":{"x-team":"a\r\nx-evil: 1"}},"provider":"a"}`), "routes[0].match.headers"},
		{"route-path", doc(provider, `{"name":"r","match":{"pathPrefix":"/v1/\r\n"},"provider":"a"}`), "routes[0].match.pathPrefix"},
		{"consumer-header", doc(provider, route(`,"limits":{"requestsPerMinute":1,"consumerHeader":"x-tenant\n"}`)), "routes[0].limits.consumerHeader"},
		{"priority-header", doc(provider, route(`,"priority":{"header":"x-priority\r\n","models":{"high":"m"}}`)), "routes[0].priority"},
		{"canary-header", doc(provider+`,{"name":"b","host":"y"}`,
			`{"name":"r","match":{"pathPrefix":"/v1/"},"providers":[{"name":"a","weight":1},{"name":"b","weight":1}],"canary":{"header":"x-canary\r\n"}}`),
			"routes[0].canary.header"},
		{"sticky-header", doc(provider+`,{"name":"b","host":"y"}`,
			`{"name":"r","match":{"pathPrefix":"/v1/"},"providers":[{"name":"a","weight":1},{"name":"b","weight":1}],"canary":{"stickyHeader":"x user"}}`),
			"routes[0].canary.stickyHeader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), nil)
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), tc.field), "error %q does not name %s", err, tc.field)
		})
	}
}
