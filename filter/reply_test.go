//go:build !wasip1

package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
)

// BenchmarkRefusal: a request the local limit refuses, natively on the
// emulated host (whose own bookkeeping is part of the allocations reported):
// what a flood turned away costs per request. The filter formats the
// refusal's header values and error body into per-VM buffers.
func BenchmarkRefusal(b *testing.B) {
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(&vm{}).
		WithPluginConfiguration([]byte(`{"providers": [{"name": "p", "host": "p.example.com", "cluster": "p"}],
  "routes": [{"name": "limited", "match": {"pathPrefix": "/v1/"}, "provider": "p", "streamUsage": false,
              "limits": {"requestsPerMinute": 1, "requestBurst": 1}}]}`)))
	defer release()
	host.StartVM()
	host.StartPlugin()
	hdrs := [][2]string{{":method", "GET"}, {":path", "/v1/models"}, {":authority", "api.openai.com"}}
	one := func() *proxytest.LocalHttpResponse {
		id := host.InitializeHttpContext()
		_ = host.CallOnRequestHeaders(id, hdrs, true)
		lr := host.GetSentLocalResponse(id)
		host.CompleteHttpContext(id)
		return lr
	}
	require.Nil(b, one(), "the first request is admitted")
	for i := 0; i < 100; i++ {
		one()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if lr := one(); lr == nil || lr.StatusCode != 429 {
			b.Fatalf("not refused: %+v", lr)
		}
	}
}
