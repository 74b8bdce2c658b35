package e2e_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// MaxReleaseModule is the release module's budget (DESIGN, docs/BENCHMARKS.md):
// every VM of every worker of every proxy loads and compiles it.
const maxReleaseModule = 4 << 20

// TestReleaseModuleBudget builds the filter as make wasm does and fails when
// the module exceeds 4 MiB. The flags are the Makefile's WASMFLAGS, so the
// module measured is the one released.
func TestReleaseModuleBudget(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(wasmbuild.Root(), "Makefile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^WASMFLAGS\s*:=\s*(.*)$`).FindSubmatch(mk)
	require.NotNil(t, m, "the Makefile defines WASMFLAGS")
	require.Equal(t, wasmbuild.ReleaseFlags, shellFields(string(m[1])), "internal/wasmbuild builds what make wasm builds")

	mod, err := wasmbuild.Build("./filter")
	require.NoError(t, err)
	t.Logf("release module: %d bytes (budget %d)", len(mod), maxReleaseModule)
	require.LessOrEqual(t, len(mod), maxReleaseModule, "the release module exceeds its 4 MiB budget")
}

// shellFields splits a command line as a shell does for the simple forms a
// Makefile uses: words apart by blanks, double quotes keep blanks and go.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, word := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, word = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if word {
				out = append(out, cur.String())
				cur.Reset()
				word = false
			}
		default:
			cur.WriteRune(r)
			word = true
		}
	}
	if word {
		out = append(out, cur.String())
	}
	return out
}

// BenchmarkModuleSizes builds the small reactors of e2e/testdata/modsize
// (each the empty one plus one library, docs/RATIONALE.md) and the filter
// with the release flags, and reports each module's size: what a library
// costs every VM before the filter does anything.
//
//	go test ./e2e -run '^$' -bench BenchmarkModuleSizes -benchtime 1x
func BenchmarkModuleSizes(b *testing.B) {
	for _, pkg := range []string{"empty", "fmt", "json", "jsonfmt", "protowire", "protomsg", "../noop", "filter"} {
		path := "./e2e/testdata/modsize/" + pkg
		if pkg == "filter" {
			path = "./filter"
		}
		b.Run(strings.TrimPrefix(pkg, "../"), func(b *testing.B) {
			mod, err := wasmbuild.Build(path)
			require.NoError(b, err)
			b.ResetTimer() // the time is the build's, not a figure
			b.ReportMetric(float64(len(mod)), "module-bytes")
		})
	}
}
