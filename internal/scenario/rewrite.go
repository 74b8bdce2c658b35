package scenario

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
)

const rewriteConfig = `{
  "providers": [
    {"name": "relay", "host": "relay.example.com", "pathPrefix": "/openai/v1", "cluster": "relay",
     "credential": {"env": "RELAY_API_KEY"}}
  ],
  "routes": [
    {"name": "chat", "match": {"pathPrefix": "/v1/"}, "provider": "relay"}
  ]
}`

// Rewrite: a chat completion sent to the application's usual endpoint reaches the
// configured provider with the provider's host, path and credential, and the
// client's own credential does not.
func Rewrite(t *testing.T, run Runner) {
	const key = "sk-relay-test-1234"
	provider := fakeprovider.New(fakeprovider.Options{Name: "relay", APIKey: key})
	app := fakeprovider.New(fakeprovider.Options{Name: "app-default"})
	mesh := run(t, Setup{
		PluginConfig:   rewriteConfig,
		Env:            map[string]string{"RELAY_API_KEY": key},
		Clusters:       map[string]string{"relay": Upstream(t, provider), "app": Upstream(t, app)},
		Routes:         map[string]string{"relay.example.com": "relay"},
		DefaultCluster: "app",
	})

	resp := mesh.Do(t, Request{
		Method: http.MethodPost, Path: "/v1/chat/completions", Authority: "api.openai.com",
		Header: http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer sk-client-own-key"}},
		Body:   `{"model":"gpt-4.1","messages":[{"role":"user","content":"hello"}]}`,
	})
	require.Equal(t, http.StatusOK, resp.Status, "body: %s", resp.Body)

	var out struct {
		Echo fakeprovider.Echo `json:"x_echo"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &out))
	require.Equal(t, "relay", out.Echo.Provider, "routed to the provider's cluster by the rewritten authority")
	require.Equal(t, "relay.example.com", out.Echo.Host)
	require.Equal(t, "/openai/v1/chat/completions", out.Echo.Path)
	require.EqualValues(t, 1, provider.Requests())
	require.Zero(t, app.Requests())
	got := provider.Last().Header.Values("Authorization")
	require.Equal(t, []string{"Bearer " + key}, got, "exactly the provider's credential")

	require.EqualValues(t, 1, mesh.Counter(t, telemetry.Name(telemetry.Requests,
		telemetry.LabelRoute, "chat", telemetry.LabelProvider, "relay", telemetry.LabelModel, "other", telemetry.LabelCode, "2xx")))
}

// PassThrough: requests no route matches are not touched.
func PassThrough(t *testing.T, run Runner) {
	app := fakeprovider.New(fakeprovider.Options{Name: "app-default"})
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
	mesh := run(t, Setup{
		PluginConfig:   `{"providers":[{"name":"relay","host":"relay.example.com","cluster":"relay"}],"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"relay"}]}`,
		Clusters:       map[string]string{"relay": Upstream(t, relay), "app": Upstream(t, app)},
		Routes:         map[string]string{"relay.example.com": "relay"},
		DefaultCluster: "app",
	})
	resp := mesh.Do(t, Request{
		Method: http.MethodPost, Path: "/internal/chat/completions", Authority: "app.internal",
		Header: http.Header{"Authorization": {"Bearer client-key"}},
		Body:   `{"model":"m"}`,
	})
	require.Equal(t, http.StatusOK, resp.Status)
	require.EqualValues(t, 1, app.Requests())
	require.Zero(t, relay.Requests())
	require.Equal(t, "app.internal", app.Last().Host)
	require.Equal(t, []string{"Bearer client-key"}, app.Last().Header.Values("Authorization"))
}
