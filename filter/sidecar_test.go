//go:build !wasip1

package main

import (
	"strings"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shepherd-mesh/shepherd/filter/mesh"
	"github.com/shepherd-mesh/shepherd/filter/policywire"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
	"github.com/shepherd-mesh/shepherd/filter/rls"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

// These tests drive the sidecar conversation natively: the emulated host
// records the filter's gRPC calls and the test answers them as the sidecar
// (or its absence) would. The same behaviour runs against a real sidecar
// under the Envoy-faithful host in e2e/mesh_test.go.

const sidecarConfig = `{
  "sidecar": {"cluster": "sidecar", "policyPollMs": 100, "reportIntervalMs": 100},
  "providers": [{"name": "a", "host": "a.example.com"}, {"name": "b", "host": "b.example.com", "credential": {"inline": "sk-config"}}],
  "routes": [
    {"name": "closed", "match": {"pathPrefix": "/closed/"}, "provider": "a", "streamUsage": false,
     "globalLimits": {"descriptors": ["route", "provider", "consumer"], "consumerHeader": "x-tenant", "failureMode": "closed", "timeoutMs": 50}},
    {"name": "open", "match": {"pathPrefix": "/open/"}, "provider": "a", "streamUsage": false, "globalLimits": {}},
    {"name": "chat", "match": {"pathPrefix": "/v1/"}, "streamUsage": false,
     "providers": [{"name": "a", "weight": 100}, {"name": "b", "weight": 0}], "canary": {"provider": "b"}}
  ]}`

func sidecarHost(t *testing.T) *proxytest.HostEmulator {
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(&vm{}).
		WithPluginConfiguration([]byte(sidecarConfig)))
	t.Cleanup(release)
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
	return host
}

func get(path string, extra ...[2]string) [][2]string {
	return append([][2]string{{":method", "GET"}, {":path", path}, {":authority", "api.openai.com"}, {":scheme", "http"}}, extra...)
}

func rlsAnswer(t *testing.T, code rlsv3.RateLimitResponse_Code) []byte {
	resp := &rlsv3.RateLimitResponse{OverallCode: code, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{
		Code:               code,
		CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 20, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
		DurationUntilReset: durationpb.New(12_500_000_000),
	}}}
	b, err := proto.Marshal(resp)
	require.NoError(t, err)
	return b
}

