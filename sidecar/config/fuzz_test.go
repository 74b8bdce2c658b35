package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/sidecar/config"
)

// FuzzParse holds that any input either fails with an error or yields a
// config whose defaults are filled in; it never panics.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	require.NoError(f, err)
	for _, p := range files {
		data, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte("{}"))
	f.Add([]byte("health: {window: 1h, cooldown: [1]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			require.Nil(t, c)
			return
		}
		require.NotZero(t, c.Health.Window)
		require.NotNil(t, c.Health.MaxErrorRate)
		for _, p := range c.Canary.Routes {
			require.NotEmpty(t, p.Steps)
			require.NotNil(t, p.MaxErrorRate)
		}
	})
}
