package validate

import (
	"fmt"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	extensions "istio.io/api/extensions/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	"istio.io/istio/pkg/config/xds"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sidecarconfig "github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

// SidecarService is the name of the control sidecar's Service, ServiceAccount
// and Envoy callout cluster.
const SidecarService = "shepherd-sidecar"

// together runs the checks that need several objects.
func together(objs []*Object, opts Options) []error {
	var errs []error
	var plugins []*Object
	for _, o := range objs {
		if _, ok := o.Value.(*extensions.WasmPlugin); ok {
			plugins = append(plugins, o)
		}
	}
	for _, p := range plugins {
		errs = append(errs, providers(p, objs)...)
		errs = append(errs, targets(p, objs)...)
		errs = append(errs, sidecarUse(p, objs)...)
	}
	if len(plugins) > 0 && find(objs, "ConfigMap", StatsTagsConfigMap) == nil {
		errs = append(errs, problem(plugins[0], "overlay", "no ConfigMap %s: the filter's metrics would reach Prometheus without their labels", StatsTagsConfigMap))
	}
	errs = append(errs, digest(plugins, opts)...)
	errs = append(errs, overlaps(plugins, opts)...)
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *networking.EnvoyFilter:
			errs = append(errs, calloutCluster(o, v, objs)...)
		case *corev1.Service:
			errs = append(errs, selects(o, "spec.selector", v.Spec.Selector, objs)...)
		case *policyv1.PodDisruptionBudget:
			if v.Spec.Selector != nil {
				errs = append(errs, selects(o, "spec.selector.matchLabels", v.Spec.Selector.MatchLabels, objs)...)
			}
		case *security.AuthorizationPolicy:
			errs = append(errs, selects(o, "spec.selector.matchLabels", v.GetSelector().GetMatchLabels(), objs)...)
		case *security.PeerAuthentication:
			errs = append(errs, selects(o, "spec.selector.matchLabels", v.GetSelector().GetMatchLabels(), objs)...)
		case *gatewayv1.Gateway:
			if inf := v.Spec.Infrastructure; inf != nil && inf.ParametersRef != nil && inf.ParametersRef.Kind == "ConfigMap" {
				if c := find(objs, "ConfigMap", inf.ParametersRef.Name); c == nil || c.Meta.Namespace != o.Meta.Namespace {
					errs = append(errs, problem(o, "spec.infrastructure.parametersRef", "ConfigMap %s is not in the overlay's namespace %q", inf.ParametersRef.Name, o.Meta.Namespace))
				}
			}
		case *gatewayv1.HTTPRoute:
			errs = append(errs, hostnameBackends(o, v, objs)...)
		}
	}
	return errs
}

func find(objs []*Object, kind, name string) *Object {
	for _, o := range objs {
		if o.Kind == kind && o.Meta.Name == name {
			return o
		}
	}
	return nil
}

// providers checks that each provider of a WasmPlugin's pluginConfig has a
// ServiceEntry with an HTTP port for the cluster the filter uses, and a
// DestinationRule originating TLS on that port.
func providers(p *Object, objs []*Object) []error {
	cfg, err := ParsePluginConfig(p.Value.(*extensions.WasmPlugin))
	if err != nil {
		return nil // reported by the WasmPlugin's own checks
	}
	var errs []error
	for i, pr := range cfg.Providers {
		field := fmt.Sprintf("spec.pluginConfig.providers[%d]", i)
		host := pr.Host
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
		// filter/config defaults the cluster to Istio's outbound|443||HOST.
		parts := strings.Split(pr.Cluster, "|")
		if len(parts) != 4 || parts[0] != "outbound" || parts[3] != host {
			// A cluster of the user's own (an EnvoyFilter): nothing to cross-check.
			continue
		}
		n, err := strconv.ParseUint(parts[1], 10, 32)
		if err != nil {
			errs = append(errs, problem(p, field+".cluster", "%q: bad port", pr.Cluster))
			continue
		}
		port := uint32(n)
		var se *networking.ServiceEntry
		for _, o := range objs {
			if v, ok := o.Value.(*networking.ServiceEntry); ok && contains(v.GetHosts(), host) {
				se = v
			}
		}
		if se == nil {
			errs = append(errs, problem(p, field, "provider %q: no ServiceEntry for host %s", pr.Name, host))
			continue
		}
		var sePort *networking.ServicePort
		for _, sp := range se.GetPorts() {
			if sp.GetNumber() == port {
				sePort = sp
			}
		}
		if sePort == nil || !strings.EqualFold(sePort.GetProtocol(), "HTTP") {
			errs = append(errs, problem(p, field, "provider %q: the ServiceEntry for %s has no HTTP port %d (cluster outbound|%d||%s)", pr.Name, host, port, port, host))
			continue
		}
		var dr *networking.DestinationRule
		for _, o := range objs {
			if v, ok := o.Value.(*networking.DestinationRule); ok && v.GetHost() == host {
				dr = v
			}
		}
		if dr == nil {
			errs = append(errs, problem(p, field, "provider %q: no DestinationRule for host %s", pr.Name, host))
			continue
		}
		tls := dr.GetTrafficPolicy().GetTls()
		for _, pl := range dr.GetTrafficPolicy().GetPortLevelSettings() {
			if pl.GetPort().GetNumber() == port && pl.GetTls() != nil {
				tls = pl.GetTls()
			}
		}
		if tls.GetMode() != networking.ClientTLSSettings_SIMPLE && tls.GetMode() != networking.ClientTLSSettings_MUTUAL {
			errs = append(errs, problem(p, field, "provider %q: the DestinationRule for %s does not originate TLS on port %d (tls.mode %s)", pr.Name, host, port, tls.GetMode()))
		}
	}
	return errs
}

