package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/config"
)

func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "shepherd-validate: want `overlay DIR` or `wasmplugin FILE`"},
		{[]string{"overlay"}, exitUsage, "shepherd-validate: want `overlay DIR` or `wasmplugin FILE`"},
		{[]string{"istio", "x"}, exitUsage, `shepherd-validate: unknown command "istio" (overlay, wasmplugin)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := cli(tt.args...)
			require.Equal(t, tt.code, code)
			require.Empty(t, out)
			require.Contains(t, errs, tt.want)
			require.Contains(t, errs, "usage: shepherd-validate")
		})
	}
	code, out, _ := cli("--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "wasmplugin FILE")
}

func TestValidate(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
		err  string // the whole of stderr when it ends in a newline, else a part of it
	}{
		{[]string{"wasmplugin", "testdata/wasmplugin.yaml"}, exitOK, "ok: testdata/wasmplugin.yaml: WasmPlugin shepherd\n", ""},
		{[]string{"wasmplugin", "testdata/wasmplugin-unknown.yaml"}, exitFail, "",
			"shepherd-validate: wasmplugin testdata/wasmplugin-unknown.yaml:\ntestdata/wasmplugin-unknown.yaml#0: WasmPlugin shepherd: spec: proto: (line 1:45): unknown field \"pluginConfg\"\n"},
		{[]string{"wasmplugin", "testdata/wasmplugin-nourl.yaml"}, exitFail, "",
			"shepherd-validate: wasmplugin testdata/wasmplugin-nourl.yaml:\n" +
				"testdata/wasmplugin-nourl.yaml#0: WasmPlugin shepherd: rejected by Istio's validation: url field needs to be set\n" +
				"testdata/wasmplugin-nourl.yaml#0: WasmPlugin shepherd: spec.url: \"\" must be an oci:// image pinned by digest (oci://REPOSITORY@sha256:<64 hex>), so every proxy runs the same filter\n"},
		{[]string{"wasmplugin", "testdata/wasmplugin-badmeta.yaml"}, exitFail, "",
			"shepherd-validate: wasmplugin testdata/wasmplugin-badmeta.yaml:\ntestdata/wasmplugin-badmeta.yaml#0: WasmPlugin: json: unknown field \"lables\"\n"},
		{[]string{"wasmplugin", "testdata/wasmplugin-badconfig.yaml"}, exitFail, "",
			"shepherd-validate: wasmplugin testdata/wasmplugin-badconfig.yaml:\ntestdata/wasmplugin-badconfig.yaml#0: WasmPlugin shepherd: spec.pluginConfig: routes[0].provider: unknown provider \"relai\"\n"},
		{[]string{"wasmplugin", "testdata/wasmplugin-env.yaml"}, exitFail, "",
			"shepherd-validate: wasmplugin testdata/wasmplugin-env.yaml:\ntestdata/wasmplugin-env.yaml#0: WasmPlugin shepherd: spec.pluginConfig.providers[0].credential.env: RELAY_API_KEY is not in spec.vmConfig.env, so the filter never sees it\n"},
		{[]string{"wasmplugin", "testdata/configmap.yaml"}, exitFail, "",
			"shepherd-validate: wasmplugin testdata/configmap.yaml:\nno WasmPlugin document found\n"},
		{[]string{"wasmplugin", "testdata/missing.yaml"}, exitFail, "", "no such file"},
		{[]string{"overlay", "../../overlays/namespace"}, exitOK, "ok: ../../overlays/namespace\n", ""},
		{[]string{"overlay", "../../validate/testdata/broken-overlay"}, exitFail, "",
			"shepherd-validate: overlay ../../validate/testdata/broken-overlay:\nkustomize build ../../validate/testdata/broken-overlay: accumulating resources"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := cli(tt.args...)
			// protojson puts a no-break space or a space after "proto:" at
			// random, so that nobody compares its texts; here they are.
			errs = strings.ReplaceAll(errs, "\u00a0", " ")
			require.Equal(t, tt.code, code, errs)
			require.Equal(t, tt.out, out)
			if strings.HasSuffix(tt.err, "\n") {
				require.Equal(t, tt.err, errs)
			} else {
				require.Contains(t, errs, tt.err)
			}
		})
	}
}

// TestFilterFixturesInAWasmPlugin wraps each of the filter's valid config
// fixtures in a WasmPlugin that takes every variable it names from the proxy:
// the manifest check accepts what the filter accepts, as the filter's schema
// grows. Without the variables in vmConfig.env it names each one.
func TestFilterFixturesInAWasmPlugin(t *testing.T) {
	valid, err := filepath.Glob("../../../filter/config/testdata/valid/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, valid)
	for _, p := range valid {
		t.Run(filepath.Base(p), func(t *testing.T) {
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			cfg, err := config.Parse(data, func(string) (string, bool) { return "set", true })
			require.NoError(t, err)
			vars := map[string]bool{}
			for _, pr := range cfg.Providers {
				if name, ok := strings.CutPrefix(pr.CredentialSource, "env "); ok {
					vars[name] = true
				}
			}
			if cfg.Sidecar != nil {
				if name, ok := strings.CutPrefix(cfg.Sidecar.TokenSource, "env "); ok {
					vars[name] = true
				}
			}
			var names []string
			for n := range vars {
				names = append(names, n)
			}
			sort.Strings(names)
			manifest := func(env []string) string {
				var b strings.Builder
				b.WriteString("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: shepherd}\nspec:\n" +
					"  url: oci://ghcr.io/shepherd-mesh/shepherd-filter@sha256:307db19f127d8444b7d106ed5cb41dfb630e101fc27c862e649e12fa1f92469a\n" +
					"  phase: AUTHZ\n  priority: 10\n  failStrategy: FAIL_OPEN\n  vmConfig:\n    env:\n")
				for _, n := range env {
					b.WriteString("      - {name: " + n + ", valueFrom: HOST}\n")
				}
				if len(env) == 0 {
					b.WriteString("      []\n")
				}
				b.WriteString("  pluginConfig:\n    " + strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", "\n    ") + "\n")
				return b.String()
			}
			wp := filepath.Join(t.TempDir(), "wp.yaml")
			require.NoError(t, os.WriteFile(wp, []byte(manifest(names)), 0o600))
			code, out, errs := cli("wasmplugin", wp)
			require.Equal(t, exitOK, code, errs)
			require.Equal(t, "ok: "+wp+": WasmPlugin shepherd\n", out)

			if len(names) == 0 {
				return
			}
			require.NoError(t, os.WriteFile(wp, []byte(manifest(nil)), 0o600))
			code, _, errs = cli("wasmplugin", wp)
			require.Equal(t, exitFail, code)
			for _, n := range names {
				require.Contains(t, errs, n+" is not in spec.vmConfig.env, so the filter never sees it")
			}
		})
	}
}
