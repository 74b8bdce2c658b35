package envoy

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// StatsTag is one Envoy stats_tags entry (config.metrics.v3.TagSpecifier with a regex):
// the tag named Name takes its value from Regex matched against the full stat name.
type StatsTag struct {
	Name  string
	Regex string
}

// customNamespace is the stat namespace Envoy gives proxy_define_metric names
// (source/extensions/common/wasm/wasm.cc registers "wasmcustom" as a custom stat
// namespace; context.cc defineMetric prefixes it).
const customNamespace = "wasmcustom"

// defaultBuckets are Envoy's default histogram bucket bounds
// (source/common/stats/histogram_impl.cc HistogramSettingsImpl::defaultBuckets).
var defaultBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
	30000, 60000, 300000, 600000, 1800000, 3600000}

type tagExtractor struct {
	name string
	re   *regexp.Regexp
}

type statTag struct{ name, value string }

// metric is one stat in the store, shared by all VMs like Envoy's stats scope.
type metric struct {
	kind      int // metricCounter, metricGauge, metricHistogram
	name      string
	extracted string // name after tag extraction
	tags      []statTag

	value atomic.Int64 // counter and gauge

	mu      sync.Mutex // histogram
	buckets []uint64
	count   uint64
	sum     float64
}

func (m *metric) record(v uint64) {
	m.mu.Lock()
	for i, b := range defaultBuckets {
		if float64(v) <= b {
			m.buckets[i]++
		}
	}
	m.count++
	m.sum += float64(v)
	m.mu.Unlock()
}

// statsStore holds every stat by its full name.
type statsStore struct {
	extractors []tagExtractor
	mu         sync.Mutex
	byName     map[string]*metric
}

func newStatsStore(tags []StatsTag) (*statsStore, error) {
	s := &statsStore{byName: map[string]*metric{}}
	for i, t := range tags {
		if t.Name == "" {
			return nil, fmt.Errorf("stats_tags[%d].tag_name: must not be empty", i)
		}
		re, err := regexp.Compile(t.Regex)
		if err != nil {
			return nil, fmt.Errorf("stats_tags[%d].regex: %w", i, err)
		}
		if re.NumSubexp() < 1 {
			return nil, fmt.Errorf("stats_tags[%d].regex: needs at least one capture group", i)
		}
		s.extractors = append(s.extractors, tagExtractor{name: t.Name, re: re})
	}
	return s, nil
}

// extractTags follows Envoy's TagExtractorImpl (source/common/stats/tag_extractor_impl.cc):
// each regex is matched against the full stat name; the first capture group is the part
// removed from the name and the second group, when the regex has one, is the tag value
// (otherwise the first group is). Removals are applied after all extractors ran, so every
// regex sees the original name. Envoy uses RE2; Go's regexp has the same syntax.
func (s *statsStore) extractTags(name string) (string, []statTag) {
	type cut struct{ start, end int }
	var tags []statTag
	var cuts []cut
	for _, ex := range s.extractors {
		m := ex.re.FindStringSubmatchIndex(name)
		if m == nil || m[2] < 0 {
			continue
		}
		vs, ve := m[2], m[3]
		if len(m) >= 6 && m[4] >= 0 {
			vs, ve = m[4], m[5]
		}
		tags = append(tags, statTag{ex.name, name[vs:ve]})
		cuts = append(cuts, cut{m[2], m[3]})
	}
	if len(cuts) == 0 {
		return name, nil
	}
	keep := make([]bool, len(name))
	for i := range keep {
		keep[i] = true
	}
	for _, c := range cuts {
		for i := c.start; i < c.end; i++ {
			keep[i] = false
		}
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if keep[i] {
			b.WriteByte(name[i])
		}
	}
	return b.String(), tags
}

