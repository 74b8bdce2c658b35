package validate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config"
	istiovalidation "istio.io/istio/pkg/config/validation"
	"istio.io/istio/pkg/config/validation/envoyfilter"
	"istio.io/istio/pkg/config/xds"
)

// webhook holds the functions istiod's validating webhook runs, by kind.
var webhook = map[string]istiovalidation.ValidateFunc{
	"ServiceEntry":        istiovalidation.ValidateServiceEntry,
	"DestinationRule":     istiovalidation.ValidateDestinationRule,
	"Gateway":             istiovalidation.ValidateGateway,
	"VirtualService":      istiovalidation.ValidateVirtualService,
	"Sidecar":             istiovalidation.ValidateSidecar,
	"EnvoyFilter":         envoyfilter.ValidateEnvoyFilter,
	"WasmPlugin":          istiovalidation.ValidateWasmPlugin,
	"AuthorizationPolicy": istiovalidation.ValidateAuthorizationPolicy,
	"PeerAuthentication":  istiovalidation.ValidatePeerAuthentication,
}

// admission runs Istio's admission validation on an Istio object. Warnings
// (which the webhook returns to kubectl without rejecting) count as problems:
// shepherd's manifests should not draw any.
func admission(o *Object) error {
	msg, ok := o.Value.(proto.Message)
	if !ok {
		return nil
	}
	validate, ok := webhook[o.Kind]
	if !ok {
		return fmt.Errorf("%s: %s: no Istio validation for kind %s", o.Source, o, o.Kind)
	}
	group, version, _ := strings.Cut(o.APIVersion, "/")
	cfg := config.Config{
		Meta: config.Meta{
			GroupVersionKind: config.GroupVersionKind{Group: group, Version: version, Kind: o.Kind},
			Name:             o.Meta.Name,
			Namespace:        o.Meta.Namespace,
			Labels:           o.Meta.Labels,
			Annotations:      o.Meta.Annotations,
		},
		Spec: msg,
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	warn, err := validate(cfg)
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %s: rejected by Istio's validation: %w", o.Source, o, err))
	}
	for _, w := range warnings(warn) {
		errs = append(errs, fmt.Errorf("%s: %s: Istio's validation warns: %w", o.Source, o, w))
	}
	if ef, ok := msg.(*networking.EnvoyFilter); ok {
		errs = append(errs, envoyPatches(o, ef)...)
	}
	return errors.Join(errs...)
}

// genericEnvoyFilterWarning is the warning Istio gives every EnvoyFilter; it
// says nothing about this one.
const genericEnvoyFilterWarning = "EnvoyFilter exposes internal implementation details"

// warnings lists the warnings of a validation result, without the generic one.
func warnings(w istiovalidation.Warning) []error {
	if w == nil {
		return nil
	}
	var all []error
	var me *multierror.Error
	if errors.As(w, &me) {
		all = me.Errors
	} else {
		all = []error{w}
	}
	var out []error
	for _, e := range all {
		if !strings.HasPrefix(e.Error(), genericEnvoyFilterWarning) {
			out = append(out, e)
		}
	}
	return out
}

// envoyPatches decodes each EnvoyFilter patch value into its Envoy type (Istio's
// validation already decodes it strictly) and runs that type's own validation (protoc-gen-validate rules), which
// Envoy applies when it receives the configuration.
func envoyPatches(o *Object, ef *networking.EnvoyFilter) []error {
	var errs []error
	for i, cp := range ef.GetConfigPatches() {
		if cp.GetPatch().GetValue() == nil {
			continue
		}
		field := fmt.Sprintf("spec.configPatches[%d].patch.value", i)
		obj, err := xds.BuildXDSObjectFromStruct(cp.GetApplyTo(), cp.GetPatch().GetValue(), false)
		if err != nil {
			continue // Istio's validation reports it
		}
		if v, ok := obj.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, problem(o, field, "rejected by Envoy's validation: %v", err))
			}
		}
	}
	return errs
}