func TestGlobalLimitCheck(t *testing.T) {
	cases := []struct {
		name   string
		path   string
		answer func(t *testing.T, h *proxytest.HostEmulator, id uint32)
		status int // 0: the request went on
		code   string
	}{
		{"ok resumes", "/closed/x", func(t *testing.T, h *proxytest.HostEmulator, id uint32) {
			h.CallOnGrpcReceive(id, rlsAnswer(t, rlsv3.RateLimitResponse_OK))
		}, 0, ""},
		{"over limit answers 429", "/closed/x", func(t *testing.T, h *proxytest.HostEmulator, id uint32) {
			h.CallOnGrpcReceive(id, rlsAnswer(t, rlsv3.RateLimitResponse_OVER_LIMIT))
		}, 429, ""},
		{"deadline, fail closed", "/closed/x", func(t *testing.T, h *proxytest.HostEmulator, id uint32) {
			h.CallOnGrpcClose(id, 4, "deadline exceeded")
		}, 503, "ratelimit_unavailable"},
		{"garbage, fail closed", "/closed/x", func(t *testing.T, h *proxytest.HostEmulator, id uint32) {
			h.CallOnGrpcReceive(id, []byte{0xff, 0xff, 0xff})
		}, 503, "ratelimit_unavailable"},
		{"no overall code, fail closed", "/closed/x", func(t *testing.T, h *proxytest.HostEmulator, id uint32) {
			h.CallOnGrpcReceive(id, nil)
		}, 503, "ratelimit_unavailable"},
		{"unavailable, fail open", "/open/x", func(t *testing.T, h *proxytest.HostEmulator, id uint32) {
			h.CallOnGrpcClose(id, 14, "connection refused")
		}, 0, ""},
		{"garbage, fail open", "/open/x", func(t *testing.T, h *proxytest.HostEmulator, id uint32) {
			h.CallOnGrpcReceive(id, []byte{0x0a})
		}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sidecarHost(t)
			id := h.InitializeHttpContext()
			require.Equal(t, types.ActionPause, h.CallOnRequestHeaders(id, get(tc.path, [2]string{"x-tenant", "team-a"}), true))
			calls := h.GetGrpcCalloutAttributesFromContext(id)
			require.Len(t, calls, 1, "one round trip")
			c := calls[0]
			require.Equal(t, "sidecar", c.Upstream)
			require.Equal(t, rls.Service, c.Service)
			require.Equal(t, rls.Method, c.Method)
			var req rlsv3.RateLimitRequest
			require.NoError(t, proto.Unmarshal(c.Messages[0], &req))
			require.Equal(t, "shepherd", req.Domain)
			if tc.path == "/closed/x" {
				require.EqualValues(t, 50, c.Timeout)
				require.True(t, proto.Equal(&commonrl.RateLimitDescriptor{Entries: []*commonrl.RateLimitDescriptor_Entry{
					{Key: "route", Value: "closed"}, {Key: "provider", Value: "a"}, {Key: "consumer", Value: "team-a"}}}, req.Descriptors[0]),
					"%v", req.Descriptors[0])
			}
			tc.answer(t, h, c.ID)
			lr := h.GetSentLocalResponse(id)
			if tc.status == 0 {
				require.Nil(t, lr)
				require.Equal(t, types.ActionContinue, h.GetCurrentHttpStreamAction(id))
				require.Contains(t, h.GetCurrentRequestHeaders(id), [2]string{":authority", "a.example.com"})
				return
			}
			require.NotNil(t, lr)
			require.EqualValues(t, tc.status, lr.StatusCode)
			if tc.status == 429 {
				require.Contains(t, lr.Headers, [2]string{"retry-after", "13"})
				require.Contains(t, lr.Headers, [2]string{"retry-after-ms", "12500"})
				require.Contains(t, lr.Headers, [2]string{"x-should-retry", "true"})
				require.Contains(t, lr.Headers, [2]string{"x-ratelimit-limit-requests", "20"})
				require.Contains(t, lr.Headers, [2]string{"x-ratelimit-remaining-requests", "0"})
				require.Contains(t, string(lr.Data), "global rate limit reached for requests")
				return
			}
			require.Contains(t, string(lr.Data), `"code":"`+tc.code+`"`)
			require.Contains(t, lr.Headers, [2]string{"x-should-retry", "false"}, "a fail-closed 503 is not retried")
		})
	}
}

