package e2e_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
)

// TestLocalStatsTagsMatchTheFilter: the local mesh's stats tags (make run) are
// exactly the filter's, so every label the filter encodes reaches /stats/prometheus.
func TestLocalStatsTagsMatchTheFilter(t *testing.T) {
	data, err := os.ReadFile("local/stats-tags.txt")
	require.NoError(t, err)
	var want []string
	for _, st := range telemetry.StatsTags {
		want = append(want, st.Name+"="+st.Regex)
	}
	require.Equal(t, want, strings.Fields(string(data)))

	// The same in the local mesh's Envoy bootstrap (make run serves it).
	data, err = os.ReadFile("local/envoy.yaml")
	require.NoError(t, err)
	b, err := envoy.LoadBootstrap(data, "local")
	require.NoError(t, err)
	var got []string
	for _, st := range b.Config.StatsTags {
		got = append(got, st.Name+"="+st.Regex)
	}
	require.Equal(t, want, got)
}
