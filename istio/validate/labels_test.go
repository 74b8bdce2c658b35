package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/promtext"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
	sidecarconfig "github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/policy"
	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// labelSet maps a metric name to the label names its series carry.
type labelSet map[string]map[string]bool

func (l labelSet) add(metric string, labels ...string) {
	if l[metric] == nil {
		l[metric] = map[string]bool{}
	}
	for _, n := range labels {
		l[metric][n] = true
	}
}

// filterLabels runs the shipped pluginConfig in the Envoy-faithful host
// (e2e/envoy) with the shipped stats tags, against fake providers, sends
// traffic that produces a success, a fallback, a limited request and a
// fallback denied (a provider pausing with nowhere else to go), and
// returns the label names of every series the filter exported.
func filterLabels(t *testing.T) labelSet {
	t.Helper()
	mod, err := wasmbuild.Build("./filter")
	require.NoError(t, err)
	pc, err := PluginConfig(shippedPlugin(t))
	require.NoError(t, err)
	// One request a minute on the chat route, so the second one is limited.
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(pc, &cfg))
	cfg["routes"].([]any)[0].(map[string]any)["limits"].(map[string]any)["requestsPerMinute"] = 1
	cfg["routes"].([]any)[0].(map[string]any)["limits"].(map[string]any)["requestBurst"] = 1
	pc, err = json.Marshal(cfg)
	require.NoError(t, err)

	relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
	relay.Script(fakeprovider.Fault{Status: 429})
	openai := fakeprovider.New(fakeprovider.Options{Name: "openai"})
	openai.Script(fakeprovider.Fault{Status: 429})
	addr := func(h http.Handler) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		u, _ := url.Parse(s.URL)
		return u.Host
	}
	relayAddr, openaiAddr := addr(relay), addr(openai)
	var tags []envoy.StatsTag
	for _, st := range telemetry.StatsTags {
		tags = append(tags, envoy.StatsTag{Name: st.Name, Regex: st.Regex})
	}
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: mod, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd", PluginConfig: pc,
		Clusters: map[string]string{
			"outbound|80||relay.example.com": relayAddr, "outbound|80||api.openai.com": openaiAddr,
			SidecarService: "127.0.0.1:1",
		},
		Routes:    map[string]string{"relay.example.com": "outbound|80||relay.example.com", "api.openai.com": "outbound|80||api.openai.com"},
		StatsTags: tags, LogWriter: io.Discard,
		Env: map[string]string{"RELAY_API_KEY": "test-relay", "OPENAI_API_KEY": "test-openai", "SHEPHERD_FILTER_TOKEN": "test-filter-token"},
	})
	require.NoError(t, err)
	front := httptest.NewServer(h)
	t.Cleanup(func() { front.Close(); _ = h.Close(context.Background()) })

	statuses := map[int]int{}
	for range 2 {
		req, err := http.NewRequest("POST", front.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4.1","messages":[{"role":"user","content":"hello"}]}`))
		require.NoError(t, err)
		req.Host = "api.openai.com"
		req.Header.Set("content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	require.Equal(t, map[int]int{200: 1, 429: 1}, statuses, "one answer after a fallback, one limited")

	// The embeddings route's only provider asks for a pause; the next
	// request is answered by shepherd, a fallback denied for cooling.
	for i, fake := range []string{"429", ""} {
		req, err := http.NewRequest("POST", front.URL+"/v1/embeddings", strings.NewReader(`{"model":"text-embedding-3-small","input":"hello"}`))
		require.NoError(t, err)
		req.Host = "api.openai.com"
		req.Header.Set("content-type", "application/json")
		if fake != "" {
			req.Header.Set("x-fake-status", fake)
			req.Header.Set("x-fake-retry-after", "30")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "embeddings request %d", i)
	}

	var buf bytes.Buffer
	h.WritePrometheus(&buf)
	labels := labelSet{}
	for _, s := range promtext.Parse(&buf) {
		names := make([]string, 0, len(s.Labels))
		for n := range s.Labels {
			names = append(names, n)
		}
		labels.add(s.Name, names...)
	}
	for _, m := range []string{telemetry.Requests, telemetry.Fallbacks, telemetry.FallbacksDenied, telemetry.RateLimited, telemetry.Tokens, telemetry.Cost, telemetry.Duration + "_bucket"} {
		require.Contains(t, labels, m, "the traffic produced %s:\n%s", m, buf.String())
	}
	return labels
}

var filterExport struct {
	once   sync.Once
	labels labelSet
}

// exportedFilterLabels is filterLabels run once per test binary; each caller
// gets its own copy.
func exportedFilterLabels(t *testing.T) labelSet {
	t.Helper()
	filterExport.once.Do(func() { filterExport.labels = filterLabels(t) })
	require.NotNil(t, filterExport.labels, "the filter's export (see the first test that ran it)")
	out := labelSet{}
	for m, ls := range filterExport.labels {
		for l := range ls {
			out.add(m, l)
		}
		out.add(m)
	}
	return out
}

var variableLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)

// labelRecorder notes the variable labels of registered collectors.
type labelRecorder struct {
	prometheus.Registerer
	labels labelSet
}

func (r labelRecorder) Register(c prometheus.Collector) error {
	descs := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(descs); close(descs) }()
	for d := range descs {
		name := fqName.FindStringSubmatch(d.String())
		vl := variableLabels.FindStringSubmatch(d.String())
		if name == nil {
			continue
		}
		var ls []string
		if vl != nil && vl[1] != "" {
			ls = strings.Split(vl[1], ",")
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			r.labels.add(name[1]+suffix, ls...)
		}
		r.labels.add(name[1]+"_bucket", "le")
	}
	return r.Registerer.Register(c)
}

