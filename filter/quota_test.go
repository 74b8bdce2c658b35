//go:build !wasip1

package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/mesh"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
	"github.com/shepherd-mesh/shepherd/filter/rlqs"
	"github.com/shepherd-mesh/shepherd/filter/rls"
)

// The quota mode natively: the emulated host records the stream the lease
// holder opens and the test answers as an RLQS server. The same behaviour
// runs against a server under the Envoy-faithful host in e2e/quota_test.go.

const quotaConfig = `{
  "sidecar": {"cluster": "sidecar", "policyPollMs": 0, "reportIntervalMs": 0, "quotaReportMs": 100, "token": {"inline": "filter-token"}},
  "providers": [{"name": "a", "host": "a.example.com"}],
  "routes": [
    {"name": "closed", "match": {"pathPrefix": "/closed/"}, "provider": "a", "streamUsage": false,
     "globalLimits": {"mode": "quota", "descriptors": ["route", "consumer"], "consumerHeader": "x-tenant", "failureMode": "closed"}},
    {"name": "open", "match": {"pathPrefix": "/open/"}, "provider": "a", "streamUsage": false,
     "globalLimits": {"mode": "quota"}},
    {"name": "tokens", "match": {"pathPrefix": "/tokens/"}, "provider": "a", "streamUsage": false,
     "globalLimits": {"mode": "quota", "tokens": true, "failureMode": "closed"}}
  ]}`

type quotaHost struct {
	*proxytest.HostEmulator
	now time.Time
}

func newQuotaHost(t *testing.T) *quotaHost {
	q := &quotaHost{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(&vm{}).
		WithClock(func() time.Time { return q.now }).
		WithPluginConfiguration([]byte(quotaConfig)))
	t.Cleanup(release)
	q.HostEmulator = host
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
	return q
}

// request sends one request and returns the local answer's status, 0 when
// it went on.
func (q *quotaHost) request(t *testing.T, path, tenant string) int {
	id := q.InitializeHttpContext()
	action := q.CallOnRequestHeaders(id, get(path, [2]string{"x-tenant", tenant}), true)
	require.Empty(t, q.GetGrpcCalloutAttributesFromContext(id), "no call to the sidecar per request")
	defer q.CompleteHttpContext(id)
	if lr := q.GetSentLocalResponse(id); lr != nil {
		return int(lr.StatusCode)
	}
	require.Equal(t, types.ActionContinue, action)
	return 0
}

// stream returns the open quota stream and the reports sent on it.
func (q *quotaHost) stream(t *testing.T) (uint32, []*rlqsv3.RateLimitQuotaUsageReports) {
	calls := q.GetGrpcCalloutAttributesFromContext(proxytest.RootContextID)
	require.Len(t, calls, 1)
	c := calls[0]
	require.Equal(t, rlqs.Service, c.Service)
	require.Equal(t, rlqs.Method, c.Method)
	require.Contains(t, c.InitialMetadata, [2]string{"x-shepherd-filter-token", "filter-token"})
	var out []*rlqsv3.RateLimitQuotaUsageReports
	for _, m := range c.Messages {
		var r rlqsv3.RateLimitQuotaUsageReports
		require.NoError(t, proto.Unmarshal(m, &r))
		out = append(out, &r)
	}
	return c.ID, out
}

func (q *quotaHost) tick(d time.Duration) {
	q.now = q.now.Add(d)
	q.Tick()
}

func quotaAssign(t *testing.T, ttl time.Duration, s *typev3.RateLimitStrategy, bucket map[string]string) []byte {
	b, err := proto.Marshal(&rlqsv3.RateLimitQuotaResponse{BucketAction: []*rlqsv3.RateLimitQuotaResponse_BucketAction{{
		BucketId: &rlqsv3.BucketId{Bucket: bucket},
		BucketAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction_{
			QuotaAssignmentAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction{
				AssignmentTimeToLive: durationpb.New(ttl), RateLimitStrategy: s}}}}})
	require.NoError(t, err)
	return b
}

func tokenBucketOf(n uint32) *typev3.RateLimitStrategy {
	return &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_TokenBucket{TokenBucket: &typev3.TokenBucket{
		MaxTokens: n, FillInterval: durationpb.New(time.Hour)}}}
}

