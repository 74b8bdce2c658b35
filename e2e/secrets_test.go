package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// TestCredentialsNeverLeak sends traffic that takes every path of the filter
// (success, fallback, local limits, refusals, bad input) and searches everything the
// proxy shows for the providers' credentials: client responses (headers and
// bodies), logs, and metrics. Only the providers may see them.
func TestCredentialsNeverLeak(t *testing.T) {
	const relayKey, backupKey = "sk-relay-SECRET-7f3a", "sk-backup-SECRET-91cc"
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay", APIKey: relayKey})
	backup := fakeprovider.New(fakeprovider.Options{Name: "backup", APIKey: backupKey})
	var logs bytes.Buffer
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(`{"models":{"gpt-4.1":{"input":2,"output":8},"deepseek-v3.2":{}},
		  "providers":[{"name":"relay","host":"relay.example.com","cluster":"relay","credential":{"env":"RELAY_KEY"}},
		               {"name":"backup","host":"backup.example.com","cluster":"backup","credential":{"env":"BACKUP_KEY"}}],
		  "routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"relay","maxBodyBytes":2048,
		             "limits":{"requestsPerMinute":1,"requestBurst":6},
		             "fallback":{"models":[{"model":"deepseek-v3.2","provider":"backup"}],"baseBackoffMs":1,"maxBackoffMs":2}}]}`),
		Workers: 2, Env: map[string]string{"RELAY_KEY": relayKey, "BACKUP_KEY": backupKey},
		Clusters:  map[string]string{"relay": scenario.Upstream(t, relay), "backup": scenario.Upstream(t, backup)},
		Routes:    map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
		StatsTags: statsTags(), LogWriter: &logs, LogLevel: "trace", CompilationCache: compileCache,
	})
	require.NoError(t, err)
	defer h.Close(context.Background())
	front := httptest.NewServer(h)
	defer front.Close()

	var seen bytes.Buffer
	send := func(body string, hdr ...string) int {
		req, _ := http.NewRequest(http.MethodPost, front.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("authorization", "Bearer client-own-key")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		resp.Header.Write(&seen)
		seen.Write(b)
		return resp.StatusCode
	}
	// The relay's answers, in order: success, 429, the stream, 503 (the bad
	// and too large requests never reach it). Faults are scripted, not sent
	// as request headers: every attempt of a request carries the client's
	// headers, so a header fault would reach the backup as well.
	relay.Script(fakeprovider.Fault{}, fakeprovider.Fault{Status: 429}, fakeprovider.Fault{}, fakeprovider.Fault{Status: 503})
	codes := []int{
		send(`{"model":"gpt-4.1","messages":[]}`),               // success
		send(`{"model":"gpt-4.1","messages":[]}`),               // 429 → fallback on backup
		send(`{"model":"gpt-4.1","stream":true,"messages":[]}`), // stream
		send(`{"model":`), // bad JSON
		send(`{"model":"gpt-4.1","pad":"` + strings.Repeat("x", 4096) + `"}`), // too large
		send(`{"model":"gpt-4.1","messages":[]}`),                             // 503 → fallback
		send(`{"model":"gpt-4.1","messages":[]}`),                             // over the local limit
	}
	require.Equal(t, []int{200, 200, 200, 400, 413, 200, 429}, codes)
	require.EqualValues(t, 2, backup.Requests(), "both fallbacks reached the backup, with its own key")

	var metrics bytes.Buffer
	h.WritePrometheus(&metrics)
	var hostLogs strings.Builder
	for _, l := range h.Logs() {
		hostLogs.WriteString(l.Text + "\n")
	}
	for name, out := range map[string]string{
		"client responses": seen.String(), "log output": logs.String(), "log ring": hostLogs.String(), "metrics": metrics.String(),
	} {
		for _, secret := range []string{relayKey, backupKey, "SECRET"} {
			require.NotContains(t, out, secret, "%s contain a credential", name)
		}
	}
	// And the client's own key never reached a provider.
	require.Equal(t, []string{"Bearer " + relayKey}, relay.Last().Header.Values("Authorization"))
}

// TestInternalHeadersAreStripped: headers in shepherd's own namespace cannot be
// injected by clients: the provider never sees them, and the client sees only the
// ones the filter set.
func TestInternalHeadersAreStripped(t *testing.T) {
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
	_, url := lifecycleHost(t, `{"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],`+
		`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`, scenario.Upstream(t, relay))
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-shepherd-provider", "forged")
	req.Header.Set("x-shepherd-attempts", "99")
	req.Header.Set("X-Shepherd-Anything", "forged")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for k := range relay.Last().Header {
		require.False(t, strings.HasPrefix(strings.ToLower(k), "x-shepherd-"), "provider saw %s", k)
	}
	require.Equal(t, "p", resp.Header.Get("x-shepherd-provider"))
	require.Equal(t, "1", resp.Header.Get("x-shepherd-attempts"))
}
