package main

import (
	"go/build"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFilterImportsNoFormattingOrReflection: the filter package itself (the
// ABI callbacks, built for wasip1) imports neither fmt, reflect nor
// encoding/json. Each would add hundreds of kilobytes to every VM
// (docs/RATIONALE.md) and invite per-request formatting on the hot path;
// strconv and filter/jsonlite do their work here.
func TestFilterImportsNoFormattingOrReflection(t *testing.T) {
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH = "wasip1", "wasm"
	pkg, err := ctx.ImportDir(".", 0)
	require.NoError(t, err)
	require.Equal(t, "main", pkg.Name)
	require.NotEmpty(t, pkg.Imports)
	for _, banned := range []string{"fmt", "reflect", "encoding/json"} {
		require.NotContains(t, pkg.Imports, banned, "package filter imports %s", banned)
	}
}
