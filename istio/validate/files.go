package validate

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	extensions "istio.io/api/extensions/v1alpha1"
	meshconfig "istio.io/api/mesh/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// Annotations and labels a workload running the filter carries.
const (
	BootstrapOverrideAnnotation = "sidecar.istio.io/bootstrapOverride"
	ProxyConfigAnnotation       = "proxy.istio.io/config"
)

// WorkloadPatch checks a Deployment patch that enables the filter on a
// workload (istio/overlays/namespace/ai-worker-patch.yaml): it decodes
// strictly, carries the labels plugin selects, the stats tags bootstrap
// override and a proxy config that decodes into Istio's ProxyConfig, and its
// istio-proxy container gets every variable the plugin reads from the proxy's
// environment from a Secret.
func WorkloadPatch(path string, plugin *extensions.WasmPlugin) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var d appsv1.Deployment
	if err := strictYAML(data, &d); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	tmpl := d.Spec.Template
	for k, v := range plugin.GetSelector().GetMatchLabels() {
		if tmpl.Labels[k] != v {
			errs = append(errs, fmt.Errorf("%s: spec.template.metadata.labels: %s=%s missing, the WasmPlugin selects it", path, k, v))
		}
	}
	if tmpl.Annotations[BootstrapOverrideAnnotation] != StatsTagsConfigMap {
		errs = append(errs, fmt.Errorf("%s: spec.template.metadata.annotations: %s must be %s", path, BootstrapOverrideAnnotation, StatsTagsConfigMap))
	}
	if err := ProxyConfig([]byte(tmpl.Annotations[ProxyConfigAnnotation])); err != nil {
		errs = append(errs, fmt.Errorf("%s: spec.template.metadata.annotations[%s]: %w", path, ProxyConfigAnnotation, err))
	}
	fromSecret := map[string]bool{}
	for _, c := range tmpl.Spec.Containers {
		if c.Name != "istio-proxy" {
			continue
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				fromSecret[e.Name] = true
			} else if e.Value != "" {
				errs = append(errs, fmt.Errorf("%s: istio-proxy env %s: has an inline value; take it from a Secret", path, e.Name))
			}
		}
	}
	for _, e := range plugin.GetVmConfig().GetEnv() {
		if e.GetValueFrom() == extensions.EnvValueSource_HOST && !fromSecret[e.GetName()] {
			errs = append(errs, fmt.Errorf("%s: istio-proxy env: %s is not set from a Secret, the WasmPlugin reads it from the proxy", path, e.GetName()))
		}
	}
	return errors.Join(errs...)
}

// ProxyConfig checks a proxy.istio.io/config value: it decodes strictly into
// Istio's ProxyConfig and keeps the filter's stats (wasmcustom.*).
func ProxyConfig(data []byte) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	var pc meshconfig.ProxyConfig
	if err := protojson.Unmarshal(js, &pc); err != nil {
		return err
	}
	return keepsFilterStats(pc.GetProxyStatsMatcher())
}

// MeshConfig checks a meshConfig fragment: it decodes strictly into Istio's
// MeshConfig and its default proxy config keeps the filter's stats.
func MeshConfig(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var mc meshconfig.MeshConfig
	if err := protojson.Unmarshal(js, &mc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := keepsFilterStats(mc.GetDefaultConfig().GetProxyStatsMatcher()); err != nil {
		return fmt.Errorf("%s: defaultConfig: %w", path, err)
	}
	return nil
}

// filterStatPrefixes are the prefixes of the filter's stats in Envoy.
var filterStatPrefixes = []string{"wasmcustom.shepherd_", "wasmcustom.gen_ai_"}

func keepsFilterStats(m *meshconfig.ProxyConfig_ProxyStatsMatcher) error {
	have := map[string]bool{}
	for _, p := range m.GetInclusionPrefixes() {
		have[p] = true
	}
	for _, p := range filterStatPrefixes {
		if !have[p] {
			return fmt.Errorf("proxyStatsMatcher.inclusionPrefixes: %s missing", p)
		}
	}
	return nil
}
