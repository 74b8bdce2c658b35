// Package scenario holds the filter's end-to-end scenarios, written once and run
// twice: natively, with the filter compiled into the test binary on the emulated
// host (package filter's tests), and as the compiled .wasm under the Envoy-faithful
// host (package e2e's tests). Both runs send real HTTP to real fake providers.
package scenario

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Setup is what a scenario asks a runner to build.
type Setup struct {
	// PluginConfig is the filter's pluginConfig JSON.
	PluginConfig string
	// Env is the VM's environment (Istio's vmConfig.env).
	Env map[string]string
	// Clusters maps Envoy cluster names to upstream addresses (host:port).
	Clusters map[string]string
	// Routes maps :authority values to cluster names, as Envoy's route table does.
	Routes map[string]string
	// DefaultCluster serves authorities no route names.
	DefaultCluster string
	// Workers is the number of VMs (Envoy workers); runners that have one VM
	// ignore it.
	Workers int
	// NodeMetadata is the Envoy node's metadata (string values), as Istio's
	// injector sets it: NAMESPACE, SERVICE_ACCOUNT, WORKLOAD_NAME.
	NodeMetadata map[string]string
}

// Request is a client request to the mesh.
type Request struct {
	Method    string
	Path      string
	Authority string
	Header    http.Header
	Body      string
}

// Response is what the client got back.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Mesh sends client requests through the filter.
type Mesh interface {
	Do(t testing.TB, r Request) Response
	// Counter returns the value of the filter's counter with the given name (before
	// Envoy's wasmcustom. prefix and tag extraction).
	Counter(t testing.TB, name string) uint64
	// Defined reports whether the filter defined the counter: a counter the
	// filter never needed does not exist.
	Defined(t testing.TB, name string) bool
}

// Runner builds a mesh for a setup; it cleans up with t.Cleanup.
type Runner func(t testing.TB, s Setup) Mesh

// Scenario is one end-to-end behaviour.
type Scenario struct {
	Name string
	Run  func(t *testing.T, run Runner)
}

// All returns every scenario.
func All() []Scenario {
	return []Scenario{
		{Name: "rewrite", Run: Rewrite},
		{Name: "pass-through", Run: PassThrough},
		{Name: "model-routing", Run: ModelRouting},
		{Name: "request-limit", Run: RequestLimit},
		{Name: "token-limit", Run: TokenLimit},
		{Name: "fallback", Run: Fallback},
		{Name: "fallback-gives-up", Run: FallbackGivesUp},
		{Name: "retry-after", Run: RetryAfter},
		{Name: "retry-budget", Run: RetryBudget},
		{Name: "failover-needs-no-budget", Run: FailoverNeedsNoBudget},
		{Name: "local-answers", Run: LocalAnswers},
		{Name: "priority-and-chains-per-model", Run: PriorityAndChainsPerModel},
		{Name: "embeddings-chain-per-model", Run: EmbeddingsChainPerModel},
		{Name: "streaming", Run: Streaming},
		{Name: "operations", Run: Operations},
		{Name: "provider-operations", Run: ProviderOperations},
		{Name: "client-headers", Run: ClientHeaders},
		{Name: "responses-stream", Run: ResponsesStream},
		{Name: "body-errors", Run: BodyErrors},
		{Name: "hostile-token-numbers", Run: HostileTokenNumbers},
		{Name: "hostile-usage", Run: HostileUsage},
		{Name: "hostile-fallback-answer", Run: HostileFallbackAnswer},
		{Name: "hostile-paths", Run: HostilePaths},
		{Name: "retry-hints", Run: RetryHints},
		{Name: "workload-identity", Run: WorkloadIdentity},
	}
}

// RunAll runs every scenario as a subtest with the given runner.
func RunAll(t *testing.T, run Runner) {
	for _, s := range All() {
		t.Run(s.Name, func(t *testing.T) { s.Run(t, run) })
	}
}

// Upstream starts a loopback HTTP server for h and returns its host:port.
func Upstream(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