// get returns the stat of that full name and kind, creating it on first use. A name
// already used by another kind yields nil (Envoy keeps separate maps per kind; a clash
// of one name across kinds is not representable in Prometheus text either).
func (s *statsStore) get(kind int, name string) *metric {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strconv.Itoa(kind) + "|" + name
	if m, ok := s.byName[key]; ok {
		return m
	}
	ext, tags := s.extractTags(name)
	m := &metric{kind: kind, name: name, extracted: ext, tags: tags}
	if kind == metricHistogram {
		m.buckets = make([]uint64, len(defaultBuckets))
	}
	s.byName[key] = m
	return m
}

// lookup returns a stat by kind and full name, or nil.
func (s *statsStore) lookup(kind int, name string) *metric {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byName[strconv.Itoa(kind)+"|"+name]
}

var promSanitize = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// promName follows source/server/admin/prometheus_stats.cc PrometheusStatsFormatter::metricName:
// a name in the custom namespace loses it and keeps no prefix (and is dropped when it
// would start with a digit); any other name gets "envoy_"; then [^a-zA-Z0-9_] become "_".
func promName(extracted string) (string, bool) {
	if i := strings.IndexByte(extracted, '.'); i >= 0 && extracted[:i] == customNamespace {
		n := promSanitize.ReplaceAllString(extracted[i+1:], "_")
		if n == "" || (n[0] >= '0' && n[0] <= '9') {
			return "", false
		}
		return n, true
	}
	return "envoy_" + promSanitize.ReplaceAllString(extracted, "_"), true
}

var promValueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func promTags(tags []statTag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = promSanitize.ReplaceAllString(t.name, "_") + `="` + promValueEscaper.Replace(t.value) + `"`
	}
	return strings.Join(parts, ",")
}

// formatFloat prints like fmt's "{:.32g}" in Envoy for the values that occur here:
// fixed notation, no exponent, shortest exact digits.
func formatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// writePrometheus prints the store as Envoy's /stats/prometheus does
// (source/server/admin/prometheus_stats.cc): counters, then gauges, then histograms;
// one "# TYPE" line per tag-extracted name, samples sorted; counters carry no "_total"
// suffix and every sample has braces even without tags; histograms print cumulative
// _bucket lines for Envoy's default bounds, +Inf, _sum and _count.
//
// Differences from Envoy: Envoy shows histogram values only after its stats flush
// (every 5 s by default); here they show at once. Stats never used are still shown.
func (s *statsStore) writePrometheus(w io.Writer) {
	s.mu.Lock()
	all := make([]*metric, 0, len(s.byName))
	for _, m := range s.byName {
		all = append(all, m)
	}
	s.mu.Unlock()
	for _, kind := range []int{metricCounter, metricGauge, metricHistogram} {
		groups := map[string][]*metric{}
		var names []string
		for _, m := range all {
			if m.kind != kind {
				continue
			}
			n, ok := promName(m.extracted)
			if !ok {
				continue
			}
			if _, seen := groups[n]; !seen {
				names = append(names, n)
			}
			groups[n] = append(groups[n], m)
		}
		sort.Strings(names)
		typ := [...]string{"counter", "gauge", "histogram"}[kind]
		for _, n := range names {
			fmt.Fprintf(w, "# TYPE %s %s\n", n, typ)
			ms := groups[n]
			sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
			for _, m := range ms {
				tags := promTags(m.tags)
				switch kind {
				case metricCounter, metricGauge:
					fmt.Fprintf(w, "%s{%s} %d\n", n, tags, m.value.Load())
				case metricHistogram:
					ht := tags
					if ht != "" {
						ht += ","
					}
					m.mu.Lock()
					for i, b := range defaultBuckets {
						fmt.Fprintf(w, "%s_bucket{%sle=\"%s\"} %d\n", n, ht, formatFloat(b), m.buckets[i])
					}
					fmt.Fprintf(w, "%s_bucket{%sle=\"+Inf\"} %d\n", n, ht, m.count)
					fmt.Fprintf(w, "%s_sum{%s} %s\n", n, tags, formatFloat(m.sum))
					fmt.Fprintf(w, "%s_count{%s} %d\n", n, tags, m.count)
					m.mu.Unlock()
				}
			}
		}
	}
}
