package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// Metrics is a set of metric names Prometheus can hold.
type Metrics map[string]bool

// AddCounter adds a counter or gauge name.
func (m Metrics) AddCounter(name string) { m[name] = true }

// AddHistogram adds a histogram's series: name_bucket, name_sum, name_count.
func (m Metrics) AddHistogram(name string) {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		m[name+s] = true
	}
}

// grafanaVars are the Grafana variables shepherd's board uses, replaced by
// plain values so that its queries parse as PromQL.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "$__range", "1d",
	"$route", ".*", "${route}", ".*",
)

// QueryMetrics parses a PromQL expression and returns the metric names it selects.
func QueryMetrics(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				name = m.Value
			}
		}
		if name != "" && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		return nil
	})
	sort.Strings(names)
	return names, nil
}

// queries checks that each expression parses and selects only known metrics.
func queries(where string, exprs map[string]string, known Metrics) []error {
	var errs []error
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		names, err := QueryMetrics(exprs[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, k, err))
			continue
		}
		if len(names) == 0 {
			errs = append(errs, fmt.Errorf("%s: %s: selects no metric", where, k))
		}
		for _, n := range names {
			if !known[n] {
				errs = append(errs, fmt.Errorf("%s: %s: metric %s is defined by neither the filter nor the sidecar", where, k, n))
			}
		}
	}
	return errs
}

// Dashboard checks a Grafana dashboard JSON: every panel query (rows
// included) and template variable query parses and uses known metrics.
func Dashboard(path string, known Metrics) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var board struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &board); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	exprs := map[string]string{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				exprs[fmt.Sprintf("panel %q target %s", p.Title, t.RefID)] = t.Expr
			}
			walk(p.Panels)
		}
	}
	walk(board.Panels)
	if len(exprs) == 0 {
		return fmt.Errorf("%s: no panel queries", path)
	}
	for _, v := range board.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		if m := labelValues.FindStringSubmatch(q.Query); m != nil {
			exprs[fmt.Sprintf("variable %q", v.Name)] = m[1]
		}
	}
	return errors.Join(queries(path, exprs, known)...)
}

type dashPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// Rules checks a PrometheusRule file: it decodes strictly, and every rule's
// expression parses and uses known metrics.
func Rules(path string, known Metrics) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	objs, err := Decode(path, data)
	if err != nil {
		return err
	}
	var errs []error
	exprs := map[string]string{}
	for _, o := range objs {
		pr, ok := o.Value.(*PrometheusRule)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s: not a PrometheusRule", o.Source, o))
			continue
		}
		for gi, g := range pr.Spec.Groups {
			for ri, r := range g.Rules {
				id := fmt.Sprintf("spec.groups[%d].rules[%d] (%s%s)", gi, ri, r.Alert, r.Record)
				if (r.Alert == "") == (r.Record == "") {
					errs = append(errs, fmt.Errorf("%s: %s: set exactly one of alert and record", path, id))
				}
				exprs[id] = r.Expr
			}
		}
	}
	if len(exprs) == 0 {
		errs = append(errs, fmt.Errorf("%s: no rules", path))
	}
	return errors.Join(append(errs, queries(path, exprs, known)...)...)
}

// IstioMetrics are the series of Istio's own that shepherd's alerts and
// board use, with their labels: the agent's wasm fetch counter
// (istio.io/istio pkg/wasm/monitoring.go, served with the prefix istio_agent_
// on the merged :15020 endpoint) and the standard request metric.
var IstioMetrics = map[string][]string{
	"istio_agent_wasm_remote_fetch_count": {"result"},
	"istio_requests_total": {"reporter", "source_workload", "source_workload_namespace", "destination_service",
		"destination_service_name", "destination_service_namespace", "response_code", "request_protocol"},
}

// AdapterValues are the prometheus-adapter Helm values shepherd ships.
type AdapterValues struct {
	Prometheus struct {
		URL  string `json:"url"`
		Port int    `json:"port"`
		Path string `json:"path,omitempty"`
	} `json:"prometheus"`
	Rules struct {
		Default bool          `json:"default"`
		Custom  []AdapterRule `json:"custom"`
	} `json:"rules"`
}

