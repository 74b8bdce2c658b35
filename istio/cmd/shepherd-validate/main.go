// Command shepherd-validate checks shepherd's Istio manifests before they
// reach a cluster, for CI and platform engineers: every object decodes
// strictly into its API type, Istio resources pass the validation istiod's
// admission webhook runs, and shepherd's own rules hold (istio/validate).
//
//	shepherd-validate overlay DIR       a kustomize overlay (istio/overlays/<name>), each object and all together
//	shepherd-validate wasmplugin FILE   each WasmPlugin of a manifest on its own
//
// It is a tool of its own, apart from the operator CLI shepherdctl that ships
// in the sidecar image: the validation needs Istio's, Kubernetes' and
// kustomize's packages, which the operator's tool has no use for.
//
// Exit codes: 0 valid, 1 invalid (every problem is printed, one per line),
// 2 usage error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	extensions "istio.io/api/extensions/v1alpha1"

	"github.com/shepherd-mesh/shepherd/istio/validate"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

const usage = `usage: shepherd-validate <command> PATH

commands:
  overlay DIR       check a kustomize overlay (istio/overlays/<name>) as istiod would, and
                    shepherd's rules across its objects (providers have their ServiceEntry and
                    DestinationRule, the sidecar's cluster, token and rate limit domains, ...)
  wasmplugin FILE   check each WasmPlugin of a manifest (multi-document ok) on its own: strict
                    decoding, Istio's admission validation, a pinned oci:// url, FAIL_OPEN, a
                    pluginConfig the filter accepts, secrets from the proxy's environment

The filter's pluginConfig alone and the sidecar's files are checked by
shepherdctl validate filter|sidecar|ratelimit.

exit codes: 0 valid, 1 invalid, 2 usage error
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if len(args) != 2 {
		fmt.Fprintf(stderr, "shepherd-validate: want `overlay DIR` or `wasmplugin FILE`\n\n%s", usage)
		return exitUsage
	}
	kind, path := args[0], args[1]
	var err error
	switch kind {
	case "overlay":
		if err = validate.Overlay(path, validate.Options{}); err == nil {
			fmt.Fprintf(stdout, "ok: %s\n", path)
		}
	case "wasmplugin":
		var names []string
		if names, err = wasmPlugins(path); err == nil {
			fmt.Fprintf(stdout, "ok: %s: WasmPlugin %s\n", path, strings.Join(names, ", "))
		}
	default:
		fmt.Fprintf(stderr, "shepherd-validate: unknown command %q (overlay, wasmplugin)\n\n%s", kind, usage)
		return exitUsage
	}
	if err != nil {
		// Every problem found, one per line.
		fmt.Fprintf(stderr, "shepherd-validate: %s %s:\n%v\n", kind, path, err)
		return exitFail
	}
	return exitOK
}

// wasmPlugins decodes every document of the manifest at path strictly and
// checks each WasmPlugin on its own (validate.Check); it returns their names.
func wasmPlugins(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	objs, err := validate.Decode(path, data)
	errs := []error{err}
	var names []string
	for _, o := range objs {
		if _, ok := o.Value.(*extensions.WasmPlugin); !ok {
			continue
		}
		names = append(names, o.Meta.Name)
		errs = append(errs, validate.Check(o))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no WasmPlugin document found")
	}
	return names, nil
}
