package envoy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func TestPairsRoundTrip(t *testing.T) {
	tests := [][]pair{
		nil,
		{{":path", "/"}},
		{{"a", ""}, {"", "b"}, {"k", "v with spaces"}, {"a", "dup"}},
	}
	for _, ps := range tests {
		got, err := decodePairs(encodePairs(ps))
		require.NoError(t, err)
		require.Equal(t, len(ps), len(got))
		for i := range ps {
			require.Equal(t, ps[i], got[i])
		}
	}
	// The exact layout: count, sizes, then NUL-terminated key and value.
	require.Equal(t, []byte{1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 'k', 0, 'v', 'v', 0}, encodePairs([]pair{{"k", "vv"}}))
	_, err := decodePairs([]byte{5, 0, 0, 0, 1})
	require.Error(t, err)
}

func TestTagExtractionAndPrometheusNames(t *testing.T) {
	s, err := newStatsStore([]StatsTag{
		{Name: "route", Regex: `(_route=\.=(.+?);\.;)`},
		{Name: "model", Regex: `(_model=\.=(.+?);\.;)`},
		{Name: "whole", Regex: `^wasmcustom\.(plain_total)$`},
	})
	require.NoError(t, err)
	tests := []struct {
		name, extracted string
		tags            []statTag
		prom            string
	}{
		{"wasmcustom.req_route=.=chat;.;_model=.=gpt-4o;.;_total", "wasmcustom.req_total",
			[]statTag{{"route", "chat"}, {"model", "gpt-4o"}}, "req_total"},
		{"wasmcustom.req_route=.=chat;.;_total", "wasmcustom.req_total", []statTag{{"route", "chat"}}, "req_total"},
		// With a single capture group the group is both removed and the value.
		{"wasmcustom.plain_total", "wasmcustom.", []statTag{{"whole", "plain_total"}}, ""},
		{"wasm.envoy.wasm.runtime.v8.created", "wasm.envoy.wasm.runtime.v8.created", nil, "envoy_wasm_envoy_wasm_runtime_v8_created"},
		{"wasmcustom.with-dash.and.dots", "wasmcustom.with-dash.and.dots", nil, "with_dash_and_dots"},
		{"wasmcustom.9lives", "wasmcustom.9lives", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ext, tags := s.extractTags(tc.name)
			require.Equal(t, tc.extracted, ext)
			require.Equal(t, tc.tags, tags)
			n, ok := promName(ext)
			require.Equal(t, tc.prom != "", ok)
			require.Equal(t, tc.prom, n)
		})
	}
	_, err = newStatsStore([]StatsTag{{Name: "x", Regex: "("}})
	require.ErrorContains(t, err, "stats_tags[0].regex")
	_, err = newStatsStore([]StatsTag{{Name: "x", Regex: "abc"}})
	require.ErrorContains(t, err, "stats_tags[0].regex: needs at least one capture group")
}

func TestSharedDataCAS(t *testing.T) {
	d := newSharedData()
	_, _, st := d.get("vm", "k")
	require.Equal(t, StatusNotFound, st)
	require.Equal(t, StatusOK, d.set("vm", "k", []byte("a"), 12345)) // missing key ignores cas
	_, cas, st := d.get("vm", "k")
	require.Equal(t, StatusOK, st)
	require.NotZero(t, cas)
	require.Equal(t, StatusCasMismatch, d.set("vm", "k", []byte("b"), cas+1))
	require.Equal(t, StatusOK, d.set("vm", "k", []byte("c"), cas))
	require.Equal(t, StatusCasMismatch, d.set("vm", "k", []byte("d"), cas)) // cas moved on
	require.Equal(t, StatusOK, d.set("vm", "k", []byte("e"), 0))            // 0 always writes
	v, _, _ := d.get("vm", "k")
	require.Equal(t, "e", string(v))
	_, _, st = d.get("other-vm", "k")
	require.Equal(t, StatusNotFound, st, "shared data is per vm_id")
}

// withVM runs f on a started VM of the test guest with its mutex held.
func withVM(t *testing.T, h *Host, f func(v *vm)) {
	v := h.vms[0]
	v.mu.Lock()
	defer v.mu.Unlock()
	f(v)
}

func TestMetricCalls(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	h := newHost(t, "none", up.URL)
	withVM(t, h, func(v *vm) {
		c := v.defineMetric(metricCounter, "c")
		g := v.defineMetric(metricGauge, "g")
		hi := v.defineMetric(metricHistogram, "h")
		require.Equal(t, []uint32{metricCounter, metricGauge, metricHistogram}, []uint32{c & 3, g & 3, hi & 3})
		tests := []struct {
			name string
			id   uint32
			d    int64
			want Status
		}{
			{"counter +1", c, 1, StatusOK},
			{"counter 0", c, 0, StatusBadArgument},
			{"counter -1", c, -1, StatusBadArgument},
			{"gauge -5", g, -5, StatusOK},
			{"histogram", hi, 1, StatusBadArgument},
			{"unknown counter", c + 400, 1, StatusNotFound},
		}
		for _, tc := range tests {
			require.Equal(t, tc.want, v.incrementMetric(tc.id, tc.d), tc.name)
		}
		val, st := v.getMetric(c)
		require.Equal(t, StatusOK, st)
		require.Equal(t, uint64(1), val)
		val, _ = v.getMetric(g)
		require.Equal(t, int64(-5), int64(val))
		_, st = v.getMetric(hi)
		require.Equal(t, StatusBadArgument, st)
		require.Equal(t, StatusOK, v.recordMetric(g, 9))
		val, _ = v.getMetric(g)
		require.Equal(t, uint64(9), val)
	})
}