// sidecarUse checks what a pluginConfig expects of the sidecar: the cluster
// it calls the sidecar on is added by an EnvoyFilter of the overlay, and the
// rate limit domains of its routes' global limits are configured in the
// sidecar's rate limit files.
func sidecarUse(p *Object, objs []*Object) []error {
	cfg, err := ParsePluginConfig(p.Value.(*extensions.WasmPlugin))
	if err != nil || cfg.Sidecar == nil {
		return nil // reported by the WasmPlugin's own checks; no sidecar in use
	}
	var errs []error
	if !strings.HasPrefix(cfg.Sidecar.Cluster, "outbound|") && !clusterAdded(cfg.Sidecar.Cluster, objs) {
		errs = append(errs, problem(p, "spec.pluginConfig.sidecar.cluster", "%q is added by no EnvoyFilter of the overlay", cfg.Sidecar.Cluster))
	}
	if err := outboundSidecarCluster(cfg.Sidecar.Cluster, objs); err != nil {
		errs = append(errs, problem(p, "spec.pluginConfig.sidecar.cluster", "%v", err))
	}
	domains, found := map[string]bool{}, false
	for _, o := range objs {
		cm, ok := o.Value.(*corev1.ConfigMap)
		if !ok || !strings.HasPrefix(o.Meta.Name, SidecarConfigMap) {
			continue
		}
		for key, data := range cm.Data {
			if key == "sidecar.yaml" && len(cfg.Sidecar.Metadata) == 0 {
				if sc, err := sidecarconfig.Parse([]byte(data)); err == nil {
					if field := sc.NeedsFilterToken(); field != "" {
						errs = append(errs, problem(p, "spec.pluginConfig.sidecar.token", "is required: the sidecar's config sets %s, and the sidecar serves the policy and takes reports only with the filter token", field))
					}
				}
			}
			if !strings.HasPrefix(key, "ratelimit") {
				continue
			}
			rl, err := ratelimit.ParseConfig(key, []byte(data))
			if err != nil {
				continue // reported by the ConfigMap's own checks
			}
			found = true
			for _, d := range rl.Domains() {
				domains[d] = true
			}
		}
	}
	if !found {
		return errs
	}
	for i, r := range cfg.Routes {
		if r.GlobalLimits != nil && !domains[r.GlobalLimits.Domain] {
			errs = append(errs, problem(p, fmt.Sprintf("spec.pluginConfig.routes[%d].globalLimits.domain", i), "%q is not a domain of the sidecar's rate limit config", r.GlobalLimits.Domain))
		}
	}
	return errs
}

