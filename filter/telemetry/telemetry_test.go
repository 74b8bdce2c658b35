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
	name, tags := extract("wasmcustom." + RouteProvider(Requests, "chat-v2", "relay_eu"))
	require.Equal(t, "wasmcustom.shepherd.requests", name)
	require.Equal(t, map[string]string{"route": "chat-v2", "provider": "relay_eu"}, tags)
}

func TestStatsTagsLeaveOtherMetricsAlone(t *testing.T) {
	name, tags := extract("wasmcustom.other.route.x")
	require.Equal(t, "wasmcustom.other.route.x", name)
	require.Empty(t, tags)
}
