package validate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	extensions "istio.io/api/extensions/v1alpha1"
)

func shippedPlugin(t *testing.T) *extensions.WasmPlugin {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(istioDir, "plugin", "wasmplugin.yaml"))
	require.NoError(t, err)
	objs, err := Decode("wasmplugin.yaml", data)
	require.NoError(t, err)
	return objs[0].Value.(*extensions.WasmPlugin)
}

// TestFilesOutsideOverlays checks the files users apply by hand.
func TestFilesOutsideOverlays(t *testing.T) {
	require.NoError(t, WorkloadPatch(filepath.Join(istioDir, "overlays", "namespace", "ai-worker-patch.yaml"), shippedPlugin(t)))
	require.NoError(t, MeshConfig(filepath.Join(istioDir, "overlays", "mesh-wide", "meshconfig.yaml")))
	for _, f := range []string{"provider-keys.secret.yaml", "admin-token.secret.yaml", "filter-token.secret.yaml"} {
		require.NoError(t, checkFile(t, filepath.Join(istioDir, "base", f)), f)
	}
	require.NoError(t, EnvoyBootstrap(filepath.Join(istioDir, "envoy", "envoy.yaml")))
}

func TestBrokenFiles(t *testing.T) {
	dir := filepath.Join("testdata", "broken-files")
	err := WorkloadPatch(filepath.Join(dir, "workload-patch.yaml"), shippedPlugin(t))
	require.ErrorContains(t, err, "spec.template.metadata.labels: shepherd.io/filter=enabled missing, the WasmPlugin selects it")
	require.ErrorContains(t, err, "spec.template.metadata.annotations: sidecar.istio.io/bootstrapOverride must be shepherd-stats-tags")
	require.ErrorContains(t, err, "proxyStatsMatcher.inclusionPrefixes: wasmcustom.gen_ai_ missing")
	require.ErrorContains(t, err, "istio-proxy env RELAY_API_KEY: has an inline value; take it from a Secret")
	require.ErrorContains(t, err, "istio-proxy env: OPENAI_API_KEY is not set from a Secret")

	require.ErrorContains(t, MeshConfig(filepath.Join(dir, "meshconfig.yaml")), `unknown field "proxyStatMatcher"`)

	err = EnvoyBootstrap(filepath.Join(dir, "envoy.yaml"))
	require.ErrorContains(t, err, "stats_config.stats_tags: 1 tags, the filter defines 13")
	require.ErrorContains(t, err, "config.fail_open must be true")
	require.ErrorContains(t, err, `providers[0] (relay): cluster "relay" is not defined`)
	require.ErrorContains(t, err, "static_resources.clusters: no shepherd-sidecar cluster")
	require.ErrorContains(t, err, `config.configuration: sidecar.cluster "shepherd-sidecar" is not defined`)
	require.ErrorContains(t, EnvoyBootstrap(filepath.Join(dir, "envoy-invalid.yaml")), "rejected by Envoy's validation: invalid Bootstrap.StaticResources")
}