// TestQuotaModeEnforcesAssignments: a new bucket is admitted and reported;
// the assignment the server answers with is enforced without a call per
// request (429 with the assignment's figures); usage is reported per
// interval; after the assignment's expiry without a new one the failure
// mode applies; a reset stream is reopened on the next tick.
func TestQuotaModeEnforcesAssignments(t *testing.T) {
	q := newQuotaHost(t)
	bucket := map[string]string{"route": "closed", "consumer": "team-a"}
	require.Zero(t, q.request(t, "/closed/x", "team-a"), "a new bucket is admitted until its first assignment")
	q.tick(100 * time.Millisecond)
	id, reports := q.stream(t)
	require.Len(t, reports, 1)
	require.Equal(t, "shepherd", reports[0].Domain)
	require.Len(t, reports[0].BucketQuotaUsages, 1)
	u := reports[0].BucketQuotaUsages[0]
	require.Equal(t, bucket, u.BucketId.Bucket)
	require.EqualValues(t, 1, u.NumRequestsAllowed)

	q.CallOnGrpcReceive(id, quotaAssign(t, 2*time.Second, tokenBucketOf(3), bucket))
	statuses := []int{}
	for range 5 {
		statuses = append(statuses, q.request(t, "/closed/x", "team-a"))
	}
	require.Equal(t, []int{0, 0, 0, 429, 429}, statuses)
	require.Zero(t, q.request(t, "/closed/x", "team-b"), "another consumer is another bucket")

	q.tick(100 * time.Millisecond)
	_, reports = q.stream(t)
	require.Len(t, reports, 2)
	got := map[string][2]uint64{}
	for _, u := range reports[1].BucketQuotaUsages {
		got[u.BucketId.Bucket["consumer"]] = [2]uint64{u.NumRequestsAllowed, u.NumRequestsDenied}
		require.Equal(t, 100*time.Millisecond, u.TimeElapsed.AsDuration())
	}
	require.Equal(t, map[string][2]uint64{"team-a": {3, 2}, "team-b": {1, 0}}, got)

	// The same assignment again keeps the spent tokens.
	q.CallOnGrpcReceive(id, quotaAssign(t, 2*time.Second, tokenBucketOf(3), bucket))
	require.Equal(t, 429, q.request(t, "/closed/x", "team-a"))

	// The stream resets: reopened on the next tick, with the usage since.
	q.CallOnGrpcClose(id, 14, "unavailable")
	q.tick(100 * time.Millisecond)
	id2, reports := q.stream(t)
	require.NotEqual(t, id, id2)
	require.Len(t, reports, 1)

	// No answer any more: the assignment holds until its expiry, then the
	// route fails closed.
	q.now = q.now.Add(1500 * time.Millisecond)
	require.Equal(t, 429, q.request(t, "/closed/x", "team-a"))
	q.now = q.now.Add(500 * time.Millisecond)
	require.Equal(t, 503, q.request(t, "/closed/x", "team-a"))
	n, err := q.GetCounterMetric("shepherd_global_limit_failures_total;route=closed;kind=closed")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// TestQuotaModeFailsOpen: a fail-open route whose bucket got no assignment
// in time goes on under its local limits, counted; deny-all refuses.
func TestQuotaModeFailsOpen(t *testing.T) {
	q := newQuotaHost(t)
	require.Zero(t, q.request(t, "/open/x", ""))
	q.now = q.now.Add(time.Duration(quotaWait(&quotaSidecar)) + time.Millisecond)
	require.Zero(t, q.request(t, "/open/x", ""))
	n, err := q.GetCounterMetric("shepherd_global_limit_failures_total;route=open;kind=open")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	q.tick(100 * time.Millisecond)
	id, _ := q.stream(t)
	deny := &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_BlanketRule_{BlanketRule: typev3.RateLimitStrategy_DENY_ALL}}
	q.CallOnGrpcReceive(id, quotaAssign(t, time.Second, deny, map[string]string{"route": "open"}))
	require.Equal(t, 429, q.request(t, "/open/x", ""))
}

// quotaSidecar is quotaConfig's sidecar section as quotaWait reads it.
var quotaSidecar = configSidecar(100, 200)

// TestQuotaLeaseHolderOnly: a VM whose lease another VM holds opens no
// stream; the one that holds it reports every VM's usage.
func TestQuotaLeaseHolderOnly(t *testing.T) {
	q := newQuotaHost(t)
	require.NoError(t, q.SetSharedData(quotaLeaseKey, leaseOf(12345, q.now.Add(time.Minute)), 0))
	require.Zero(t, q.request(t, "/open/x", ""))
	q.tick(100 * time.Millisecond)
	require.Empty(t, q.GetGrpcCalloutAttributesFromContext(proxytest.RootContextID))
	// The record counts the request for whoever reports.
	key := string(appendRecordPrefix(nil, "shepherd")) + string(mustBucketID(t, rls.Entry{Key: "route", Value: "open"}))
	v, _, err := q.GetSharedData(key)
	require.NoError(t, err)
	var rec rlqs.Record
	require.True(t, rec.Decode(v))
	require.EqualValues(t, 1, rec.Allowed)
}

