//go:build !wasip1

package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
)

// TestConsumerFromIdentity: the consumer that keys a route's buckets comes
// from the source its route names, a forged x-tenant changes nothing, and
// with an identity source the header is removed before the provider.
func TestConsumerFromIdentity(t *testing.T) {
	const claimPath = "metadata\x00filter_metadata\x00envoy.filters.http.jwt_authn\x00payload\x00sub"
	peer := []string{"connection", "uri_san_peer_certificate"}
	claim := []string{"metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "payload", "sub"}
	node := map[string]string{"NAMESPACE": "team-a", "SERVICE_ACCOUNT": "chat"}
	for _, tc := range []struct {
		name, consumer string
		node           map[string]string
		props          map[string]string // per request, keyed by NUL-joined path
		want           string
		kept           bool // x-tenant reaches the provider
	}{
		{"workload", `{"from":"workload"}`, node, nil, "team-a/chat", false},
		{"workload without node metadata", `{"from":"workload"}`, nil, nil, "unauthenticated", false},
		{"workload with a bad namespace", `{"from":"workload"}`, map[string]string{"NAMESPACE": "Team A", "SERVICE_ACCOUNT": "chat"}, nil, "unauthenticated", false},
		{"peer", `{"from":"peer"}`, node, map[string]string{"connection\x00uri_san_peer_certificate": "spiffe://cluster.local/ns/team-b/sa/batch"}, "team-b/batch", false},
		{"peer not verified", `{"from":"peer"}`, node, nil, "unauthenticated", false},
		{"peer not istio's form", `{"from":"peer"}`, node, map[string]string{"connection\x00uri_san_peer_certificate": "spiffe://cluster.local/workload/x"}, "unauthenticated", false},
		{"claim", `{"from":"claim","claim":"sub"}`, node, map[string]string{claimPath: "alice@example.com"}, "alice@example.com", false},
		{"no validated jwt", `{"from":"claim","claim":"sub"}`, node, nil, "unauthenticated", false},
		{"header", `{"from":"header","header":"x-tenant"}`, node, nil, "team-z", true},
		{"workload drops a named header", `{"from":"workload","header":"x-team"}`, node, nil, "team-a/chat", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := `{"providers":[{"name":"relay","host":"relay.example.com"}],"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"relay","streamUsage":false,` +
				`"consumer":` + tc.consumer + `,"limits":{"requestsPerMinute":10}}]}`
			opt := proxytest.NewEmulatorOption().WithVMContext(&vm{}).WithPluginConfiguration([]byte(cfg))
			for k, v := range tc.node {
				opt = opt.WithProperty([]string{"node", "metadata", k}, []byte(v))
			}
			host, release := proxytest.NewHostEmulator(opt)
			defer release()
			require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
			require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin(), "logs: %v", host.GetLogs(proxywasm.LogLevelCritical))
			for k, v := range tc.props {
				switch k {
				case "connection\x00uri_san_peer_certificate":
					host.SetProperty(peer, []byte(v))
				case claimPath:
					host.SetProperty(claim, []byte(v))
				}
			}
			id := host.InitializeHttpContext()
			action := host.CallOnRequestHeaders(id, [][2]string{
				{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "api.openai.com"},
				{"x-tenant", "team-z"}, {"x-team", "team-z"},
			}, true)
			require.Equal(t, types.ActionContinue, action)
			_, _, err := host.GetSharedData("shepherd.rl/requests/4:chat/=" + tc.want)
			require.NoError(t, err, "the request counts against %q", tc.want)
			if tc.want != "team-z" {
				_, _, err = host.GetSharedData("shepherd.rl/requests/4:chat/=team-z")
				require.Error(t, err, "the forged value has no bucket")
			}
			sent := map[string]bool{}
			for _, kv := range host.GetCurrentRequestHeaders(id) {
				sent[kv[0]] = true
			}
			if tc.name == "workload drops a named header" {
				require.False(t, sent["x-team"])
			} else {
				require.Equal(t, tc.kept, sent["x-tenant"])
			}
			host.CompleteHttpContext(id)
		})
	}
}
