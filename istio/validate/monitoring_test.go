package validate

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"

	sidecarconfig "github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/policy"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// filterMetrics reads the filter's metric base names from filter/telemetry's
// source: its string constants named shepherd_* or gen_ai_*. Names ending in
// _total are counters; the others are histograms (Prometheus sees their
// _bucket, _sum and _count series).
func filterMetrics(t *testing.T, known Metrics) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "filter", "telemetry", "telemetry.go"), nil, 0)
	require.NoError(t, err)
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		lit, ok := node.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		v, err := strconv.Unquote(lit.Value)
		if err != nil || !regexp.MustCompile(`^(shepherd|gen_ai)_[a-z_]+$`).MatchString(v) {
			return true
		}
		n++
		if strings.HasSuffix(v, "_total") {
			known.AddCounter(v)
		} else {
			known.AddHistogram(v)
		}
		return true
	})
	require.GreaterOrEqual(t, n, 9, "filter/telemetry defines the filter's metric names")
}

// recorder is a Registerer that notes the names of what is registered, by
// describing each collector (vectors without children included) and
// collecting it (to tell histograms).
type recorder struct {
	prometheus.Registerer
	known Metrics
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r recorder) Register(c prometheus.Collector) error {
	descs := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(descs); close(descs) }()
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.known.AddCounter(m[1])
		}
	}
	metrics := make(chan prometheus.Metric, 16)
	go func() { c.Collect(metrics); close(metrics) }()
	for m := range metrics {
		var pb dto.Metric
		if m.Write(&pb) == nil && pb.Histogram != nil {
			if n := fqName.FindStringSubmatch(m.Desc().String()); n != nil {
				r.known.AddHistogram(n[1])
			}
		}
	}
	return r.Registerer.Register(c)
}

func (r recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// sidecarMetrics builds the sidecar's registry as shepherd-sidecar does (the
// server with the shipped configuration, the policy engine and the rate
// limit service) and notes every metric name registered or gathered.
func sidecarMetrics(t *testing.T, known Metrics) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := sidecarconfig.Load(filepath.Join(istioDir, "base", "sidecar.yaml"))
	require.NoError(t, err)
	rec := recorder{prometheus.NewRegistry(), known}
	_, err = policy.New(context.Background(), cfg, policy.Options{Registerer: rec, Logger: log})
	require.NoError(t, err)
	ratelimit.NewService(nil, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Registerer: rec, Logger: log})

	reg := prometheus.NewRegistry()
	srv, err := server.New(context.Background(), server.Options{
		GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Registry: reg, Logger: log,
		RateLimit: server.DefaultRateLimit, ReloadInterval: -1,
	})
	require.NoError(t, err)
	stopped, stop := context.WithCancel(context.Background())
	stop()
	t.Cleanup(func() { require.NoError(t, srv.Serve(stopped)) }) // closes the listeners
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			known.AddHistogram(f.GetName())
		} else {
			known.AddCounter(f.GetName())
		}
	}
	require.True(t, known["shepherd_sidecar_canary_weight_percent"], "policy metrics recorded")
	require.True(t, known["shepherd_ratelimit_store_duration_seconds_bucket"], "rate limit histograms recorded")
}

// knownMetrics are the names the filter really exports (the local mesh's
// /stats/prometheus after real traffic, exportedFilterLabels), those the
// sidecar registers, and Istio's that shepherd uses. The filter's must also
// be names filter/telemetry defines.
func knownMetrics(t *testing.T) Metrics {
	defined := Metrics{}
	filterMetrics(t, defined)
	known := Metrics{}
	for name := range exportedFilterLabels(t) {
		if strings.HasPrefix(name, "shepherd_") || strings.HasPrefix(name, "gen_ai_") {
			require.True(t, defined[name], "the filter exports %s, which filter/telemetry does not define", name)
			known.AddCounter(name)
		}
	}
	sidecarMetrics(t, known)
	for name := range IstioMetrics {
		known.AddCounter(name)
	}
	return known
}