// AdapterRule is one prometheus-adapter discovery rule.
type AdapterRule struct {
	SeriesQuery   string `json:"seriesQuery"`
	SeriesFilters []struct {
		Is    string `json:"is,omitempty"`
		IsNot string `json:"isNot,omitempty"`
	} `json:"seriesFilters,omitempty"`
	Resources struct {
		Overrides map[string]struct {
			Group    string `json:"group,omitempty"`
			Resource string `json:"resource"`
		} `json:"overrides,omitempty"`
		Template string `json:"template,omitempty"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

// adapterTemplate replaces prometheus-adapter's query template fields.
var adapterTemplate = strings.NewReplacer("<<.Series>>", "__SERIES__", "<<.LabelMatchers>>", `namespace="x",pod=~"a|b"`, "<<.GroupBy>>", "pod")

// Adapter checks prometheus-adapter values: every rule's series query and
// metrics query parse and use known metrics, the rename regex matches the
// series, and resources map namespace and pod. It returns the custom metric
// names the rules serve.
func Adapter(path string, known Metrics) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v AdapterValues
	if err := strictYAML(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	if v.Prometheus.URL == "" || strings.Contains(v.Prometheus.URL, "prometheus.default.svc") {
		errs = append(errs, fmt.Errorf("%s: prometheus.url: %q: set the Prometheus the adapter queries (the chart's default, http://prometheus.default.svc, is in no usual install)", path, v.Prometheus.URL))
	}
	if v.Prometheus.Port == 0 {
		errs = append(errs, fmt.Errorf("%s: prometheus.port: not set", path))
	}
	var served []string
	for i, r := range v.Rules.Custom {
		id := fmt.Sprintf("rules.custom[%d]", i)
		series, err := QueryMetrics(r.SeriesQuery)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s.seriesQuery: %w", path, id, err))
			continue
		}
		errs = append(errs, queries(path, map[string]string{id + ".seriesQuery": r.SeriesQuery}, known)...)
		re, err := regexp.Compile(r.Name.Matches)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s.name.matches: %w", path, id, err))
			continue
		}
		for _, s := range series {
			if !re.MatchString(s) {
				errs = append(errs, fmt.Errorf("%s: %s.name.matches: %q does not match the series %s", path, id, r.Name.Matches, s))
				continue
			}
			served = append(served, re.ReplaceAllString(s, r.Name.As))
			q := strings.ReplaceAll(adapterTemplate.Replace(r.MetricsQuery), "__SERIES__", s)
			errs = append(errs, queries(path, map[string]string{id + ".metricsQuery": q}, known)...)
		}
		for _, label := range []string{"namespace", "pod"} {
			if _, ok := r.Resources.Overrides[label]; !ok && r.Resources.Template == "" {
				errs = append(errs, fmt.Errorf("%s: %s.resources: label %s is not mapped to a resource", path, id, label))
			}
		}
	}
	if len(served) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: no custom rules", path))
	}
	return served, errors.Join(errs...)
}

// MonitoringFiles are the files of istio/monitoring, relative to it.
var MonitoringFiles = struct{ Dashboard, Rules, Adapter, PodMonitor string }{
	"grafana-dashboard.json", "prometheusrules.yaml", "prometheus-adapter-values.yaml", "podmonitor.yaml",
}

// MergedMetricsPort is where Istio's agent serves the proxy's stats merged
// with the application's metrics (the injector points prometheus.io/port at it).
const MergedMetricsPort = "15020"

// ScrapeLabels checks the PodMonitor that scrapes the proxies: it decodes
// strictly, keeps only pods whose prometheus.io/port is Istio's merged
// endpoint, scrapes /stats/prometheus there, and names the labels namespace
// and pod. It returns the labels its relabelings add to every series and its
// release label (what kube-prometheus-stack's podMonitorSelector matches).
func ScrapeLabels(path string) (labels []string, release string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	objs, err := Decode(path, data)
	if err != nil {
		return nil, "", err
	}
	if len(objs) != 1 {
		return nil, "", fmt.Errorf("%s: want one PodMonitor", path)
	}
	pm, ok := objs[0].Value.(*PodMonitor)
	if !ok {
		return nil, "", fmt.Errorf("%s: %s: not a PodMonitor", path, objs[0])
	}
	var errs []error
	if len(pm.Spec.Endpoints) != 1 {
		return nil, "", fmt.Errorf("%s: spec.podMetricsEndpoints: want one", path)
	}
	ep := pm.Spec.Endpoints[0]
	if ep.Path != "/stats/prometheus" {
		errs = append(errs, fmt.Errorf("%s: spec.podMetricsEndpoints[0].path: %q, Istio's merged endpoint serves /stats/prometheus", path, ep.Path))
	}
	keepsMerged, addrToMerged := false, false
	for _, r := range ep.Relabelings {
		if r.Action == "keep" && len(r.SourceLabels) == 1 && r.SourceLabels[0] == "__meta_kubernetes_pod_annotation_prometheus_io_port" && r.Regex == MergedMetricsPort {
			keepsMerged = true
		}
		if r.TargetLabel == "__address__" && r.Replacement != nil && strings.HasSuffix(*r.Replacement, ":"+MergedMetricsPort) {
			addrToMerged = true
		}
		if r.TargetLabel != "" && !strings.HasPrefix(r.TargetLabel, "__") {
			labels = append(labels, r.TargetLabel)
		}
	}
	if !keepsMerged {
		errs = append(errs, fmt.Errorf("%s: spec.podMetricsEndpoints[0].relabelings: no keep of prometheus.io/port %s (Istio's merged endpoint)", path, MergedMetricsPort))
	}
	if !addrToMerged {
		errs = append(errs, fmt.Errorf("%s: spec.podMetricsEndpoints[0].relabelings: __address__ is not set to port %s", path, MergedMetricsPort))
	}
	for _, want := range []string{"namespace", "pod"} {
		if !slices.Contains(labels, want) {
			errs = append(errs, fmt.Errorf("%s: spec.podMetricsEndpoints[0].relabelings: no %s label (prometheus-adapter maps series to pods by namespace and pod)", path, want))
		}
	}
	return labels, pm.Labels["release"], errors.Join(errs...)
}

// Monitoring checks the dashboard, rules, adapter values and PodMonitor of
// dir (istio/monitoring), and that they agree on the one value a user sets:
// the kube-prometheus-stack release (the rule's and the PodMonitor's release
// label, and the adapter's Prometheus <release>-prometheus).
func Monitoring(dir string, known Metrics) error {
	_, aerr := Adapter(filepath.Join(dir, MonitoringFiles.Adapter), known)
	_, release, serr := ScrapeLabels(filepath.Join(dir, MonitoringFiles.PodMonitor))
	errs := []error{
		Dashboard(filepath.Join(dir, MonitoringFiles.Dashboard), known),
		Rules(filepath.Join(dir, MonitoringFiles.Rules), known),
		aerr, serr,
	}
	if release == "" {
		errs = append(errs, fmt.Errorf("%s: metadata.labels.release: not set; kube-prometheus-stack selects PodMonitors by its release name", MonitoringFiles.PodMonitor))
	}
	if data, err := os.ReadFile(filepath.Join(dir, MonitoringFiles.Rules)); err == nil {
		if objs, err := Decode(MonitoringFiles.Rules, data); err == nil {
			for _, o := range objs {
				if got := o.Meta.Labels["release"]; got != release {
					errs = append(errs, fmt.Errorf("%s: %s: metadata.labels.release: %q, the PodMonitor's is %q", MonitoringFiles.Rules, o, got, release))
				}
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, MonitoringFiles.Adapter)); err == nil {
		var v AdapterValues
		if strictYAML(data, &v) == nil && !strings.Contains(v.Prometheus.URL, "//"+release+"-prometheus.") {
			errs = append(errs, fmt.Errorf("%s: prometheus.url: %q is not the Prometheus of the release %q (http://%s-prometheus.<namespace>.svc)", MonitoringFiles.Adapter, v.Prometheus.URL, release, release))
		}
	}
	return errors.Join(errs...)
}
