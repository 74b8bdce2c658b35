package telemetry

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// extract applies the tags as Envoy's tag extractor does: for each regex that
// matches, the first group is removed from the name and the second is the value.
func extract(name string) (string, map[string]string) {
	tags := map[string]string{}
	for _, st := range StatsTags {
		re := regexp.MustCompile(st.Regex)
		m := re.FindStringSubmatchIndex(name)
		if m == nil {
			continue
		}
		tags[st.Name] = name[m[4]:m[5]]
		name = name[:m[2]] + name[m[3]:]
	}
	return name, tags
}

func TestStatsTagsRecoverLabels(t *testing.T) {
	cases := []struct {
		name string
		base string
		tags map[string]string
	}{
		{Name(Requests, LabelRoute, "chat-v2", LabelProvider, "relay_eu", LabelModel, "gpt-4.1", LabelCode, "2xx"),
			Requests, map[string]string{"route": "chat-v2", "provider": "relay_eu", "model": "gpt-4.1", "code": "2xx"}},
		{Name(Fallbacks, LabelRoute, "chat", LabelFrom, "gpt-4.1", LabelTo, "deepseek-v3.2", LabelReason, "status"),
			Fallbacks, map[string]string{"route": "chat", "from": "gpt-4.1", "to": "deepseek-v3.2", "reason": "status"}},
		{Name(GenAITokenUsage, LabelGenAIModel, "anthropic/claude-sonnet-4.5", LabelGenAITokenType, "input"),
			GenAITokenUsage, map[string]string{"gen_ai_request_model": "anthropic/claude-sonnet-4.5", "gen_ai_token_type": "input"}},
		{Name(Duration, LabelRoute, "r", LabelProvider, "p"), Duration, map[string]string{"route": "r", "provider": "p"}},
	}
	for _, tc := range cases {
		t.Run(tc.base, func(t *testing.T) {
			name, tags := extract("wasmcustom." + tc.name)
			require.Equal(t, "wasmcustom."+tc.base, name)
			require.Equal(t, tc.tags, tags)
		})
	}
}

func TestStatsTagsLeaveOtherMetricsAlone(t *testing.T) {
	name, tags := extract("cluster.outbound|443||api.example.com.upstream_rq_total")
	require.Equal(t, "cluster.outbound|443||api.example.com.upstream_rq_total", name)
	require.Empty(t, tags)
	name, tags = extract("wasmcustom.other_metric")
	require.Equal(t, "wasmcustom.other_metric", name)
	require.Empty(t, tags)
}

func TestCodeClass(t *testing.T) {
	for status, want := range map[int]string{200: "2xx", 429: "4xx", 503: "5xx", 101: "1xx", 304: "3xx", 0: "other", 600: "other"} {
		require.Equal(t, want, CodeClass(status))
	}
}
