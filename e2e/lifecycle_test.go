package e2e_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

func lifecycleHost(t *testing.T, cfg string, up string) (*envoy.Host, string) {
	t.Helper()
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(cfg), Workers: 2,
		Clusters: map[string]string{"p": up}, Routes: map[string]string{"p.example.com": "p"},
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	front := serveHost(t, h)
	return h, front.URL
}

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	return resp
}

// TestAbortedStreamSettlesItsReservation: a client that goes away mid-stream does
// not keep its token reservation: the stream's end settles it with an estimate of
// what was used, so the bucket has room again.
func TestAbortedStreamSettlesItsReservation(t *testing.T) {
	provider := fakeprovider.New(fakeprovider.Options{Words: 50})
	up := scenario.Upstream(t, provider)
	// 100 tokens that refill by one a minute; each request reserves 61 (1 + 60).
	_, url := lifecycleHost(t, `{"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],`+
		`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p","limits":{"tokensPerMinute":1,"tokenBurst":100}}]}`, up)
	const req = `{"model":"m","max_tokens":60,"stream":true,"messages":[{"role":"user","content":"hi"}]}`

	ctx, cancel := context.WithCancel(context.Background())
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(req))
	hreq.Header.Set("content-type", "application/json")
	hreq.Header.Set("x-fake-chunk-delay-ms", "200")
	resp, err := http.DefaultClient.Do(hreq)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "data:")
	cancel() // the client leaves while the provider is still streaming
	resp.Body.Close()

	// Had the reservation stayed, 39 tokens would be left and a request for 61
	// would be refused until the next minutes' refill. Settled, there is room.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := post(t, url, `{"model":"m","max_tokens":60,"messages":[]}`)
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			break
		}
		require.Equal(t, http.StatusTooManyRequests, r.StatusCode)
		require.True(t, time.Now().Before(deadline), "the aborted stream's reservation was never settled")
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBadReconfigureKeepsTheLastGoodConfig: a plugin configuration that does not
// validate is refused, and traffic keeps the configuration it had.
func TestBadReconfigureKeepsTheLastGoodConfig(t *testing.T) {
	provider := fakeprovider.New(fakeprovider.Options{})
	up := scenario.Upstream(t, provider)
	good := `{"providers":[{"name":"p","host":"p.example.com","pathPrefix":"/good","cluster":"p"}],` +
		`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`
	h, url := lifecycleHost(t, good, up)

	err := h.Reconfigure([]byte(`{"providers":[{"name":"p","host":"p.example.com","pathPrefix":"/bad"}],"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"nope"}]}`))
	require.Error(t, err)
	require.Contains(t, err.Error(), `routes[0].provider: unknown provider "nope"`)

	for i := 0; i < 4; i++ { // every worker VM
		r := post(t, url, `{"model":"m","messages":[]}`)
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		require.Equal(t, http.StatusOK, r.StatusCode)
		require.Equal(t, "/good/chat/completions", provider.Last().Path)
	}
}

// TestLimitsPerConsumer: with a consumer header, each consumer has its own bucket
// across the worker VMs; requests without the header share the route's.
func TestLimitsPerConsumer(t *testing.T) {
	up := scenario.Upstream(t, fakeprovider.New(fakeprovider.Options{}))
	_, url := lifecycleHost(t, `{"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],`+
		`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p","streamUsage":false,`+
		`"limits":{"requestsPerMinute":1,"requestBurst":2,"consumerHeader":"x-tenant"}}]}`, up)
	send := func(tenant string) int {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
		req.Header.Set("content-type", "application/json")
		if tenant != "" {
			req.Header.Set("x-tenant", tenant)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	codes := func(tenant string, n int) []int {
		var out []int
		for i := 0; i < n; i++ {
			out = append(out, send(tenant))
		}
		return out
	}
	require.Equal(t, []int{200, 200, 429, 429}, codes("team-a", 4))
	require.Equal(t, []int{200, 200, 429}, codes("team-b", 3), "team-b has a bucket of its own")
	require.Equal(t, []int{200, 200, 429}, codes("", 3), "no header: the route's bucket")
}
