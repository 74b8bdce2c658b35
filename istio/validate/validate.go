// Package validate checks shepherd's Istio manifests the way a cluster would
// and a little further: every object decodes strictly into its API type
// (istio.io/api for Istio kinds, k8s.io/api, Gateway API), Istio resources
// pass the validation istiod's admission webhook runs
// (istio.io/istio/pkg/config/validation and .../validation/envoyfilter), and
// shepherd's own rules hold: the WasmPlugin pins a digest, fails open, carries
// a pluginConfig the filter accepts and takes its credentials from the proxy's
// environment; every provider has a ServiceEntry and a DestinationRule that
// originates TLS on the port the filter uses; the cluster the filter calls
// the sidecar on is defined and verifies the sidecar's identity, and its
// global limits' domains are in the sidecar's rate limit config; the stats
// tags equal the filter's; the sidecar's configuration files load; no Secret
// carries a value.
//
// Overlay runs all of it on a kustomize overlay; it is what
// `shepherd-validate overlay istio/overlays/<name>` runs
// (istio/cmd/shepherd-validate), and Check on one object what
// `shepherd-validate wasmplugin FILE` runs on each WasmPlugin.
package validate

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Options tune Overlay.
type Options struct {
	// FilterDigest, when set ("sha256:<hex>"), is the digest the newest
	// WasmPlugin must pin: "shepherd-canary" when the overlay has one, else
	// "shepherd". Tests set it to the digest of the image built from the
	// current filter.
	FilterDigest string
	// RootNamespace is Istio's root namespace (meshConfig.rootNamespace);
	// default istio-system.
	RootNamespace string
}

// Build runs `kustomize build` on dir (with kustomize's default restrictions)
// and returns the YAML stream.
func Build(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return out, nil
}

// Overlay builds the kustomization at dir and validates every object of the
// result, each on its own and together. It returns every problem found,
// joined (errors.Join), or nil.
func Overlay(dir string, opts Options) error {
	out, err := Build(dir)
	if err != nil {
		return err
	}
	objs, err := Decode(dir, out)
	errs := []error{err}
	errs = append(errs, Objects(objs, opts))
	return errors.Join(errs...)
}

// Objects validates decoded objects, each on its own (Check) and together
// (providers have their ServiceEntry and DestinationRule, selectors and
// references resolve, plugins do not overlap). It returns every problem found.
func Objects(objs []*Object, opts Options) error {
	if opts.RootNamespace == "" {
		opts.RootNamespace = "istio-system"
	}
	var errs []error
	for _, o := range objs {
		errs = append(errs, Check(o))
	}
	errs = append(errs, together(objs, opts)...)
	return errors.Join(errs...)
}

// Check validates one object: Istio's admission validation for Istio kinds,
// then shepherd's rules for the kinds it ships.
func Check(o *Object) error {
	var errs []error
	if err := admission(o); err != nil {
		errs = append(errs, err)
	}
	if err := shepherdRules(o); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// problem formats an error about an object's field.
func problem(o *Object, field string, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s: %s", o.Source, o, field, fmt.Sprintf(format, args...))
}

var (
	pinnedOCI   = regexp.MustCompile(`^oci://[^@\s]+@sha256:[0-9a-f]{64}$`)
	pinnedImage = regexp.MustCompile(`^[^@\s:]+(:[0-9]+)?[^@\s:]*@sha256:[0-9a-f]{64}$`)
)

// digestOf returns the "sha256:..." digest a pinned url ends with.
func digestOf(url string) string {
	if i := strings.LastIndex(url, "@"); i >= 0 {
		return url[i+1:]
	}
	return ""
}