func TestGrpcServiceArgument(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	h := newHost(t, "none", up.URL, func(c *Config) { c.Clusters["grpc"] = "127.0.0.1:1" })
	svc, err := proto.Marshal(&corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
		EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "grpc"}}})
	require.NoError(t, err)
	tests := []struct {
		name    string
		service []byte
		cluster string
		want    Status
	}{
		{"plain cluster name", []byte("grpc"), "grpc", StatusOK},
		{"unknown plain name", []byte("nowhere"), "", StatusParseFailure},
		{"serialized GrpcService", svc, "grpc", StatusOK},
		{"empty GrpcService", nil, "", StatusBadArgument},
	}
	withVM(t, h, func(v *vm) {
		for _, tc := range tests {
			c, st := v.grpcTarget(tc.service)
			require.Equal(t, tc.want, st, tc.name)
			require.Equal(t, tc.cluster, c, tc.name)
		}
	})
}

func TestHeaderMapSemantics(t *testing.T) {
	ps := []pair{{"a", "1"}, {"b", "2"}, {"a", "3"}}
	m := headerMap{&ps}
	m.set("A", "x") // replaces the first, drops the other entries of the key
	require.Equal(t, []pair{{"a", "x"}, {"b", "2"}}, ps)
	m.add("C", "y")
	m.add("c", "z")
	v, ok := m.get("C")
	require.True(t, ok)
	require.Equal(t, "y", v)
	m.del("c")
	require.Equal(t, []pair{{"a", "x"}, {"b", "2"}}, ps)
	require.Equal(t, 4, m.byteSize())
}

func TestConfigErrorsNameTheField(t *testing.T) {
	wasm := buildGuest(t)
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "config.module: must not be empty"},
		{Config{Module: wasm, Clusters: map[string]string{"up": "nohost"}}, "config.clusters[up]:"},
		{Config{Module: wasm, Routes: map[string]string{"a": "missing"}}, `config.routes[a]: unknown cluster "missing"`},
		{Config{Module: wasm, DefaultCluster: "missing"}, `config.default_cluster: unknown cluster "missing"`},
		{Config{Module: wasm, LogLevel: "loud"}, `config.log_level: unknown log level "loud"`},
		{Config{Module: wasm, StatsTags: []StatsTag{{Regex: "(x)"}}}, "config.stats_tags[0].tag_name: must not be empty"},
	}
	for _, tc := range tests {
		tc.cfg.LogWriter = io.Discard
		_, err := New(context.Background(), tc.cfg)
		require.Error(t, err)
		require.True(t, strings.HasPrefix(err.Error(), tc.want), err.Error())
	}
}

func TestLocalReplyHeaders(t *testing.T) {
	tests := []struct {
		name string
		l    localReply
		grpc bool
		want []pair
	}{
		{"body gets length and text/plain", localReply{code: 429, body: []byte("slow down"), headers: []pair{{"Retry-After", "1"}}},
			false, []pair{{":status", "429"}, {"retry-after", "1"}, {"content-length", "9"}, {"content-type", "text/plain"}}},
		{"plugin content type kept", localReply{code: 200, body: []byte("{}"), headers: []pair{{"content-type", "application/json"}}},
			false, []pair{{":status", "200"}, {"content-type", "application/json"}, {"content-length", "2"}}},
		{"no body: no length, no type", localReply{code: 204, headers: []pair{{"content-type", "application/json"}}},
			false, []pair{{":status", "204"}}},
		{"grpc: trailers-only", localReply{code: 503, body: []byte("down now"), grpcStatus: -1},
			true, []pair{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "14"}, {"grpc-message", "down%20now"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.l
			require.Equal(t, tc.want, localReplyPairs(&l, tc.grpc))
		})
	}
}

func TestCalloutFailuresAnswerLikeEnvoysAsyncClient(t *testing.T) {
	// A port nothing listens on: take one and close it.
	lis := httptest.NewServer(http.NotFoundHandler())
	closed := strings.TrimPrefix(lis.URL, "http://")
	lis.Close()
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(block)

	tests := []struct {
		name    string
		addr    string
		timeout time.Duration
		status  string
		body    string
	}{
		{"connection refused", closed, time.Minute, "503", "upstream connect error or disconnect/reset before headers. reset reason: connection failure"},
		{"timeout", strings.TrimPrefix(slow.URL, "http://"), 20 * time.Millisecond, "504", "upstream request timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", "http://"+tc.addr+"/", nil)
			require.NoError(t, err)
			resp := doCallout(ctx, http.DefaultTransport, req, DefaultCalloutBufferLimit)
			status, _ := headerMap{&resp.headers}.get(":status")
			require.Equal(t, tc.status, status)
			require.Equal(t, tc.body, string(resp.body))
		})
	}
}