// TestMonitoringUsesDefinedMetrics: every metric the board, the alerts and
// the adapter rule query is one the filter or the sidecar defines, and the
// HPA scales on a metric the adapter serves.
func TestMonitoringUsesDefinedMetrics(t *testing.T) {
	known := knownMetrics(t)
	dir := filepath.Join(istioDir, "monitoring")
	require.NoError(t, Monitoring(dir, known))

	served, err := Adapter(filepath.Join(dir, MonitoringFiles.Adapter), known)
	require.NoError(t, err)
	require.Equal(t, []string{"ai_requests_per_second"}, served)
	data, err := os.ReadFile(filepath.Join(istioDir, "overlays", "namespace", "ai-worker-hpa.yaml"))
	require.NoError(t, err)
	objs, err := Decode("ai-worker-hpa.yaml", data)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	for _, m := range HPAPodMetrics(objs[0].Value.(*autoscalingv2.HorizontalPodAutoscaler)) {
		require.Contains(t, served, m, "the HPA's metric is served by the adapter rule")
	}

	// The kustomization (dashboard ConfigMap + rules) builds and decodes.
	out, err := Build(dir)
	require.NoError(t, err)
	_, err = Decode(dir, out)
	require.NoError(t, err)
}

func TestMonitoringBrokenFixtures(t *testing.T) {
	known := knownMetrics(t)
	dir := filepath.Join("testdata", "broken-monitoring")
	err := Dashboard(filepath.Join(dir, "dashboard.json"), known)
	require.ErrorContains(t, err, `panel "Requests" target A: metric shepherd_request_total is defined by neither the filter nor the sidecar`)
	require.ErrorContains(t, err, `panel "Latency" target A: 1:`)

	err = Rules(filepath.Join(dir, "rules.yaml"), known)
	require.ErrorContains(t, err, `spec.groups[0].rules[0] (ShepherdCostly): metric shepherd_cost_usd_total is defined by neither the filter nor the sidecar`)
	require.ErrorContains(t, err, `spec.groups[0].rules[1] (): set exactly one of alert and record`)

	_, err = Adapter(filepath.Join(dir, "adapter.yaml"), known)
	require.ErrorContains(t, err, `rules.custom[0].name.matches: "^shepherd_requests$" does not match the series shepherd_requests_total`)
	require.ErrorContains(t, err, `rules.custom[0].resources: label pod is not mapped to a resource`)
	require.ErrorContains(t, err, `prometheus.url: "": set the Prometheus the adapter queries`)

	_, release, err := ScrapeLabels(filepath.Join(dir, "podmonitor.yaml"))
	require.Empty(t, release)
	require.ErrorContains(t, err, `spec.podMetricsEndpoints[0].path: "/metrics", Istio's merged endpoint serves /stats/prometheus`)
	require.ErrorContains(t, err, `no keep of prometheus.io/port 15020`)
	require.ErrorContains(t, err, `__address__ is not set to port 15020`)
	require.ErrorContains(t, err, `no namespace label`)
}

// TestFilterMissingAlertNamesTheProviders: the alert that fires when a pod
// calls LLM providers without the filter matches exactly the hosts of the
// shipped pluginConfig's providers.
func TestFilterMissingAlertNamesTheProviders(t *testing.T) {
	js, err := PluginConfig(shippedPlugin(t))
	require.NoError(t, err)
	var cfg struct {
		Providers []struct {
			Host string `json:"host"`
		} `json:"providers"`
	}
	require.NoError(t, json.Unmarshal(js, &cfg))
	var hosts []string
	for _, p := range cfg.Providers {
		hosts = append(hosts, p.Host)
	}
	sort.Strings(hosts)

	objs, err := Decode("rules", mustRead(t, filepath.Join(istioDir, "monitoring", MonitoringFiles.Rules)))
	require.NoError(t, err)
	var expr string
	for _, g := range objs[0].Value.(*PrometheusRule).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "ShepherdFilterMissing" {
				expr = r.Expr
			}
		}
	}
	require.NotEmpty(t, expr)
	m := regexp.MustCompile(`destination_service_name=~"([^"]+)"`).FindStringSubmatch(expr)
	require.NotNil(t, m, expr)
	got := strings.Split(m[1], "|")
	sort.Strings(got)
	require.Equal(t, hosts, got)
}
