package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/promtext"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

var (
	filterModule []byte
	compileCache = wazero.NewCompilationCache()
)

func TestMain(m *testing.M) {
	code := m.Run()
	wasmbuild.Cleanup()
	os.Exit(code)
}

// module is the filter built from this tree, or the .wasm file named by
// SHEPHERD_FILTER_WASM: benchmarks then measure another build (an earlier
// commit, say) for before/after figures.
func module(t testing.TB) []byte {
	t.Helper()
	if filterModule == nil && os.Getenv("SHEPHERD_FILTER_WASM") != "" {
		b, err := os.ReadFile(os.Getenv("SHEPHERD_FILTER_WASM"))
		require.NoError(t, err)
		filterModule = b
	}
	if filterModule == nil {
		b, err := wasmbuild.Build("./filter")
		require.NoError(t, err)
		filterModule = b
	}
	return filterModule
}

func statsTags() []envoy.StatsTag {
	tags := make([]envoy.StatsTag, len(telemetry.StatsTags))
	for i, t := range telemetry.StatsTags {
		tags[i] = envoy.StatsTag{Name: t.Name, Regex: t.Regex}
	}
	return tags
}

// TestScenariosWasm runs the end-to-end scenarios with the filter compiled to
// .wasm, loaded by the Envoy-faithful host, behind a real HTTP front end.
func TestScenariosWasm(t *testing.T) {
	scenario.RunAll(t, wasmRunner)
}

type wasmMesh struct {
	host *envoy.Host
	url  string
}

func wasmRunner(t testing.TB, s scenario.Setup) scenario.Mesh {
	workers := s.Workers
	if workers == 0 {
		workers = 2
	}
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(s.PluginConfig), Workers: workers,
		Clusters: s.Clusters, Routes: s.Routes, DefaultCluster: s.DefaultCluster,
		StatsTags: statsTags(), Env: s.Env, LogWriter: io.Discard,
		CompilationCache: compileCache, NodeMetadata: nodeMetadata(t, s.NodeMetadata),
	})
	require.NoError(t, err)
	front := serveHost(t, h)
	return &wasmMesh{host: h, url: front.URL}
}

// serveHost puts the host behind a loopback HTTP server, as a listener
// in front of Envoy, and closes both at the test's end.
func serveHost(t testing.TB, h *envoy.Host) *httptest.Server {
	front := httptest.NewServer(h)
	t.Cleanup(func() {
		front.Close()
		_ = h.Close(context.Background())
	})
	return front
}

func (m *wasmMesh) Do(t testing.TB, r scenario.Request) scenario.Response {
	req, err := http.NewRequest(r.Method, m.url+r.Path, strings.NewReader(r.Body))
	require.NoError(t, err)
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Host = r.Authority
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return scenario.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (m *wasmMesh) Defined(_ testing.TB, name string) bool {
	var buf bytes.Buffer
	m.host.WritePrometheus(&buf)
	base, labels := promtext.DecodeName(name)
	_, ok := promtext.Find(promtext.Parse(&buf), base, labels)
	return ok
}

func (m *wasmMesh) Counter(t testing.TB, name string) uint64 {
	var buf bytes.Buffer
	m.host.WritePrometheus(&buf)
	base, labels := promtext.DecodeName(name)
	v, ok := promtext.Find(promtext.Parse(&buf), base, labels)
	require.True(t, ok, "no metric %s%v in:\n%s", base, labels, buf.String())
	return uint64(v)
}

// nodeMetadata serializes string metadata as the bootstrap's node.metadata
// (a google.protobuf.Struct), nil for none.
func nodeMetadata(t testing.TB, md map[string]string) []byte {
	if len(md) == 0 {
		return nil
	}
	fields := make(map[string]any, len(md))
	for k, v := range md {
		fields[k] = v
	}
	st, err := structpb.NewStruct(fields)
	require.NoError(t, err)
	b, err := proto.Marshal(st)
	require.NoError(t, err)
	return b
}