// outboundSidecarCluster checks a callout cluster Istio builds itself,
// outbound|PORT||shepherd-sidecar.NAMESPACE.svc.cluster.local (Istio's
// naming, pilot/pkg/model/service.go BuildSubsetKey): the overlay must have
// the sidecar's Service in that namespace with that port, speaking gRPC (an
// appProtocol or port name Istio reads as gRPC gives the cluster HTTP/2).
// Other outbound clusters are not the sidecar's and are not checked.
func outboundSidecarCluster(cluster string, objs []*Object) error {
	parts := strings.Split(cluster, "|")
	if len(parts) != 4 || parts[0] != "outbound" {
		return nil
	}
	name, rest, _ := strings.Cut(parts[3], ".")
	if name != SidecarService {
		return nil
	}
	ns, domain, ok := strings.Cut(rest, ".")
	if !ok || !strings.HasPrefix(domain, "svc.") {
		return fmt.Errorf("%q: want outbound|PORT||%s.NAMESPACE.svc.<cluster domain>", cluster, SidecarService)
	}
	port, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil {
		return fmt.Errorf("%q: bad port", cluster)
	}
	for _, o := range objs {
		svc, ok := o.Value.(*corev1.Service)
		if !ok || o.Meta.Name != SidecarService || o.Meta.Namespace != ns {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if int64(sp.Port) != port {
				continue
			}
			if (sp.AppProtocol != nil && *sp.AppProtocol == "grpc") || sp.Name == "grpc" || strings.HasPrefix(sp.Name, "grpc-") {
				return nil
			}
			return fmt.Errorf("%q: Service %s/%s port %d does not speak gRPC (appProtocol grpc or a grpc-* name), so Istio's cluster would not use HTTP/2", cluster, ns, SidecarService, port)
		}
		return fmt.Errorf("%q: Service %s/%s has no port %d", cluster, ns, SidecarService, port)
	}
	return fmt.Errorf("%q: no Service %s in namespace %q in the overlay", cluster, SidecarService, ns)
}

// clusterAdded reports whether an EnvoyFilter of objs adds a cluster named name.
func clusterAdded(name string, objs []*Object) bool {
	for _, o := range objs {
		ef, ok := o.Value.(*networking.EnvoyFilter)
		if !ok {
			continue
		}
		for _, cp := range ef.GetConfigPatches() {
			if cp.GetApplyTo() != networking.EnvoyFilter_CLUSTER || cp.GetPatch().GetOperation() != networking.EnvoyFilter_Patch_ADD {
				continue
			}
			if obj, err := xds.BuildXDSObjectFromStruct(cp.GetApplyTo(), cp.GetPatch().GetValue(), false); err == nil && obj.(*clusterv3.Cluster).GetName() == name {
				return true
			}
		}
	}
	return false
}

// targets checks that a WasmPlugin's Gateway targets are in the overlay.
func targets(p *Object, objs []*Object) []error {
	var errs []error
	for i, t := range p.Value.(*extensions.WasmPlugin).GetTargetRefs() {
		if t.GetKind() != "Gateway" {
			continue
		}
		if g := find(objs, "Gateway", t.GetName()); g == nil {
			errs = append(errs, problem(p, fmt.Sprintf("spec.targetRefs[%d]", i), "Gateway %s is not in the overlay", t.GetName()))
		}
	}
	return errs
}

func digest(plugins []*Object, opts Options) []error {
	if opts.FilterDigest == "" {
		return nil
	}
	newest := "shepherd"
	for _, p := range plugins {
		if p.Meta.Name == "shepherd-canary" {
			newest = "shepherd-canary"
		}
	}
	for _, p := range plugins {
		if p.Meta.Name != newest {
			continue
		}
		if got := digestOf(p.Value.(*extensions.WasmPlugin).GetUrl()); got != opts.FilterDigest {
			return []error{problem(p, "spec.url", "pins %s, the image of the current filter is %s (run make image)", got, opts.FilterDigest)}
		}
		return nil
	}
	return []error{fmt.Errorf("overlay: no WasmPlugin %s to pin %s", newest, opts.FilterDigest)}
}

// overlaps reports two WasmPlugins that can apply to the same proxy: the
// filter would run twice on each request.
func overlaps(plugins []*Object, opts Options) []error {
	var errs []error
	for i := 0; i < len(plugins); i++ {
		for j := i + 1; j < len(plugins); j++ {
			a, b := plugins[i], plugins[j]
			sameScope := a.Meta.Namespace == b.Meta.Namespace || a.Meta.Namespace == opts.RootNamespace || b.Meta.Namespace == opts.RootNamespace
			if !sameScope {
				continue
			}
			wa, wb := a.Value.(*extensions.WasmPlugin), b.Value.(*extensions.WasmPlugin)
			if len(wa.GetTargetRefs())+len(wb.GetTargetRefs()) > 0 {
				continue // targetRefs name their proxies; a selector plugin never applies to a gateway's
			}
			if compatible(wa.GetSelector().GetMatchLabels(), wb.GetSelector().GetMatchLabels()) {
				errs = append(errs, fmt.Errorf("%s and %s: %s and %s can select the same pods; give them selectors that differ in a label's value", a.Source, b.Source, a, b))
			}
		}
	}
	return errs
}