func TestFailOpenIsCounted(t *testing.T) {
	h := sidecarHost(t)
	id := h.InitializeHttpContext()
	h.CallOnRequestHeaders(id, get("/open/x"), true)
	h.CallOnGrpcClose(h.GetGrpcCalloutAttributesFromContext(id)[0].ID, 14, "")
	n, err := h.GetCounterMetric("shepherd_global_limit_failures_total;route=open;kind=open")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// TestPolicySync: the tick takes the lease and polls GetPolicy; the answer is
// stored in shared data and applied: the canary weight, the cooldown-free
// choice, and the policy's credential reach the next request.
func TestPolicySync(t *testing.T) {
	h := sidecarHost(t)
	h.Tick()
	calls := h.GetGrpcCalloutAttributesFromContext(proxytest.RootContextID)
	require.Len(t, calls, 1)
	require.Equal(t, policywire.Service, calls[0].Service)
	require.Equal(t, policywire.MethodGetPolicy, calls[0].Method)
	var req policyv1.GetPolicyRequest
	require.NoError(t, proto.Unmarshal(calls[0].Messages[0], &req))
	require.Zero(t, req.KnownVersion)
	lease, _, err := h.GetSharedData(mesh.LeaseKey)
	require.NoError(t, err)
	require.Len(t, lease, 16)

	const secret = "sk-from-the-policy"
	resp, err := proto.Marshal(&policyv1.GetPolicyResponse{Version: 42, Policy: &policyv1.Policy{
		Version:     42,
		Weights:     []*policyv1.RouteWeight{{Route: "chat", Provider: "a", WeightBp: 0}, {Route: "chat", Provider: "b", WeightBp: 10000}},
		Credentials: []*policyv1.Credential{{Provider: "b", Header: "authorization", Value: "Bearer " + secret}},
	}})
	require.NoError(t, err)
	h.CallOnGrpcReceive(calls[0].ID, resp)
	v, _, err := h.GetSharedData(mesh.VersionKey)
	require.NoError(t, err)
	version, _ := mesh.Uint64(v)
	require.EqualValues(t, 42, version)

	id := h.InitializeHttpContext()
	require.Equal(t, types.ActionContinue, h.CallOnRequestHeaders(id, get("/v1/chat/completions", [2]string{"authorization", "Bearer client"}), true))
	hdrs := h.GetCurrentRequestHeaders(id)
	require.Contains(t, hdrs, [2]string{":authority", "b.example.com"}, "the policy's weights")
	require.Contains(t, hdrs, [2]string{"authorization", "Bearer " + secret}, "the policy's credential")
	for _, lvl := range []proxywasm.LogLevel{proxywasm.LogLevelTrace, proxywasm.LogLevelDebug, proxywasm.LogLevelInfo,
		proxywasm.LogLevelWarn, proxywasm.LogLevelError, proxywasm.LogLevelCritical} {
		for _, line := range h.GetLogs(lvl) {
			require.NotContains(t, line, secret)
		}
	}
}

// TestCanaryHeaderAndOutcomes: the override header sends a request to the
// canary and is not forwarded; the finished request is reported on the tick.
func TestCanaryHeaderAndOutcomes(t *testing.T) {
	h := sidecarHost(t)
	id := h.InitializeHttpContext()
	h.CallOnRequestHeaders(id, get("/v1/chat/completions", [2]string{"x-canary", "true"}), true)
	hdrs := h.GetCurrentRequestHeaders(id)
	require.Contains(t, hdrs, [2]string{":authority", "b.example.com"})
	require.Contains(t, hdrs, [2]string{"authorization", "Bearer sk-config"})
	for _, kv := range hdrs {
		require.NotEqual(t, "x-canary", kv[0])
	}
	h.CallOnResponseHeaders(id, [][2]string{{":status", "503"}, {"x-ratelimit-remaining-requests", "7"}, {"retry-after", "2"}}, true)
	h.CompleteHttpContext(id)

	h.Tick()
	var report *proxytest.GrpcCalloutAttribute
	for _, c := range h.GetGrpcCalloutAttributesFromContext(proxytest.RootContextID) {
		if c.Method == policywire.MethodReportOutcomes {
			report = &c
		}
	}
	require.NotNil(t, report)
	var req policyv1.ReportOutcomesRequest
	require.NoError(t, proto.Unmarshal(report.Messages[0], &req))
	require.Len(t, req.Outcomes, 1)
	o := req.Outcomes[0]
	require.Equal(t, "chat", o.Route)
	require.Equal(t, "b", o.Provider)
	require.EqualValues(t, 503, o.StatusCode)
	require.True(t, o.HasRatelimitRemaining)
	require.EqualValues(t, 7, o.RatelimitRemaining)
	require.EqualValues(t, 2000, o.RetryAfterMs)
}

// TestPolicyLease: a VM leaves polling to the holder of a live lease and
// takes over a lapsed one.
func TestPolicyLease(t *testing.T) {
	for _, tc := range []struct {
		name  string
		until int64 // the other owner's lease expiry, from now
		polls bool
	}{
		{"live lease held by another VM", 60e9, false},
		{"lapsed lease", -1e9, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sidecarHost(t)
			require.NoError(t, h.SetSharedData(mesh.LeaseKey, mesh.AppendLease(nil, 12345, nowNanos()+tc.until), 0))
			h.Tick()
			polled := false
			for _, c := range h.GetGrpcCalloutAttributesFromContext(proxytest.RootContextID) {
				polled = polled || c.Method == policywire.MethodGetPolicy
			}
			require.Equal(t, tc.polls, polled)
			lease, _, err := h.GetSharedData(mesh.LeaseKey)
			require.NoError(t, err)
			owner, _ := mesh.Uint64(lease)
			require.Equal(t, tc.polls, owner != 12345, "the lease changes hands only when it lapsed")
		})
	}
}

