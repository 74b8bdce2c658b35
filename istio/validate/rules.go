package validate

import (
	"errors"
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	extensions "istio.io/api/extensions/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"

	filterconfig "github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	sidecarconfig "github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

// Names of the objects shepherd ships that carry rules of their own.
const (
	StatsTagsConfigMap      = "shepherd-stats-tags"
	StatsTagsKey            = "custom_bootstrap.json"
	SidecarConfigMap        = "shepherd-sidecar-config" // kustomize adds a hash suffix
	GatewayOptionsConfigMap = "shepherd-gateway-options"
	bootstrapOverrideEnv    = "ISTIO_BOOTSTRAP_OVERRIDE"
	bootstrapOverrideDir    = "/etc/istio/custom-bootstrap"
)

func shepherdRules(o *Object) error {
	switch v := o.Value.(type) {
	case *extensions.WasmPlugin:
		return errors.Join(wasmPlugin(o, v)...)
	case *corev1.Secret:
		return errors.Join(secret(o, v)...)
	case *corev1.ConfigMap:
		return errors.Join(configMap(o, v)...)
	case *appsv1.Deployment:
		errs := deployment(o, &v.Spec.Template.Spec, "spec.template.spec")
		if o.Meta.Name == SidecarService {
			for i, c := range v.Spec.Template.Spec.Containers {
				if !pinnedImage.MatchString(c.Image) {
					errs = append(errs, problem(o, fmt.Sprintf("spec.template.spec.containers[%d].image", i),
						"%q must be pinned by digest (REPOSITORY@sha256:<64 hex>, istio/base/sidecar-image.env, written by make image)", c.Image))
				}
			}
		}
		return errors.Join(errs...)
	case *autoscalingv2.HorizontalPodAutoscaler:
		return errors.Join(hpa(o, v)...)
	}
	return nil
}

// PluginConfig returns a WasmPlugin's pluginConfig as the JSON the filter receives.
func PluginConfig(wp *extensions.WasmPlugin) ([]byte, error) {
	if wp.GetPluginConfig() == nil {
		return nil, errors.New("not set")
	}
	return protojson.Marshal(wp.GetPluginConfig())
}

// ParsePluginConfig parses a WasmPlugin's pluginConfig as the filter does
// (filter/config.Parse), taking every environment variable it names as set:
// the variables live in the proxy, not where the manifest is checked. Every
// check of a pluginConfig works on this result, so the manifest's rules and
// the filter never disagree on what a config says.
func ParsePluginConfig(wp *extensions.WasmPlugin) (*filterconfig.Config, error) {
	js, err := PluginConfig(wp)
	if err != nil {
		return nil, err
	}
	return filterconfig.Parse(js, func(string) (string, bool) { return "placeholder", true })
}

// sourceEnv returns the variable a credential or token comes from, given its
// filter/config source ("env NAME", "inline" or "none").
func sourceEnv(source string) (string, bool) {
	return strings.CutPrefix(source, "env ")
}

// wasmPlugin is the one check of a WasmPlugin on its own, for an overlay
// (Objects) and a single manifest (`shepherd-validate wasmplugin`) alike: the
// url is pinned, the plugin fails open, phase and priority are set, the
// pluginConfig is one the filter accepts, and its secrets (provider
// credentials, the filter token) come from the proxy's environment.
func wasmPlugin(o *Object, wp *extensions.WasmPlugin) []error {
	var errs []error
	if !pinnedOCI.MatchString(wp.GetUrl()) {
		errs = append(errs, problem(o, "spec.url", "%q must be an oci:// image pinned by digest (oci://REPOSITORY@sha256:<64 hex>), so every proxy runs the same filter", wp.GetUrl()))
	}
	if wp.GetFailStrategy() != extensions.FailStrategy_FAIL_OPEN {
		errs = append(errs, problem(o, "spec.failStrategy", "%s: must be FAIL_OPEN, so a filter that cannot start never turns into errors for clients", wp.GetFailStrategy()))
	}
	if wp.GetPhase() == extensions.PluginPhase_UNSPECIFIED_PHASE {
		errs = append(errs, problem(o, "spec.phase", "must be set (AUTHN, AUTHZ or STATS)"))
	}
	if wp.GetPriority() == nil {
		errs = append(errs, problem(o, "spec.priority", "must be set, so the order among plugins of one phase is defined"))
	}
	if wp.GetType() != extensions.PluginType_HTTP && wp.GetType() != extensions.PluginType_UNSPECIFIED_PLUGIN_TYPE {
		errs = append(errs, problem(o, "spec.type", "%s: shepherd is an HTTP filter", wp.GetType()))
	}
	cfg, err := ParsePluginConfig(wp)
	if err != nil {
		return append(errs, problem(o, "spec.pluginConfig", "%v", err))
	}
	// Secrets: never inline, and every environment variable the config
	// names must reach the VM (vmConfig.env from the proxy's environment).
	env := map[string]*extensions.EnvVar{}
	for _, e := range wp.GetVmConfig().GetEnv() {
		env[e.GetName()] = e
		if e.GetValueFrom() == extensions.EnvValueSource_INLINE && e.GetValue() != "" {
			errs = append(errs, problem(o, "spec.vmConfig.env["+e.GetName()+"]", "has an inline value; take credentials from the proxy's environment (valueFrom: HOST)"))
		}
	}
	fromProxy := func(field, source, what string) {
		if source == "inline" {
			errs = append(errs, problem(o, field+".inline", "%s must not sit in the manifest; use {\"env\": NAME} and vmConfig.env", what))
			return
		}
		name, ok := sourceEnv(source)
		if !ok {
			return
		}
		switch e, ok := env[name]; {
		case !ok:
			errs = append(errs, problem(o, field+".env", "%s is not in spec.vmConfig.env, so the filter never sees it", name))
		case e.GetValueFrom() != extensions.EnvValueSource_HOST:
			errs = append(errs, problem(o, "spec.vmConfig.env["+e.GetName()+"]", "valueFrom must be HOST (the proxy's environment, from a Secret)"))
		}
	}
	if cfg.Sidecar != nil {
		// The filter token is a secret like a credential.
		fromProxy("spec.pluginConfig.sidecar.token", cfg.Sidecar.TokenSource, "the filter token")
	}
	for i, p := range cfg.Providers {
		fromProxy(fmt.Sprintf("spec.pluginConfig.providers[%d].credential", i), p.CredentialSource, "credentials")
	}
	return errs
}

func secret(o *Object, s *corev1.Secret) []error {
	var errs []error
	for k, v := range s.Data {
		if len(v) > 0 {
			errs = append(errs, problem(o, "data."+k, "holds a value; Secrets are templates here, create the real one from your secret store"))
		}
	}
	for k, v := range s.StringData {
		if v != "" {
			errs = append(errs, problem(o, "stringData."+k, "holds a value; Secrets are templates here, create the real one from your secret store"))
		}
	}
	return errs
}

func configMap(o *Object, cm *corev1.ConfigMap) []error {
	switch name := o.Meta.Name; {
	case name == StatsTagsConfigMap:
		return statsTags(o, cm)
	case name == SidecarConfigMap || strings.HasPrefix(name, SidecarConfigMap+"-"):
		return sidecarConfig(o, cm)
	case name == GatewayOptionsConfigMap:
		return gatewayOptions(o, cm)
	}
	return nil
}

// statsTags checks the bootstrap override: it decodes strictly into Envoy's
// Bootstrap, passes Envoy's validation, and its stats tags are exactly the
// filter's (filter/telemetry.StatsTags), in order.
func statsTags(o *Object, cm *corev1.ConfigMap) []error {
	field := "data." + StatsTagsKey
	js, ok := cm.Data[StatsTagsKey]
	if !ok {
		return []error{problem(o, field, "missing")}
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal([]byte(js), &b); err != nil {
		return []error{problem(o, field, "not an Envoy bootstrap: %v", err)}
	}
	if err := b.ValidateAll(); err != nil {
		return []error{problem(o, field, "rejected by Envoy's validation: %v", err)}
	}
	got := b.GetStatsConfig().GetStatsTags()
	var errs []error
	if len(got) != len(telemetry.StatsTags) {
		errs = append(errs, problem(o, field, "has %d stats tags, the filter defines %d (filter/telemetry.StatsTags)", len(got), len(telemetry.StatsTags)))
	}
	for i := 0; i < len(got) && i < len(telemetry.StatsTags); i++ {
		want := telemetry.StatsTags[i]
		if got[i].GetTagName() != want.Name || got[i].GetRegex() != want.Regex {
			errs = append(errs, problem(o, fmt.Sprintf("%s stats_tags[%d]", field, i), "is %s=%s, the filter's is %s=%s",
				got[i].GetTagName(), got[i].GetRegex(), want.Name, want.Regex))
		}
	}
	return errs
}

// sidecarConfig loads the sidecar's files with the sidecar's own parsers.
func sidecarConfig(o *Object, cm *corev1.ConfigMap) []error {
	var errs []error
	if len(cm.Data) == 0 {
		return []error{problem(o, "data", "empty")}
	}
	for key, data := range cm.Data {
		field := "data." + key
		switch {
		case key == "sidecar.yaml":
			if _, err := sidecarconfig.Parse([]byte(data)); err != nil {
				errs = append(errs, problem(o, field, "%v", err))
			}
		case strings.HasPrefix(key, "ratelimit") && (strings.HasSuffix(key, ".yaml") || strings.HasSuffix(key, ".yml")):
			if _, err := ratelimit.ParseConfig(key, []byte(data)); err != nil {
				errs = append(errs, problem(o, field, "%v", err))
			}
		default:
			errs = append(errs, problem(o, field, "unknown file; want sidecar.yaml or ratelimit*.yaml"))
		}
	}
	return errs
}

// gatewayOptions checks Istio's gateway customization: its deployment patch
// decodes strictly into a Deployment and gives the istio-proxy container the
// stats tags bootstrap override.
func gatewayOptions(o *Object, cm *corev1.ConfigMap) []error {
	patch, ok := cm.Data["deployment"]
	if !ok {
		return []error{problem(o, "data.deployment", "missing")}
	}
	var d appsv1.Deployment
	if err := strictYAML([]byte(patch), &d); err != nil {
		return []error{problem(o, "data.deployment", "%v", err)}
	}
	return bootstrapOverride(o, "data.deployment", &d.Spec.Template.Spec)
}

// bootstrapOverride checks that a pod spec's istio-proxy container reads the
// stats tags override: ISTIO_BOOTSTRAP_OVERRIDE names a file of a volume
// mounted from the shepherd-stats-tags ConfigMap.
func bootstrapOverride(o *Object, field string, pod *corev1.PodSpec) []error {
	var proxy *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "istio-proxy" {
			proxy = &pod.Containers[i]
		}
	}
	if proxy == nil {
		return []error{problem(o, field, "no istio-proxy container")}
	}
	want := bootstrapOverrideDir + "/" + StatsTagsKey
	found := false
	for _, e := range proxy.Env {
		if e.Name == bootstrapOverrideEnv {
			found = true
			if e.Value != want {
				return []error{problem(o, field, "%s is %q, want %q", bootstrapOverrideEnv, e.Value, want)}
			}
		}
	}
	if !found {
		return []error{problem(o, field, "istio-proxy has no %s", bootstrapOverrideEnv)}
	}
	for _, m := range proxy.VolumeMounts {
		if m.MountPath != bootstrapOverrideDir {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == StatsTagsConfigMap {
				return nil
			}
		}
	}
	return []error{problem(o, field, "istio-proxy mounts no ConfigMap %s at %s", StatsTagsConfigMap, bootstrapOverrideDir)}
}

// deployment checks what every shipped workload needs: probes, resources and a
// non-root user.
func deployment(o *Object, pod *corev1.PodSpec, field string) []error {
	var errs []error
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		errs = append(errs, problem(o, field+".securityContext.runAsNonRoot", "must be true"))
	}
	for i, c := range pod.Containers {
		cf := fmt.Sprintf("%s.containers[%d]", field, i)
		if c.ReadinessProbe == nil {
			errs = append(errs, problem(o, cf+".readinessProbe", "must be set"))
		}
		if c.LivenessProbe == nil {
			errs = append(errs, problem(o, cf+".livenessProbe", "must be set"))
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			errs = append(errs, problem(o, cf+".resources.requests", "cpu and memory must be set"))
		}
		if c.Resources.Limits.Memory().IsZero() {
			errs = append(errs, problem(o, cf+".resources.limits.memory", "must be set"))
		}
		if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
			errs = append(errs, problem(o, cf+".securityContext.allowPrivilegeEscalation", "must be false"))
		}
	}
	return errs
}

func hpa(o *Object, h *autoscalingv2.HorizontalPodAutoscaler) []error {
	var errs []error
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 {
		errs = append(errs, problem(o, "spec.minReplicas", "must be at least 1"))
	} else if *h.Spec.MinReplicas > h.Spec.MaxReplicas {
		errs = append(errs, problem(o, "spec.maxReplicas", "%d is below minReplicas %d", h.Spec.MaxReplicas, *h.Spec.MinReplicas))
	}
	if len(h.Spec.Metrics) == 0 {
		errs = append(errs, problem(o, "spec.metrics", "empty"))
	}
	for i, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.PodsMetricSourceType && (m.Pods == nil || m.Pods.Metric.Name == "") {
			errs = append(errs, problem(o, fmt.Sprintf("spec.metrics[%d].pods.metric.name", i), "must be set"))
		}
	}
	return errs
}

// HPAPodMetrics returns the custom (Pods) metric names an HPA scales on.
func HPAPodMetrics(h *autoscalingv2.HorizontalPodAutoscaler) []string {
	var names []string
	for _, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.PodsMetricSourceType && m.Pods != nil {
			names = append(names, m.Pods.Metric.Name)
		}
	}
	return names
}
