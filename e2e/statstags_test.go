package e2e_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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
}
