package validate

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func checkFile(t *testing.T, path string) error {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	objs, err := Decode(filepath.Base(path), data)
	if err != nil {
		return err
	}
	return Objects(objs, Options{})
}

// TestBrokenFixtures proves each check can fail: one deliberately broken
// fixture per kind and rule, each with the error it must produce.
func TestBrokenFixtures(t *testing.T) {
	cases := map[string]string{
		// Strict decoding.
		"wasmplugin-unknown-field.yaml": `unknown field "pluginConfg"`,
		"deployment-unknown-field.yaml": `Deployment: json: unknown field "replica"`,
		"unknown-kind.yaml":             `networking.istio.io/v1/WorkloadGroup: kind not known to shepherd's validation`,
		// Istio's admission validation.
		"wasmplugin-istio-url.yaml": `WasmPlugin llm-apps/shepherd: rejected by Istio's validation: url contains unsupported scheme: ftp`,
		"serviceentry.yaml":         `ServiceEntry llm-apps/provider-any: rejected by Istio's validation: hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS`,
		"destinationrule.yaml":      `DestinationRule llm-apps/provider-relay: rejected by Istio's validation: empty domain name not allowed`,
		"envoyfilter.yaml":          `EnvoyFilter llm-apps/shepherd-sidecar-cluster: Istio's validation warns: Envoy filter: unknown field "http2_protocol_option" in envoy.config.cluster.v3.Cluster`,
		"authorizationpolicy.yaml":  `AuthorizationPolicy llm-apps/shepherd-sidecar: rejected by Istio's validation: 1 error occurred:` + "\n\t* invalid policy shepherd-sidecar.llm-apps: bad port (grpc)",
		"peerauthentication.yaml":   `PeerAuthentication llm-apps/shepherd-sidecar: rejected by Istio's validation: mesh/namespace peer authentication cannot have port level mTLS`,
		"envoyfilter-envoy.yaml":    `EnvoyFilter llm-apps/shepherd-sidecar-cluster: spec.configPatches[0].patch.value: rejected by Envoy's validation: invalid Cluster.Name: value length must be at least 1 runes`,
		// shepherd's rules for one object.
		"wasmplugin-unpinned.yaml":          `WasmPlugin llm-apps/shepherd: spec.url: "oci://ghcr.io/shepherd-mesh/shepherd-filter:latest" must be an oci:// image pinned by digest`,
		"wasmplugin-fail-closed.yaml":       `WasmPlugin llm-apps/shepherd: spec.failStrategy: FAIL_CLOSE: must be FAIL_OPEN`,
		"wasmplugin-config.yaml":            `WasmPlugin llm-apps/shepherd: spec.pluginConfig: routes[0].fallback.models[0]: unknown model "gpt-5" (list it under models)`,
		"wasmplugin-inline-credential.yaml": `WasmPlugin llm-apps/shepherd: spec.pluginConfig.providers[0].credential.inline: credentials must not sit in the manifest`,
		"wasmplugin-env-inline.yaml":        `WasmPlugin llm-apps/shepherd: spec.vmConfig.env[RELAY_API_KEY]: valueFrom must be HOST`,
		"wasmplugin-inline-token.yaml":      `WasmPlugin llm-apps/shepherd: spec.pluginConfig.sidecar.token.inline: the filter token must not sit in the manifest`,
		"deployment.yaml":                   `Deployment llm-apps/shepherd-sidecar: spec.template.spec.containers[0].readinessProbe: must be set`,
		"deployment-sidecar-unpinned.yaml":  `Deployment llm-apps/shepherd-sidecar: spec.template.spec.containers[0].image: "ghcr.io/shepherd-mesh/shepherd-sidecar:dev" must be pinned by digest`,
		"secret.yaml":                       `Secret shepherd-provider-keys: stringData.RELAY_API_KEY: holds a value`,
		"configmap-sidecar.yaml":            `ConfigMap shepherd-sidecar-config-abc123: data.sidecar.yaml: canary.routes[0].steps[2]: must be greater than the previous step`,
		"configmap-ratelimit.yaml":          `ConfigMap shepherd-sidecar-config-abc123: data.ratelimit.yaml: ratelimit.yaml: descriptors[0].rate_limit.unit: unknown unit "fortnight"`,
		"configmap-stats-tags.yaml":         `ConfigMap shepherd-stats-tags: data.custom_bootstrap.json stats_tags[0]: is route=^wasmcustom\.[^;]*(?:;[^;]*)*?(;routes=([^;]*)), the filter's is route=`,
		"configmap-gateway-options.yaml":    `ConfigMap shepherd-gateway-options: data.deployment: istio-proxy has no ISTIO_BOOTSTRAP_OVERRIDE`,
		"hpa.yaml":                          `HorizontalPodAutoscaler ai-worker: spec.maxReplicas: 5 is below minReplicas 10`,
		// shepherd's rules across objects.
		"provider-no-serviceentry.yaml":      `WasmPlugin llm-apps/shepherd: spec.pluginConfig.providers[0]: provider "relay": no ServiceEntry for host relay.example.com`,
		"provider-no-tls.yaml":               `WasmPlugin llm-apps/shepherd: spec.pluginConfig.providers[0]: provider "relay": the DestinationRule for relay.example.com does not originate TLS on port 80 (tls.mode DISABLE)`,
		"no-stats-tags.yaml":                 `WasmPlugin llm-apps/shepherd: overlay: no ConfigMap shepherd-stats-tags`,
		"wasmplugin-overlap.yaml":            `WasmPlugin llm-apps/shepherd and WasmPlugin llm-apps/shepherd-canary can select the same pods`,
		"callout-cluster.yaml":               `EnvoyFilter llm-apps/shepherd-sidecar-cluster: spec.configPatches[0].patch.value: cluster shepherd-sidecar: endpoint shepherd-sidecar.default.svc.cluster.local:8081, the sidecar's Service is shepherd-sidecar.llm-apps.svc.cluster.local:8081`,
		"pluginconfig-sidecar-cluster.yaml":  `WasmPlugin llm-apps/shepherd: spec.pluginConfig.sidecar.cluster: "shepherd-sidecar" is added by no EnvoyFilter of the overlay`,
		"pluginconfig-sidecar-outbound.yaml": `WasmPlugin llm-apps/shepherd: spec.pluginConfig.sidecar.cluster: "outbound|8081||shepherd-sidecar.shepherd.svc.cluster.local": no Service shepherd-sidecar in namespace "shepherd" in the overlay`,
		"pluginconfig-global-domain.yaml":    `WasmPlugin llm-apps/shepherd: spec.pluginConfig.routes[0].globalLimits.domain: "other" is not a domain of the sidecar's rate limit config`,
		"pluginconfig-no-token.yaml":         `WasmPlugin llm-apps/shepherd: spec.pluginConfig.sidecar.token: is required: the sidecar's config sets providers[0].credential`,
		"service.yaml":                       `Service llm-apps/shepherd-sidecar: spec.selector: map[app.kubernetes.io/name:shepherd-sidecar] matches no Deployment's pods in the overlay`,
		"poddisruptionbudget.yaml":           `PodDisruptionBudget llm-apps/shepherd-sidecar: spec.selector.matchLabels: map[app.kubernetes.io/name:shepherd-sidecar] matches no Deployment's pods`,
		"gateway.yaml":                       `Gateway llm-gateway/llm-gateway: spec.infrastructure.parametersRef: ConfigMap shepherd-gateway-options is not in the overlay's namespace "llm-gateway"`,
		"httproute.yaml":                     `HTTPRoute llm-gateway/provider-relay: spec.rules[0].backendRefs[0]: no ServiceEntry with host relay.example.com and that port`,
	}
	files, err := filepath.Glob("testdata/broken/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, len(cases), "every fixture has a case and every case a fixture")
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			err := checkFile(t, filepath.Join("testdata", "broken", name))
			require.Error(t, err)
			require.Contains(t, err.Error(), name+"#")
			require.Contains(t, err.Error(), want)
		})
	}
}

// TestGoodFixture is the set the broken fixtures break: it passes.
func TestGoodFixture(t *testing.T) {
	require.NoError(t, checkFile(t, filepath.Join("testdata", "good", "plugin-and-provider.yaml")))
}
