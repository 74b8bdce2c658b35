package model

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/body"
	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/openai"
)

const doc = `{"models": {"a": {}, "b": {}, "c": {}}, "aliases": {"fast": "c"},
  "providers": [{"name": "p", "host": "p.example.com"}, {"name": "q", "host": "q.example.com", "operations": ["chat"]}],
  "routes": [
    {"name": "r", "match": {"pathPrefix": "/r/"}, "provider": "p", "defaultModel": "a",
     "priority": {"models": {"high": {"model": "b", "provider": "q"}, "low": "c"}}},
    {"name": "plain", "match": {"pathPrefix": "/"}, "provider": "p"}]}`

func mustConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(doc), nil)
	require.NoError(t, err)
	return cfg
}

func TestPriorityAndPriorityProvider(t *testing.T) {
	cfg := mustConfig(t)
	r, plain := cfg.Routes[0], cfg.Routes[1]
	for _, tc := range []struct {
		name, priority string
		route          *config.Route
		op             openai.Operation
		model          string // "" for none
		provider       string // "" for none
	}{
		{"model and provider", "high", r, openai.OpChat, "b", "q"},
		{"provider that does not serve the operation", "high", r, openai.OpEmbeddings, "b", ""},
		{"model only", "low", r, openai.OpChat, "c", ""},
		{"unknown value", "urgent", r, openai.OpChat, "", ""},
		{"empty value", "", r, openai.OpChat, "", ""},
		{"route without priority", "high", plain, openai.OpChat, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Priority(tc.route, tc.priority)
			if tc.model == "" {
				require.Nil(t, m)
			} else {
				require.NotNil(t, m)
				require.Equal(t, tc.model, m.Name)
			}
			p := PriorityProvider(tc.route, tc.priority, tc.op)
			if tc.provider == "" {
				require.Nil(t, p)
			} else {
				require.NotNil(t, p)
				require.Equal(t, tc.provider, p.Name)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	cfg := mustConfig(t)
	r, plain := cfg.Routes[0], cfg.Routes[1]
	for _, tc := range []struct {
		name      string
		route     *config.Route
		priority  string
		generates bool
		body      string
		requested string
		listed    bool
	}{
		{"body names a listed model", plain, "", true, `{"model":"b"}`, "b", true},
		{"body names an alias", plain, "", true, `{"model":"fast"}`, "c", true},
		{"escaped alias is resolved", plain, "", true, `{"model":"f\u0061st"}`, "c", true},
		{"unlisted model kept as given", plain, "", true, `{"model":"gpt-x"}`, "gpt-x", false},
		{"escaped unlisted model decoded", plain, "", true, `{"model":"gpt\u002dx"}`, "gpt-x", false},
		{"no model, no default", plain, "", true, `{}`, "", false},
		{"priority beats the body", r, "low", true, `{"model":"b"}`, "c", true},
		{"unknown priority falls to the body", r, "urgent", true, `{"model":"b"}`, "b", true},
		{"default when the body names none", r, "", true, `{}`, "a", true},
		{"body beats the default", r, "", true, `{"model":"fast"}`, "c", true},
		{"non-generating call ignores priority", r, "low", false, `{"model":"text-embedding-3"}`, "text-embedding-3", false},
		{"non-generating call takes no default", r, "", false, `{}`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.body)
			req, err := body.InspectRequest(raw)
			require.NoError(t, err)
			c := Select(cfg, tc.route, tc.priority, tc.generates, &req, raw)
			require.Equal(t, tc.requested, c.Requested)
			if tc.listed {
				require.NotNil(t, c.Model)
				require.Equal(t, tc.requested, c.Model.Name)
			} else {
				require.Nil(t, c.Model)
			}
		})
	}
}

// TestSelectListedModelDoesNotAllocate: a listed model (or alias) is looked up
// in place, so the common request costs no allocation here.
func TestSelectListedModelDoesNotAllocate(t *testing.T) {
	cfg := mustConfig(t)
	raw := []byte(`{"model":"fast","messages":[]}`)
	req, err := body.InspectRequest(raw)
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(100, func() {
		_ = Select(cfg, cfg.Routes[0], "", true, &req, raw)
		_ = Select(cfg, cfg.Routes[0], "high", true, &req, raw)
	})
	require.Zero(t, allocs)
}
