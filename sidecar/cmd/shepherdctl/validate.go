package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	fconfig "github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

func validateCmd(args []string, out io.Writer) error {
	if len(args) != 2 {
		return usagef("validate: want `validate sidecar|ratelimit|filter PATH`")
	}
	kind, path := args[0], args[1]
	switch kind {
	case "sidecar":
		c, err := config.Load(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "ok: %s: %d providers, %d canary plans, %d route budgets, %d consumer budgets\n",
			path, len(c.Providers), len(c.Canary.Routes), len(c.Budgets.Routes), len(c.Budgets.Consumers))
	case "ratelimit":
		c, err := ratelimit.LoadConfig(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "ok: %s: domains %s, %d limits\n", path, strings.Join(c.Domains(), ", "), len(c.Limits()))
	case "filter":
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read filter config: %w", err)
		}
		if data, err = toJSON(data); err != nil {
			return fmt.Errorf("filter config %s: %w", path, err)
		}
		if err := fconfig.Validate(data); err != nil {
			return fmt.Errorf("filter config %s: %w", path, err)
		}
		fmt.Fprintf(out, "ok: %s\n", path)
	case "wasmplugin", "istio":
		return usagef("validate %s: Istio manifests are checked by shepherd-validate (istio/cmd/shepherd-validate), not by the operator's tool", kind)
	default:
		return usagef("validate: unknown kind %q (sidecar, ratelimit, filter)", kind)
	}
	return nil
}

// toJSON converts YAML to JSON; JSON passes through unchanged.
func toJSON(data []byte) ([]byte, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		return data, nil
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	return j, nil
}
