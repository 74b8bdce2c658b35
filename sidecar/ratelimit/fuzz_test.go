package ratelimit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

// FuzzParseConfig feeds arbitrary documents to the parser: it must return a
// config or an error naming the document, never panic, and every limit of a
// config it accepts must have a window unless it is unlimited.
func FuzzParseConfig(f *testing.F) {
	for _, pattern := range []string{"testdata/*.yaml", "testdata/bad/*.yaml", "testdata/multi/*.y*ml"} {
		files, err := filepath.Glob(pattern)
		require.NoError(f, err)
		for _, p := range files {
			data, err := os.ReadFile(p)
			require.NoError(f, err)
			f.Add(data)
		}
	}
	f.Add([]byte("domain: d\ndescriptors:\n  - key: k\n    value: '*a*b*'\n    rate_limit: {unit: second, requests_per_unit: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ratelimit.ParseConfig("fuzz.yaml", data)
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "fuzz.yaml: "), err.Error())
			return
		}
		require.Len(t, cfg.Domains(), 1)
		require.NotEmpty(t, cfg.Domains()[0])
		for _, l := range cfg.Limits() {
			if !l.Unlimited {
				require.Positive(t, l.Period(), l.FullKey)
			}
		}
	})
}