func configSidecar(reportMs, timeoutMs uint32) config.Sidecar {
	return config.Sidecar{QuotaReportMs: reportMs, TimeoutMs: timeoutMs}
}

func leaseOf(owner uint64, until time.Time) []byte {
	return mesh.AppendLease(nil, owner, until.UnixNano())
}

func mustBucketID(t *testing.T, entries ...rls.Entry) []byte {
	b, err := rlqs.AppendBucketID(nil, entries)
	require.NoError(t, err)
	return b
}

// chat sends a chat completion whose answer reports usage tokens and
// returns the local answer's status, 0 when it went on.
func (q *quotaHost) chat(t *testing.T, path string, usage int) int {
	id := q.InitializeHttpContext()
	defer q.CompleteHttpContext(id)
	hdrs := [][2]string{{":method", "POST"}, {":path", path}, {":authority", "api.openai.com"}, {":scheme", "http"}, {"content-type", "application/json"}}
	q.CallOnRequestHeaders(id, hdrs, false)
	q.CallOnRequestBody(id, []byte(`{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`), true)
	require.Empty(t, q.GetGrpcCalloutAttributesFromContext(id), "no call to the sidecar per request")
	if lr := q.GetSentLocalResponse(id); lr != nil {
		return int(lr.StatusCode)
	}
	q.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"content-type", "application/json"}}, false)
	q.CallOnResponseBody(id, []byte(`{"usage":{"prompt_tokens":`+strconv.Itoa(usage-5)+`,"completion_tokens":5,"total_tokens":`+strconv.Itoa(usage)+`}}`), true)
	return 0
}

// TestQuotaModeTokens: the token descriptor is a bucket of its own whose
// requests are tokens: a request starts while the assignment's tokens are
// not spent, its real usage is charged when it ends (into debt) and
// reported as the bucket's usage; no ShouldRateLimit is sent, not even to
// settle.
func TestQuotaModeTokens(t *testing.T) {
	q := newQuotaHost(t)
	require.Zero(t, q.chat(t, "/tokens/v1/chat/completions", 50))
	q.tick(100 * time.Millisecond)
	id, reports := q.stream(t)
	got := map[string]uint64{}
	for _, u := range reports[0].BucketQuotaUsages {
		got[u.BucketId.Bucket["kind"]+"/"+u.BucketId.Bucket["route"]] = u.NumRequestsAllowed
	}
	require.Equal(t, map[string]uint64{"/tokens": 1, "tokens/tokens": 50}, got)

	q.CallOnGrpcReceive(id, quotaAssign(t, time.Minute, tokenBucketOf(60), map[string]string{"kind": "tokens", "route": "tokens"}))
	require.Zero(t, q.chat(t, "/tokens/v1/chat/completions", 50), "60 tokens left")
	require.Zero(t, q.chat(t, "/tokens/v1/chat/completions", 50), "10 left: the request starts, its usage takes the bucket into debt")
	require.Equal(t, 429, q.chat(t, "/tokens/v1/chat/completions", 50))
	q.tick(100 * time.Millisecond)
	_, reports = q.stream(t)
	for _, u := range reports[1].BucketQuotaUsages {
		if u.BucketId.Bucket["kind"] == "tokens" {
			require.EqualValues(t, 100, u.NumRequestsAllowed)
			require.EqualValues(t, 1, u.NumRequestsDenied)
		}
	}
	n, err := q.GetCounterMetric("shepherd_ratelimited_total;route=tokens;kind=global_tokens")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// TestQuotaStreamFollowsTheConfig: a reconfigure that moves the quota
// routes to another domain ends the old domain's stream.
func TestQuotaStreamFollowsTheConfig(t *testing.T) {
	q := &quotaHost{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	cv := &capturingVM{}
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(cv).
		WithClock(func() time.Time { return q.now }).
		WithPluginConfiguration([]byte(quotaConfig)))
	t.Cleanup(release)
	q.HostEmulator = host
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
	require.Zero(t, q.request(t, "/open/x", ""))
	q.tick(100 * time.Millisecond)
	old, _ := q.stream(t)

	cfg, err := config.Parse([]byte(strings.ReplaceAll(quotaConfig, `"mode": "quota"`, `"mode": "quota", "domain": "other"`)), nil)
	require.NoError(t, err)
	pol, err := newPolicy(cfg)
	require.NoError(t, err)
	cv.plugin.policy = pol
	q.tick(100 * time.Millisecond)
	id, reports := q.stream(t)
	require.NotEqual(t, old, id, "the shepherd domain's stream ended")
	require.Empty(t, reports, "the other domain has no bucket yet")
}
