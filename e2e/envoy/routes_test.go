package envoy

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestRouteTableMatchesLikeEnvoy(t *testing.T) {
	clusters := map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2"}
	vhs := []VirtualHost{
		{Name: "exact", Domains: []string{"api.example.com"}, Routes: []Route{
			{Name: "chat", Path: "/v1/chat", Cluster: "a"},
			{Name: "models", Regex: "/v1/models/[a-z0-9-]+", Cluster: "b"},
			{Name: "v2", Prefix: "/v2/", Cluster: "b"},
		}},
		{Name: "canary", Domains: []string{"*-canary"}, Routes: []Route{{Name: "canary", Cluster: "b"}}},
		{Name: "suffix", Domains: []string{"*.example.com"}, Routes: []Route{{Name: "suffix", Cluster: "a"}}},
		{Name: "longer-suffix", Domains: []string{"*.eu.example.com"}, Routes: []Route{{Name: "eu", Cluster: "b"}}},
		{Name: "prefix", Domains: []string{"relay.*"}, Routes: []Route{{Name: "relay", Cluster: "a"}}},
		{Name: "any", Domains: []string{"*"}, Routes: []Route{{Name: "fallback", Prefix: "/", Cluster: "a"}}},
	}
	table, err := compileRoutes(vhs, clusters)
	require.NoError(t, err)
	for _, tc := range []struct {
		authority, path, vh, route string
	}{
		{"api.example.com", "/v1/chat", "exact", "chat"},
		{"API.Example.com", "/v1/chat?stream=1", "exact", "chat"}, // host case-insensitive; path without query
		{"api.example.com", "/v1/chat/x", "exact", ""},            // path is exact
		{"api.example.com", "/v1/models/gpt-4", "exact", "models"},
		{"api.example.com", "/v1/models/gpt-4/x", "exact", ""}, // regex matches the whole path
		{"api.example.com", "/v2/anything?q", "exact", "v2"},
		{"eu-canary", "/x", "canary", "canary"},
		{"-canary", "/x", "any", "fallback"}, // a wildcard stands for at least one character
		{"a.eu.example.com", "/", "longer-suffix", "eu"},
		{"a.us.example.com", "/", "suffix", "suffix"},
		{"api.example.com:8080", "/v1/chat", "any", "fallback"}, // the port is part of the host
		{"relay.local", "/", "prefix", "relay"},
		{"other", "/z", "any", "fallback"},
	} {
		t.Run(tc.authority+tc.path, func(t *testing.T) {
			vh, r, err := table.find(tc.authority, tc.path)
			require.NoError(t, err)
			require.Equal(t, tc.vh, vh.Name)
			if tc.route == "" {
				require.Nil(t, r)
				return
			}
			require.NotNil(t, r)
			require.Equal(t, tc.route, r.Name)
		})
	}
}

func TestRouteTableRefusesBadRoutes(t *testing.T) {
	clusters := map[string]string{"a": "127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		vhs  []VirtualHost
		want string
	}{
		{"no domains", []VirtualHost{{Routes: []Route{{Cluster: "a"}}}}, "config.virtual_hosts[0].domains: must not be empty"},
		{"duplicate domain", []VirtualHost{{Domains: []string{"a"}}, {Domains: []string{"A"}}}, "config.virtual_hosts[1].domains[0]"},
		{"inner wildcard", []VirtualHost{{Domains: []string{"a*b"}}}, "config.virtual_hosts[0].domains[0]: a wildcard"},
		{"two matches", []VirtualHost{{Domains: []string{"a"}, Routes: []Route{{Prefix: "/", Path: "/x", Cluster: "a"}}}}, "config.virtual_hosts[0].routes[0].match"},
		{"bad regex", []VirtualHost{{Domains: []string{"a"}, Routes: []Route{{Regex: "(", Cluster: "a"}}}}, "config.virtual_hosts[0].routes[0].match.safe_regex.regex"},
		{"unknown cluster", []VirtualHost{{Domains: []string{"a"}, Routes: []Route{{Cluster: "zz"}}}}, "config.virtual_hosts[0].routes[0].route.cluster: unknown cluster"},
		{"no action", []VirtualHost{{Domains: []string{"a"}, Routes: []Route{{Prefix: "/"}}}}, "config.virtual_hosts[0].routes[0].route.cluster: must not be empty"},
		{"bad direct status", []VirtualHost{{Domains: []string{"a"}, Routes: []Route{{Direct: &DirectResponse{Status: 99}}}}}, "direct_response.status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileRoutes(tc.vhs, clusters)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// hangingUpstream answers nothing until the test ends.
func hangingUpstream(t *testing.T) *httptest.Server {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv
}

func ptrDuration(d time.Duration) *time.Duration { return &d }

// TestRouteTimeoutAnswers504ThroughThePlugin: an upstream that never answers
// ends, at the route's timeout, with Envoy's 504 local reply, which the plugin's
// response callbacks see (route timeouts from the config, the route and the
// default alike).
func TestRouteTimeoutAnswers504ThroughThePlugin(t *testing.T) {
	up := hangingUpstream(t)
	for _, tc := range []struct {
		name string
		opt  hostOpt
	}{
		{"config default", func(c *Config) { c.RouteTimeout = 50 * time.Millisecond }},
		{"route's own", func(c *Config) {
			c.DefaultCluster = ""
			c.VirtualHosts = []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
				{Name: "slow", Prefix: "/", Cluster: "up", Timeout: ptrDuration(50 * time.Millisecond)}}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, "route", up.URL, tc.opt)
			resp, body := do(t, h, "POST", "/chat", strings.NewReader(`{"a":1}`))
			require.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
			require.Equal(t, "upstream request timeout", body)
			require.Equal(t, "504", resp.Header.Get("x-seen-status"), "the plugin's response callbacks see the 504")
			require.Equal(t, "text/plain", resp.Header.Get("content-type"))
			require.Equal(t, "envoy", resp.Header.Get("server"))
		})
	}
}

func TestDirectResponseAndRouteMetadata(t *testing.T) {
	up := echoUpstream(t)
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"shepherd": {Fields: map[string]*structpb.Value{"tier": structpb.NewStringValue("gold")}},
	}}
	mdBytes, err := proto.Marshal(md)
	require.NoError(t, err)
	h := newHost(t, "route", up.URL, func(c *Config) {
		c.DefaultCluster = ""
		c.VirtualHosts = []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
			{Name: "gone", Path: "/gone", Direct: &DirectResponse{Status: 410, Body: []byte("gone for good")}},
			{Name: "chat", Prefix: "/", Cluster: "up", Metadata: mdBytes},
		}}}
	})

	resp, body := do(t, h, "GET", "/gone", nil)
	require.Equal(t, http.StatusGone, resp.StatusCode)
	require.Equal(t, "gone for good", body)
	require.Equal(t, "text/plain", resp.Header.Get("content-type"))
	require.Equal(t, "410", resp.Header.Get("x-seen-status"), "a direct response passes through the plugin")
	require.Equal(t, "gone", resp.Header.Get("x-route-name"))
	require.Equal(t, "", resp.Header.Get("x-route-metadata"), "a route without metadata serializes the empty message")
	require.Empty(t, resp.Header.Get("x-envoy-upstream-service-time"), "no upstream, no service time")

	resp, body = do(t, h, "GET", "/v1/chat", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "chat", resp.Header.Get("x-route-name"))
	raw, err := hex.DecodeString(resp.Header.Get("x-route-metadata"))
	require.NoError(t, err)
	var got corev3.Metadata
	require.NoError(t, proto.Unmarshal(raw, &got))
	require.True(t, proto.Equal(md, &got), "route_metadata is the route's Metadata message")

	resp, _ = do(t, h, "GET", "/nothing-here", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the catch-all prefix route")
}

func TestRouterServerAndServiceTimeHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "gunicorn")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	for _, tc := range []struct {
		name, path string
		upstream   bool
	}{
		{"upstream answer", "/", true},
		{"local reply", "/deny", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode := "route"
			if !tc.upstream {
				mode = "basic" // answers /deny with a local 403
			}
			h := newHost(t, mode, up.URL)
			resp, _ := do(t, h, "GET", tc.path, nil)
			require.Equal(t, []string{"envoy"}, resp.Header.Values("server"), "the connection manager overwrites the server header")
			st := resp.Header.Get("x-envoy-upstream-service-time")
			if !tc.upstream {
				require.Empty(t, st)
				return
			}
			n, err := strconv.Atoi(st)
			require.NoError(t, err, "x-envoy-upstream-service-time %q", st)
			require.GreaterOrEqual(t, n, 0)
			require.Equal(t, st, resp.Header.Get("x-seen-service-time"), "the router adds it before the plugin's response callbacks")
		})
	}
}

func TestPathOptionsLikeEnvoysConnectionManager(t *testing.T) {
	all := PathOptions{Normalize: true, MergeSlashes: true, RejectEscapedSlashes: true}
	for _, tc := range []struct {
		opts     PathOptions
		in, want string
		refused  bool
	}{
		{PathOptions{}, "/a/../b", "/a/../b", false},
		{all, "/v1/chat/completions?x=/../y", "/v1/chat/completions?x=/../y", false}, // the query is left alone
		{all, "/v1/../admin", "/admin", false},
		{all, "/v1/./a/../b/", "/v1/b/", false},
		{all, "/../../x", "/x", false},
		{all, "/v1/%2e%2e/admin", "/admin", false}, // an encoded unreserved dot is decoded first
		{all, "/v1\\..\\admin", "/admin", false},
		{all, "//v1///chat", "/v1/chat", false},
		{all, "/v1/%2Fadmin", "", true},
		{all, "/v1/a%5cb", "", true},
		{PathOptions{Normalize: true}, "/v1/%2Fadmin", "/v1/%2Fadmin", false}, // kept unchanged
		{PathOptions{MergeSlashes: true}, "/a//./b", "/a/./b", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := tc.opts.apply(tc.in)
			require.Equal(t, !tc.refused, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestPathNormalisedBeforeThePlugin: the plugin and the upstream see the
// normalised path; an escaped slash is refused with 400 before the plugin.
func TestPathNormalisedBeforeThePlugin(t *testing.T) {
	up := echoUpstream(t)
	h := newHost(t, "basic", up.URL, func(c *Config) {
		c.Paths = PathOptions{Normalize: true, MergeSlashes: true, RejectEscapedSlashes: true}
	})
	resp, body := do(t, h, "GET", "/v1/./x/..//chat", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, " /v1/chat ")
	require.Contains(t, body, "x-guest=1", "the plugin ran")

	resp, body = do(t, h, "GET", "/v1/%2Fadmin", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Empty(t, body)
	require.Empty(t, resp.Header.Get("x-resp"), "refused before the plugin's callbacks")
}
