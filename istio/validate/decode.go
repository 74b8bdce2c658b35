package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	extensions "istio.io/api/extensions/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest.
type Object struct {
	Source     string // the file or overlay it came from, with its index for multi-document files
	APIVersion string
	Kind       string
	Meta       metav1.ObjectMeta
	// Value is the typed object: an Istio spec message (*extensions.WasmPlugin,
	// *networking.ServiceEntry, ...) for Istio kinds, else the Kubernetes type
	// (*appsv1.Deployment, *autoscalingv2.HorizontalPodAutoscaler, ...).
	Value any
}

// String names the object as errors do: "WasmPlugin llm-apps/shepherd".
func (o *Object) String() string {
	if o.Meta.Namespace != "" {
		return o.Kind + " " + o.Meta.Namespace + "/" + o.Meta.Name
	}
	return o.Kind + " " + o.Meta.Name
}

// istioKinds maps an Istio apiVersion/kind to a constructor of its spec message.
var istioKinds = map[string]func() proto.Message{}

func init() {
	for _, v := range []string{"v1alpha3", "v1beta1", "v1"} {
		istioKinds["networking.istio.io/"+v+"/ServiceEntry"] = func() proto.Message { return &networking.ServiceEntry{} }
		istioKinds["networking.istio.io/"+v+"/DestinationRule"] = func() proto.Message { return &networking.DestinationRule{} }
		istioKinds["networking.istio.io/"+v+"/Gateway"] = func() proto.Message { return &networking.Gateway{} }
		istioKinds["networking.istio.io/"+v+"/VirtualService"] = func() proto.Message { return &networking.VirtualService{} }
		istioKinds["networking.istio.io/"+v+"/Sidecar"] = func() proto.Message { return &networking.Sidecar{} }
	}
	istioKinds["networking.istio.io/v1alpha3/EnvoyFilter"] = func() proto.Message { return &networking.EnvoyFilter{} }
	istioKinds["extensions.istio.io/v1alpha1/WasmPlugin"] = func() proto.Message { return &extensions.WasmPlugin{} }
	for _, v := range []string{"v1beta1", "v1"} {
		istioKinds["security.istio.io/"+v+"/AuthorizationPolicy"] = func() proto.Message { return &security.AuthorizationPolicy{} }
		istioKinds["security.istio.io/"+v+"/PeerAuthentication"] = func() proto.Message { return &security.PeerAuthentication{} }
	}
}

// kubeKinds maps a Kubernetes apiVersion/kind to a constructor of its type.
var kubeKinds = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"gateway.networking.k8s.io/v1/Gateway":    func() any { return &gatewayv1.Gateway{} },
	"gateway.networking.k8s.io/v1/HTTPRoute":  func() any { return &gatewayv1.HTTPRoute{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &PrometheusRule{} },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return &PodMonitor{} },
}

// PrometheusRule is the prometheus-operator PrometheusRule (monitoring.coreos.com/v1),
// with the fields shepherd uses; decoding is strict, so others are errors.
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []RuleGroup `json:"groups"`
	} `json:"spec"`
}

// PodMonitor is the part of prometheus-operator's PodMonitor
// (monitoring.coreos.com/v1) shepherd ships; decoding is strict, so a field
// outside it is reported.
type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		NamespaceSelector map[string]any       `json:"namespaceSelector,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		Endpoints         []struct {
			Path        string       `json:"path,omitempty"`
			Interval    string       `json:"interval,omitempty"`
			Relabelings []Relabeling `json:"relabelings,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// Relabeling is one Prometheus relabel_config as prometheus-operator spells it.
type Relabeling struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    string   `json:"separator,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// RuleGroup is one group of a PrometheusRule.
type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []Rule `json:"rules"`
}

// Rule is one alerting or recording rule.
type Rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Decode decodes every document of a YAML stream strictly into its API type.
// source names the stream in errors. It returns the objects and every problem.
func Decode(source string, data []byte) ([]*Object, error) {
	var objs []*Object
	var errs []error
	for i, doc := range splitDocuments(data) {
		src := fmt.Sprintf("%s#%d", source, i)
		o, err := decodeOne(src, doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	content := false
	flush := func() {
		if content {
			docs = append(docs, cur)
		}
		cur, content = nil, false
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if bytes.HasPrefix(line, []byte("---")) && (len(t) == 3 || bytes.HasPrefix(bytes.TrimSpace(t[3:]), []byte("#"))) {
			flush()
			continue
		}
		if len(t) > 0 && t[0] != '#' {
			content = true
		}
		cur = append(cur, line...)
		cur = append(cur, '\n')
	}
	flush()
	return docs
}

// envelope is the part of every object that is not its spec.
type envelope struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

func decodeOne(src string, doc []byte) (*Object, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	var env envelope
	if err := json.Unmarshal(js, &env); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if env.APIVersion == "" || env.Kind == "" {
		return nil, fmt.Errorf("%s: apiVersion and kind must be set", src)
	}
	key := env.APIVersion + "/" + env.Kind
	o := &Object{Source: src, APIVersion: env.APIVersion, Kind: env.Kind}
	if newSpec, ok := istioKinds[key]; ok {
		// The envelope strictly: only apiVersion, kind, metadata and spec.
		var strictEnv struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
			Spec       json.RawMessage   `json:"spec"`
		}
		if err := strictJSON(js, &strictEnv); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", src, env.Kind, err)
		}
		o.Meta = strictEnv.Metadata
		msg := newSpec()
		if len(env.Spec) > 0 {
			if err := (protojson.UnmarshalOptions{}).Unmarshal(env.Spec, msg); err != nil {
				return nil, fmt.Errorf("%s: %s %s: spec: %w", src, env.Kind, o.Meta.Name, err)
			}
		}
		o.Value = msg
	} else if newObj, ok := kubeKinds[key]; ok && newObj != nil {
		v := newObj()
		if err := strictJSON(js, v); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", src, env.Kind, err)
		}
		if err := json.Unmarshal(env.Metadata, &o.Meta); err != nil {
			return nil, fmt.Errorf("%s: %s: metadata: %w", src, env.Kind, err)
		}
		o.Value = v
	} else {
		return nil, fmt.Errorf("%s: %s: kind not known to shepherd's validation", src, key)
	}
	if o.Meta.Name == "" {
		return nil, fmt.Errorf("%s: %s: metadata.name must be set", src, env.Kind)
	}
	for _, msg := range validation.IsDNS1123Subdomain(o.Meta.Name) {
		return nil, fmt.Errorf("%s: %s: metadata.name %q: %s", src, env.Kind, o.Meta.Name, msg)
	}
	return o, nil
}

// strictJSON decodes like encoding/json, rejecting unknown fields and trailing data.
func strictJSON(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	return nil
}

// strictYAML decodes a YAML document strictly into v (unknown fields are errors).
func strictYAML(data []byte, v any) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	return strictJSON(js, v)
}
