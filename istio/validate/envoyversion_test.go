package validate

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// envoyRequirement finds a stated minimum Envoy version: "Envoy 1.39 or
// later", "Envoy 1.37+", "Envoy 1.39 and later".
var envoyRequirement = regexp.MustCompile(`Envoy\s+(1\.\d+)(\+|\s+or later|\s+and later)`)

// TestOneEnvoyRequirement: the README states the Envoy version shepherd
// requires; the install docs, the Istio manifests and the ABI binding's notes
// state the same one (the e2e host's notes say which Envoy it emulates, not a
// requirement, and are not read).
func TestOneEnvoyRequirement(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	m := envoyRequirement.FindSubmatch(readme)
	require.NotNil(t, m, "README.md states the Envoy version it requires")
	want := string(m[1])

	files := []string{filepath.Join(root, "README.md"), filepath.Join(root, "filter", "proxywasm", "README.md")}
	for _, dir := range []string{filepath.Join(root, "docs"), filepath.Join(root, "istio")} {
		require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if strings.Contains(p, "testdata") || !(strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".yaml")) {
				return nil
			}
			files = append(files, p)
			return nil
		}))
	}
	stated := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, got := range envoyRequirement.FindAllSubmatch(data, -1) {
			stated++
			require.Equal(t, want, string(got[1]), "%s requires Envoy %s, the README %s", f, got[1], want)
		}
	}
	require.GreaterOrEqual(t, stated, 4, "README, INSTALL.md, envoy.yaml and the binding's notes state it")
}
