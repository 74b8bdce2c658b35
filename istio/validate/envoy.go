package validate

import (
	"errors"
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	// Types the bootstrap's typed_config fields name.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	filterconfig "github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
)

// EnvoyBootstrap checks a plain-Envoy bootstrap (istio/envoy/envoy.yaml): it
// decodes strictly into go-control-plane's Bootstrap and passes its Validate;
// its stats tags are the filter's; the shepherd wasm filter fails open, its
// configuration passes the filter's validator, and every cluster that
// configuration names, and the sidecar's, is defined.
func EnvoyBootstrap(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := b.Validate(); err != nil {
		return fmt.Errorf("%s: rejected by Envoy's validation: %w", path, err)
	}
	var errs []error
	tags := b.GetStatsConfig().GetStatsTags()
	if len(tags) != len(telemetry.StatsTags) {
		errs = append(errs, fmt.Errorf("%s: stats_config.stats_tags: %d tags, the filter defines %d", path, len(tags), len(telemetry.StatsTags)))
	}
	for i := 0; i < len(tags) && i < len(telemetry.StatsTags); i++ {
		if tags[i].GetTagName() != telemetry.StatsTags[i].Name || tags[i].GetRegex() != telemetry.StatsTags[i].Regex {
			errs = append(errs, fmt.Errorf("%s: stats_config.stats_tags[%d]: %s differs from the filter's %s", path, i, tags[i].GetTagName(), telemetry.StatsTags[i].Name))
		}
	}
	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	if !clusters[SidecarService] {
		errs = append(errs, fmt.Errorf("%s: static_resources.clusters: no %s cluster", path, SidecarService))
	}
	found := 0
	for li, l := range b.GetStaticResources().GetListeners() {
		for fci, fc := range l.GetFilterChains() {
			for fi, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				for hi, hf := range hcm.GetHttpFilters() {
					var w wasmfilterv3.Wasm
					if hf.GetTypedConfig().UnmarshalTo(&w) != nil {
						continue
					}
					found++
					where := fmt.Sprintf("%s: listeners[%d].filter_chains[%d].filters[%d].http_filters[%d]", path, li, fci, fi, hi)
					errs = append(errs, envoyWasm(where, &w, clusters)...)
				}
			}
		}
	}
	if found == 0 {
		errs = append(errs, fmt.Errorf("%s: no envoy.filters.http.wasm filter", path))
	}
	return errors.Join(errs...)
}

func envoyWasm(where string, w *wasmfilterv3.Wasm, clusters map[string]bool) []error {
	var errs []error
	cfg := w.GetConfig()
	if !cfg.GetFailOpen() {
		errs = append(errs, fmt.Errorf("%s: config.fail_open must be true", where))
	}
	var s wrapperspb.StringValue
	if err := cfg.GetConfiguration().UnmarshalTo(&s); err != nil {
		return append(errs, fmt.Errorf("%s: config.configuration: want a google.protobuf.StringValue: %w", where, err))
	}
	pc, err := filterconfig.Parse([]byte(s.GetValue()), func(string) (string, bool) { return "placeholder", true })
	if err != nil {
		return append(errs, fmt.Errorf("%s: config.configuration: %w", where, err))
	}
	if pc.Sidecar != nil && !clusters[pc.Sidecar.Cluster] {
		errs = append(errs, fmt.Errorf("%s: config.configuration: sidecar.cluster %q is not defined", where, pc.Sidecar.Cluster))
	}
	for i, p := range pc.Providers {
		if !clusters[p.Cluster] {
			errs = append(errs, fmt.Errorf("%s: config.configuration: providers[%d] (%s): cluster %q is not defined", where, i, p.Name, p.Cluster))
		}
	}
	return errs
}
