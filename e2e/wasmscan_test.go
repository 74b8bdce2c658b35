package e2e_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

// TestBodyScansUnderWasm runs filter/body's scan tests compiled for wasip1
// under wazero: under GOARCH=wasm the body scans are assembly
// (filter/body/scan_wasm.s), which native test runs never reach; the tests
// check them against the Go scans and the byte-at-a-time reference.
func TestBodyScansUnderWasm(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "body.test.wasm")
	cmd := exec.Command("go", "test", "-c", "-o", bin, "./filter/body/")
	cmd.Dir = wasmbuild.Root()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	code, err := os.ReadFile(bin)
	require.NoError(t, err)

	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(compileCache))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	var log strings.Builder
	cfg := wazero.NewModuleConfig().
		WithArgs("body.test", "-test.v", "-test.run", "StringEnd|FlatMessages|ScansOnRandomBodies|InspectRequestChecks|FuzzInspectRequest").
		WithStdout(&log).WithStderr(&log).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader).
		WithFSConfig(wazero.NewFSConfig().WithReadOnlyDirMount(filepath.Join(wasmbuild.Root(), "filter", "body"), "/"))
	_, err = r.InstantiateWithConfig(ctx, code, cfg)
	var exit *sys.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 0 {
		err = nil
	}
	require.NoError(t, err, "%s", log.String())
	for _, name := range []string{"TestStringEnd", "TestFlatMessages", "TestScansOnRandomBodies", "FuzzInspectRequest"} {
		require.Contains(t, log.String(), "--- PASS: "+name+" ", "%s", log.String())
	}
}
