package rlqs_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	rlqfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rate_limit_quota/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
)

// docBlock returns the fenced block that follows marker in docs/RATELIMIT.md.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	data, err := os.ReadFile("../../docs/RATELIMIT.md")
	require.NoError(t, err)
	doc := string(data)
	i := strings.Index(doc, "<!-- "+marker+" -->")
	require.GreaterOrEqual(t, i, 0, "marker %s", marker)
	rest := doc[i:]
	start := strings.Index(rest, "```yaml\n")
	require.GreaterOrEqual(t, start, 0)
	rest = rest[start+len("```yaml\n"):]
	end := strings.Index(rest, "```")
	require.GreaterOrEqual(t, end, 0)
	return rest[:end]
}

// TestDocsEnvoyFilterConfig: the Envoy snippet of docs/RATELIMIT.md passes
// Envoy's validation rules (the generated protoc-gen-validate checks), and the
// bucket ids it builds take the documented limits from the documented
// rate limit config when reported to the service.
func TestDocsEnvoyFilterConfig(t *testing.T) {
	js, err := yaml.YAMLToJSON([]byte(docBlock(t, "rlqs-envoy-filter")))
	require.NoError(t, err)
	var hcm hcmv3.HttpConnectionManager
	require.NoError(t, protojson.Unmarshal(js, &hcm))
	require.Len(t, hcm.GetHttpFilters(), 2)
	for _, f := range hcm.GetHttpFilters() {
		require.NoError(t, f.ValidateAll(), f.GetName())
	}
	var fc rlqfilterv3.RateLimitQuotaFilterConfig
	require.NoError(t, hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(&fc))
	require.NoError(t, fc.ValidateAll())
	require.NoError(t, fc.GetBucketMatchers().ValidateAll())
	require.Equal(t, "shepherd-sidecar", fc.GetRlqsServer().GetEnvoyGrpc().GetClusterName())
	matchers := fc.GetBucketMatchers().GetMatcherList().GetMatchers()
	require.Len(t, matchers, 1)
	var bs rlqfilterv3.RateLimitQuotaBucketSettings
	require.NoError(t, matchers[0].GetOnMatch().GetAction().GetTypedConfig().UnmarshalTo(&bs))
	require.NoError(t, bs.ValidateAll())
	builder := bs.GetBucketIdBuilder().GetBucketIdBuilder()
	require.Contains(t, builder, "model")
	require.Equal(t, time.Second, bs.GetReportingInterval().AsDuration())

	cfg, err := ratelimit.ParseConfig("RATELIMIT.md", []byte(docBlock(t, "rlqs-ratelimit-config")))
	require.NoError(t, err)
	require.Equal(t, fc.GetDomain(), cfg.Domains()[0])
	h := newHarness(t, rlqs.Options{})
	h.svc.SetConfig(cfg)
	st, err := rlqsv3.NewRateLimitQuotaServiceClient(h.cc).StreamRateLimitQuotas(context.Background())
	require.NoError(t, err)
	require.NoError(t, st.Send(usage(fc.GetDomain(), map[string]string{"model": "gpt-4o"}, map[string]string{"model": "llama"})))
	resp, err := st.Recv()
	require.NoError(t, err)
	require.Len(t, resp.GetBucketAction(), 2)
	for i, want := range []struct {
		perFill uint32
		fill    time.Duration
	}{{10, time.Second}, {1, time.Second}} { // 600 and 60 per minute
		tb := resp.GetBucketAction()[i].GetQuotaAssignmentAction().GetRateLimitStrategy().GetTokenBucket()
		require.Equal(t, want.perFill, tb.GetTokensPerFill().GetValue())
		require.Equal(t, want.fill, tb.GetFillInterval().AsDuration())
	}
}