// TestSidecarCallsCarryTheToken: every gRPC call the filter makes to the
// sidecar (the global limit check, the policy poll, outcome reports) carries
// sidecar.token as initial metadata; without a token the calls carry none.
// A refused poll is logged once, without the token.
func TestSidecarCallsCarryTheToken(t *testing.T) {
	const token = "filter-secret-0123"
	for _, tc := range []struct {
		name, config string
		want         [][2]string
	}{
		{"token", strings.Replace(sidecarConfig, `"cluster": "sidecar",`, `"cluster": "sidecar", "token": {"inline": "`+token+`"},`, 1),
			[][2]string{{"x-shepherd-filter-token", token}}},
		{"no token", sidecarConfig, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
				WithVMContext(&vm{}).WithPluginConfiguration([]byte(tc.config)))
			t.Cleanup(release)
			require.Equal(t, types.OnVMStartStatusOK, h.StartVM())
			require.Equal(t, types.OnPluginStartStatusOK, h.StartPlugin())

			id := h.InitializeHttpContext()
			require.Equal(t, types.ActionPause, h.CallOnRequestHeaders(id, get("/closed/x", [2]string{"x-tenant", "team-a"}), true))
			check := h.GetGrpcCalloutAttributesFromContext(id)
			require.Len(t, check, 1)
			require.Equal(t, rls.Method, check[0].Method)
			require.Equal(t, tc.want, check[0].InitialMetadata, "ShouldRateLimit")
			h.CallOnGrpcReceive(check[0].ID, rlsAnswer(t, rlsv3.RateLimitResponse_OK))
			h.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true)
			h.CompleteHttpContext(id)

			h.Tick()
			seen := map[string]bool{}
			for _, c := range h.GetGrpcCalloutAttributesFromContext(proxytest.RootContextID) {
				require.Equal(t, tc.want, c.InitialMetadata, c.Method)
				seen[c.Method] = true
				if c.Method == policywire.MethodGetPolicy {
					h.CallOnGrpcClose(c.ID, 7, "filter token not accepted")
				}
			}
			require.True(t, seen[policywire.MethodGetPolicy] && seen[policywire.MethodReportOutcomes], "%v", seen)
			warns := h.GetLogs(proxywasm.LogLevelWarn)
			n := 0
			for _, line := range warns {
				require.NotContains(t, line, token)
				if strings.Contains(line, "PERMISSION_DENIED") {
					n++
				}
			}
			require.Equal(t, 1, n, "%q", warns)
		})
	}
}

// TestGlobalConsumersAreBounded: the consumer values sent to the sidecar go
// through the route's bounded consumer set, shared with its local limits:
// beyond maxConsumers every new value is sent as the overflow consumer, so
// client input cannot grow the sidecar's counters.
func TestGlobalConsumersAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name, limits, global string
	}{
		{"shared with the local limits", `"limits": {"requestsPerMinute": 1000, "consumerHeader": "x-tenant", "maxConsumers": 2},`, `"consumerHeader": "x-tenant"`},
		{"a set of its own", `"limits": {"requestsPerMinute": 1000, "consumerHeader": "x-team", "maxConsumers": 2},`, `"consumerHeader": "x-tenant"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := `{"sidecar": {"cluster": "sidecar"}, "providers": [{"name": "a", "host": "a.example.com"}],
  "routes": [{"name": "r", "match": {"pathPrefix": "/"}, "provider": "a", "streamUsage": false, ` + tc.limits + `
    "globalLimits": {"descriptors": ["route", "consumer"], ` + tc.global + `}}]}`
			host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(&vm{}).WithPluginConfiguration([]byte(cfg)))
			t.Cleanup(release)
			require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
			require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
			for _, step := range []struct{ tenant, sent string }{
				{"t1", "t1"}, {"t2", "t2"}, {"t3", mesh.OverflowConsumer}, {strings.Repeat("x", 200), mesh.OverflowConsumer},
				{mesh.OverflowConsumer, mesh.OverflowConsumer}, {"t1", "t1"}, {"t4", mesh.OverflowConsumer},
			} {
				id := host.InitializeHttpContext()
				require.Equal(t, types.ActionPause, host.CallOnRequestHeaders(id, get("/v1/models", [2]string{"x-tenant", step.tenant}, [2]string{"x-team", "x"}), true))
				calls := host.GetGrpcCalloutAttributesFromContext(id)
				require.Len(t, calls, 1)
				var req rlsv3.RateLimitRequest
				require.NoError(t, proto.Unmarshal(calls[0].Messages[0], &req))
				require.True(t, proto.Equal(&commonrl.RateLimitDescriptor{Entries: []*commonrl.RateLimitDescriptor_Entry{
					{Key: "route", Value: "r"}, {Key: "consumer", Value: step.sent}}}, req.Descriptors[0]), "%s: %v", step.tenant, req.Descriptors[0])
				host.CallOnGrpcReceive(calls[0].ID, rlsAnswer(t, rlsv3.RateLimitResponse_OK))
				host.CompleteHttpContext(id)
			}
		})
	}
}
