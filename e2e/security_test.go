package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/promtext"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// TestFallbackCarriesTheClientsHeaders: a fallback attempt is the client's
// request sent elsewhere: the backup provider gets its own credential, none
// of the client's credentials or account headers, and every other header the
// first attempt carried, so each provider sees the same request.
func TestFallbackCarriesTheClientsHeaders(t *testing.T) {
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay", APIKey: "sk-relay"})
	backup := fakeprovider.New(fakeprovider.Options{Name: "backup", APIKey: "sk-backup"})
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(`{"models":{"m":{},"m2":{}},
		  "providers":[{"name":"relay","host":"relay.example.com","cluster":"relay","credential":{"env":"RELAY"}},
		               {"name":"backup","host":"backup.example.com","cluster":"backup","credential":{"env":"BACKUP"}}],
		  "routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"relay",
		    "fallback":{"models":[{"model":"m2","provider":"backup"}],"baseBackoffMs":1,"maxBackoffMs":2}}]}`),
		Workers: 2, Env: map[string]string{"RELAY": "sk-relay", "BACKUP": "sk-backup"},
		Clusters:  map[string]string{"relay": scenario.Upstream(t, relay), "backup": scenario.Upstream(t, backup)},
		Routes:    map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	front := serveHost(t, h)
	m := &faultEnv{host: h, url: front.URL, clients: http.DefaultClient}

	relay.Script(fakeprovider.Fault{Status: http.StatusServiceUnavailable})
	req := m.request(context.Background(), false)
	req.Header.Set("authorization", "Bearer client-own-key")
	req.Header.Add("authorization", "Bearer client-second-key") // every value goes
	req.Header.Set("openai-organization", "org-client")
	req.Header.Set("openai-project", "proj-client")
	req.Header.Set("x-api-key", "client-key")
	req.Header.Set("user-agent", "OpenAI/Go 3.0")
	req.Header.Set("x-stainless-retry-count", "0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Equal(t, "backup", resp.Header.Get("x-shepherd-provider"))

	first := relay.Last().Header
	require.Equal(t, []string{"Bearer sk-relay"}, first.Values("Authorization"), "the client's key is replaced")
	got := backup.Last().Header
	require.Equal(t, []string{"Bearer sk-backup"}, got.Values("Authorization"))
	for _, h := range []string{"Openai-Organization", "Openai-Project", "X-Api-Key"} {
		require.Empty(t, first.Values(h), "%s never reaches a provider", h)
		require.Empty(t, got.Values(h), "%s never reaches a provider", h)
	}
	for _, h := range []string{"User-Agent", "X-Stainless-Retry-Count", "Content-Type"} {
		require.NotEmpty(t, got.Values(h), h)
		require.Equal(t, first.Values(h), got.Values(h), "%s: every attempt carries the client's headers", h)
	}
	require.Equal(t, "m2", backup.Last().Model)
}

// TestOversizedBodyRefusedWhileSending: a request body over maxBodyBytes is
// refused with 413 without waiting for the rest of it: the client still has
// most of its body (over 1 MiB) to send when the answer arrives, and the
// provider never sees any of it. With a content-length the refusal comes at
// the headers; a chunked body is refused once the buffered part crosses the
// limit. (The chunked client first sends 300 KiB: the host's Go front end
// reads up to 256 KiB of an unread body before it writes any answer, which
// Envoy does not.)
func TestOversizedBodyRefusedWhileSending(t *testing.T) {
	for _, tc := range []struct {
		name          string
		contentLength bool
	}{{"content-length", true}, {"chunked", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, `{"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],`+
				`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p","maxBodyBytes":4096}]}`)
			head := []byte(`{"model":"m","pad":"` + strings.Repeat("x", 300<<10))
			tail := []byte(strings.Repeat("x", 1<<20) + `"}`)
			pr, pw := io.Pipe()
			release := make(chan struct{})
			go func() {
				pw.Write(head)
				// The rest waits until the client has the answer (or 20 s).
				select {
				case <-release:
				case <-time.After(20 * time.Second):
				}
				pw.Write(tail)
				pw.Close()
			}()
			req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/chat/completions", pr)
			req.Header.Set("content-type", "application/json")
			if tc.contentLength {
				req.ContentLength = int64(len(head) + len(tail))
			}
			type answer struct {
				resp *http.Response
				err  error
			}
			got := make(chan answer, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				got <- answer{resp, err}
			}()
			var a answer
			select {
			case a = <-got:
			case <-time.After(15 * time.Second):
				t.Fatal("no answer before the whole body was sent: the body was buffered past the limit")
			}
			close(release)
			require.NoError(t, a.err)
			body, _ := io.ReadAll(a.resp.Body)
			a.resp.Body.Close()
			require.Equal(t, http.StatusRequestEntityTooLarge, a.resp.StatusCode, "%s", body)
			typ, _ := openAIError(t, body)
			require.Equal(t, "invalid_request_error", typ)
			require.Zero(t, e.p.Bodies(), "the provider got no body")
			e.noLeaks(t)
		})
	}
}

// TestClientKeyedStateIsCapped: consumers beyond maxConsumers share one
// overflow bucket, and model names the config does not list are labelled
// "other" (so is every model of a route that does not read bodies): no client
// value grows the limiter's state or the metric set.
func TestClientKeyedStateIsCapped(t *testing.T) {
	e := newFaultEnv(t, `{"models":{"m":{}},"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],`+
		`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p","streamUsage":false,`+
		`"limits":{"requestsPerMinute":1,"requestBurst":1,"consumerHeader":"x-tenant","maxConsumers":3}}]}`)
	send := func(tenant, model string) int {
		req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/chat/completions",
			strings.NewReader(`{"model":"`+model+`","messages":[]}`))
		req.Header.Set("content-type", "application/json")
		req.Header.Set("x-tenant", tenant)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Three consumers get buckets of their own (one request each).
	for i := 0; i < 3; i++ {
		require.Equal(t, http.StatusOK, send("team-"+strconv.Itoa(i), "m"))
	}
	// Every later consumer draws from the one overflow bucket: the first gets
	// its single request, all the others are refused.
	codes := map[int]int{}
	for i := 3; i < 40; i++ {
		codes[send("team-"+strconv.Itoa(i), "client-model-"+strconv.Itoa(i))]++
	}
	require.Equal(t, map[int]int{http.StatusOK: 1, http.StatusTooManyRequests: 36}, codes)

	var buf bytes.Buffer
	e.host.WritePrometheus(&buf)
	models := map[string]bool{}
	for _, s := range promtext.Parse(&buf) {
		if m, ok := s.Labels[telemetry.LabelModel]; ok {
			models[m] = true
		}
	}
	for m := range models {
		require.Contains(t, []string{"m", "other"}, m, "a client's model name became a label")
	}
	require.True(t, models["other"])
	e.noLeaks(t)
}