// compatible reports whether one pod can carry both label sets.
func compatible(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; ok && w != v {
			return false
		}
	}
	return true
}

// selects checks that a selector matches the pod labels of a Deployment of
// the overlay in the same namespace.
func selects(o *Object, field string, sel map[string]string, objs []*Object) []error {
	if len(sel) == 0 {
		return nil
	}
	for _, d := range objs {
		dep, ok := d.Value.(*appsv1.Deployment)
		if !ok || d.Meta.Namespace != o.Meta.Namespace {
			continue
		}
		if subset(sel, dep.Spec.Template.Labels) {
			return nil
		}
	}
	return []error{problem(o, field, "%v matches no Deployment's pods in the overlay", sel)}
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// calloutCluster checks the cluster the filter calls the sidecar on: it
// points at the sidecar's Service and verifies its mesh identity.
func calloutCluster(o *Object, ef *networking.EnvoyFilter, objs []*Object) []error {
	var errs []error
	for i, cp := range ef.GetConfigPatches() {
		if cp.GetApplyTo() != networking.EnvoyFilter_CLUSTER || cp.GetPatch().GetValue() == nil {
			continue
		}
		obj, err := xds.BuildXDSObjectFromStruct(cp.GetApplyTo(), cp.GetPatch().GetValue(), false)
		if err != nil {
			continue // reported by admission
		}
		c := obj.(*clusterv3.Cluster)
		if c.GetName() != SidecarService {
			continue
		}
		field := fmt.Sprintf("spec.configPatches[%d].patch.value", i)
		svc := find(objs, "Service", SidecarService)
		if svc == nil {
			errs = append(errs, problem(o, field, "cluster %s: no Service %s in the overlay", SidecarService, SidecarService))
			continue
		}
		wantAddr := SidecarService + "." + svc.Meta.Namespace + ".svc.cluster.local"
		var grpcPort int32
		for _, p := range svc.Value.(*corev1.Service).Spec.Ports {
			if p.Name == "grpc" {
				grpcPort = p.Port
			}
		}
		for _, le := range c.GetLoadAssignment().GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
				if sa.GetAddress() != wantAddr || int32(sa.GetPortValue()) != grpcPort {
					errs = append(errs, problem(o, field, "cluster %s: endpoint %s:%d, the sidecar's Service is %s:%d", SidecarService, sa.GetAddress(), sa.GetPortValue(), wantAddr, grpcPort))
				}
			}
		}
		var tls tlsv3.UpstreamTlsContext
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tls); err != nil {
			errs = append(errs, problem(o, field, "cluster %s: no TLS transport socket; the sidecar accepts mutual TLS only", SidecarService))
			continue
		}
		wantSAN := "spiffe://cluster.local/ns/" + svc.Meta.Namespace + "/sa/" + SidecarService
		var sans []string
		for _, m := range tls.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
			sans = append(sans, m.GetMatcher().GetExact())
		}
		if !contains(sans, wantSAN) {
			errs = append(errs, problem(o, field, "cluster %s: verifies %v, the sidecar's identity is %s", SidecarService, sans, wantSAN))
		}
	}
	return errs
}

// hostnameBackends checks HTTPRoute backends of kind Hostname (Istio's
// ServiceEntry hosts): the host and port are in a ServiceEntry.
func hostnameBackends(o *Object, r *gatewayv1.HTTPRoute, objs []*Object) []error {
	var errs []error
	for i, rule := range r.Spec.Rules {
		for j, b := range rule.BackendRefs {
			if b.Kind == nil || *b.Kind != "Hostname" {
				continue
			}
			found := false
			for _, s := range objs {
				se, ok := s.Value.(*networking.ServiceEntry)
				if !ok || !contains(se.GetHosts(), string(b.Name)) {
					continue
				}
				for _, p := range se.GetPorts() {
					if b.Port != nil && p.GetNumber() == uint32(*b.Port) {
						found = true
					}
				}
			}
			if !found {
				errs = append(errs, problem(o, fmt.Sprintf("spec.rules[%d].backendRefs[%d]", i, j), "no ServiceEntry with host %s and that port", b.Name))
			}
		}
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
