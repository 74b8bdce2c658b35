package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	apiext "istio.io/api/extensions/v1alpha1"
	clientext "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	fconfig "github.com/shepherd-mesh/shepherd/filter/config"
	istiovalidate "github.com/shepherd-mesh/shepherd/istio/validate"
	"github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
)

func validateCmd(args []string, out io.Writer) error {
	if len(args) != 2 {
		return usagef("validate: want `validate sidecar|ratelimit|filter|wasmplugin|istio PATH`")
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
	case "wasmplugin":
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read wasmplugin: %w", err)
		}
		names, err := validateWasmPlugins(data)
		if err != nil {
			return fmt.Errorf("wasmplugin %s: %w", path, err)
		}
		fmt.Fprintf(out, "ok: %s: WasmPlugin %s\n", path, strings.Join(names, ", "))
	case "istio":
		if err := istiovalidate.Overlay(path, istiovalidate.Options{}); err != nil {
			// Every problem found, one per line.
			return fmt.Errorf("istio overlay %s:\n%w", path, err)
		}
		fmt.Fprintf(out, "ok: %s\n", path)
	default:
		return usagef("validate: unknown kind %q (sidecar, ratelimit, filter, wasmplugin, istio)", kind)
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

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// validateWasmPlugins checks every WasmPlugin document of a manifest
// (documents of other kinds are skipped) and returns their names.
func validateWasmPlugins(data []byte) ([]string, error) {
	var names []string
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		name, err := validateWasmPlugin([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if name != "" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no WasmPlugin document found")
	}
	return names, nil
}

// validateWasmPlugin checks one document strictly: top-level and metadata
// fields must be known, spec must parse as istio.extensions.v1alpha1.
// WasmPlugin with no unknown fields, url must be set, and a pluginConfig
// must pass the filter's own validation. It returns "" for other kinds.
func validateWasmPlugin(doc []byte) (string, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return "", fmt.Errorf("parse yaml: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return "", fmt.Errorf("want a YAML mapping: %w", err)
	}
	var kind, apiVersion string
	_ = json.Unmarshal(top["kind"], &kind)
	_ = json.Unmarshal(top["apiVersion"], &apiVersion)
	if kind != "WasmPlugin" {
		return "", nil
	}
	if apiVersion != "extensions.istio.io/v1alpha1" {
		return "", fmt.Errorf("apiVersion: want extensions.istio.io/v1alpha1, got %q", apiVersion)
	}
	for k := range top {
		switch k {
		case "apiVersion", "kind", "metadata", "spec", "status":
		default:
			return "", fmt.Errorf("unknown field %q", k)
		}
	}
	var meta metav1.ObjectMeta
	if raw, ok := top["metadata"]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&meta); err != nil {
			return "", fmt.Errorf("metadata: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if meta.Name == "" {
		return "", errors.New("metadata.name: must not be empty")
	}
	raw, ok := top["spec"]
	if !ok {
		return "", errors.New("spec: missing")
	}
	var spec apiext.WasmPlugin
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(raw, &spec); err != nil {
		return "", fmt.Errorf("spec: %s", protojsonMessage(err))
	}
	// The client-go type is what the cluster's clients decode into.
	var wp clientext.WasmPlugin
	if err := yaml.Unmarshal(doc, &wp); err != nil {
		return "", fmt.Errorf("decode: %w", err)
	}
	if wp.Spec.GetUrl() == "" {
		return "", errors.New("spec.url: must not be empty")
	}
	if pc := wp.Spec.GetPluginConfig(); pc != nil {
		cfg, err := pc.MarshalJSON()
		if err != nil {
			return "", fmt.Errorf("spec.pluginConfig: %w", err)
		}
		if err := fconfig.Validate(cfg); err != nil {
			return "", fmt.Errorf("spec.pluginConfig: %w", err)
		}
	}
	return meta.Name, nil
}

// protojsonMessage drops protojson's "proto: (line 1:23): " prefix, whose
// positions refer to converted JSON rather than the user's YAML.
var protoPrefix = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):\s*)?`)

func protojsonMessage(err error) string {
	return protoPrefix.ReplaceAllString(strings.ReplaceAll(err.Error(), "\u00a0", " "), "")
}
