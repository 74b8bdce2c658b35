package wire

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImportsStayLight holds the codecs the filter talks to the sidecar with to
// the few imports the wasm module can afford: no fmt, reflect, encoding/binary or
// protobuf runtime, for the target the filter is built for.
func TestImportsStayLight(t *testing.T) {
	const mod = "github.com/shepherd-mesh/shepherd/filter/"
	for _, pkg := range []string{"wire", "rls", "policywire"} {
		t.Run(pkg, func(t *testing.T) {
			list := func(args ...string) []string {
				cmd := exec.Command("go", append([]string{"list"}, append(args, mod+pkg)...)...)
				cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
				out, err := cmd.Output()
				require.NoError(t, err)
				return strings.Fields(string(out))
			}
			allowed := map[string]bool{
				"errors": true, "strconv": true, "math": true, "unicode/utf8": true, mod + "wire": true,
			}
			for _, imp := range list("-f", `{{join .Imports " "}}`) {
				require.True(t, allowed[imp], "imports %s", imp)
			}
			deps := list("-deps")
			require.Contains(t, deps, "strconv")
			for _, dep := range deps {
				require.NotContains(t, []string{"fmt", "reflect", "encoding/binary", "strings", "bytes"}, dep)
				require.False(t, strings.HasPrefix(dep, "google.golang.org/protobuf"), "depends on %s", dep)
			}
		})
	}
}