func (r labelRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// queryLabelProblems reports label names an expression matches on or groups
// by that none of the metrics it selects carry.
func queryLabelProblems(expr string, labels labelSet) []string {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return []string{err.Error()}
	}
	has := func(metrics []string, label string) bool {
		for _, m := range metrics {
			if labels[m][label] {
				return true
			}
		}
		return false
	}
	var problems []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch v := n.(type) {
		case *parser.VectorSelector:
			for _, m := range v.LabelMatchers {
				if m.Name != "__name__" && !has([]string{v.Name}, m.Name) {
					problems = append(problems, fmt.Sprintf("%s has no label %s", v.Name, m.Name))
				}
			}
		case *parser.AggregateExpr:
			var selected []string
			parser.Inspect(v.Expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					selected = append(selected, vs.Name)
				}
				return nil
			})
			for _, g := range v.Grouping {
				if !has(selected, g) {
					problems = append(problems, fmt.Sprintf("%v have no label %s to group by", selected, g))
				}
			}
		}
		return nil
	})
	return problems
}

// TestQueriesUseLabelsTheMetricsHave: the labels the board and the alerts
// match on and group by are ones the series really carry: the filter's as the
// host exports them after real traffic, the sidecar's as its metrics declare.
func TestQueriesUseLabelsTheMetricsHave(t *testing.T) {
	labels := exportedFilterLabels(t)
	sidecarLabels(t, labelRecorder{prometheus.NewRegistry(), labels})
	for name, ls := range IstioMetrics {
		labels.add(name, ls...)
	}
	// Every series gets the labels the PodMonitor's relabelings add.
	scrape, _, err := ScrapeLabels(filepath.Join(istioDir, "monitoring", MonitoringFiles.PodMonitor))
	require.NoError(t, err)
	require.Contains(t, scrape, "track", "the filter canary's tracks are told apart")
	for name := range labels {
		labels.add(name, scrape...)
	}

	exprs := map[string]string{}
	dash := filepath.Join(istioDir, "monitoring", MonitoringFiles.Dashboard)
	var board struct {
		Panels []dashPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(mustRead(t, dash), &board))
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				exprs["panel "+p.Title+" "+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(board.Panels)
	objs, err := Decode("rules", mustRead(t, filepath.Join(istioDir, "monitoring", MonitoringFiles.Rules)))
	require.NoError(t, err)
	for _, g := range objs[0].Value.(*PrometheusRule).Spec.Groups {
		for _, r := range g.Rules {
			exprs["rule "+r.Alert] = r.Expr
		}
	}
	for name, e := range exprs {
		require.Empty(t, queryLabelProblems(e, labels), "%s: %s", name, e)
	}
	// The check itself can fail.
	require.Equal(t, []string{"shepherd_requests_total has no label status"},
		queryLabelProblems(`sum(rate(shepherd_requests_total{status="500"}[5m]))`, labels))
	require.Equal(t, []string{"[shepherd_fallbacks_total] have no label provider to group by"},
		queryLabelProblems(`sum by (provider) (rate(shepherd_fallbacks_total[5m]))`, labels))
}

// sidecarLabels registers the sidecar's policy engine and rate limit service
// metrics with rec.
func sidecarLabels(t *testing.T, rec labelRecorder) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := sidecarconfig.Load(filepath.Join(istioDir, "base", "sidecar.yaml"))
	require.NoError(t, err)
	_, err = policy.New(context.Background(), cfg, policy.Options{Registerer: rec, Logger: log})
	require.NoError(t, err)
	ratelimit.NewService(nil, store.NewMemory(store.MemoryOptions{}), ratelimit.Options{Registerer: rec, Logger: log})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
