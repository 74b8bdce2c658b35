package scenario

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
)

// headerRecorder passes requests to a provider and keeps the values of one
// request header it saw.
type headerRecorder struct {
	next http.Handler
	name string
	mu   sync.Mutex
	seen []string
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Values(h.name)...)
	h.mu.Unlock()
	h.next.ServeHTTP(w, r)
}

func (h *headerRecorder) values() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

// WorkloadIdentity: with "consumer": {"from": "workload"} the consumer is the
// Envoy's own workload (its node metadata), so a client that rotates or forges
// x-tenant values stays in its one bucket, and the header never reaches the
// provider.
func WorkloadIdentity(t *testing.T, run Runner) {
	relay := fakeprovider.New(fakeprovider.Options{Name: "relay"})
	rec := &headerRecorder{next: relay, name: "x-tenant"}
	cfg := strings.Replace(policyConfig(`{"requestsPerMinute": 1, "requestBurst": 2}`, ""),
		`"defaultModel"`, `"consumer": {"from": "workload"}, "defaultModel"`, 1)
	mesh := run(t, Setup{
		PluginConfig: cfg,
		Clusters:     map[string]string{"relay": Upstream(t, rec), "backup": Upstream(t, relay)},
		Routes:       map[string]string{"relay.example.com": "relay", "backup.example.com": "backup"},
		NodeMetadata: map[string]string{"NAMESPACE": "team-a", "SERVICE_ACCOUNT": "chat", "WORKLOAD_NAME": "chat"},
	})
	var got []int
	for _, tenant := range []string{"team-b", "team-c", "team-d", ""} {
		req := chat(`{"model":"gpt-4.1","messages":[]}`)
		if tenant != "" {
			req.Header.Set("x-tenant", tenant)
		}
		got = append(got, mesh.Do(t, req).Status)
	}
	require.Equal(t, []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests, http.StatusTooManyRequests}, got,
		"one bucket for the workload, whatever x-tenant says")
	require.Empty(t, rec.values(), "a client's consumer header is not forwarded")
	require.EqualValues(t, 2, relay.Requests())
}
