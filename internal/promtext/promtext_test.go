package promtext

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseAndFind(t *testing.T) {
	text := `# TYPE shepherd_requests_total counter
shepherd_requests_total{code="2xx",model="gpt-4.1",provider="relay",route="chat"} 3
shepherd_requests_total{code="4xx",model="a,b=\"c\"",provider="relay",route="chat"} 1
envoy_server_live 1
shepherd_request_duration_ms_bucket{route="chat",provider="relay",le="0.5"} 0
`
	samples := Parse(strings.NewReader(text))
	require.Len(t, samples, 4)
	base, labels := DecodeName("shepherd_requests_total;route=chat;provider=relay;model=gpt-4.1;code=2xx")
	v, ok := Find(samples, base, labels)
	require.True(t, ok)
	require.Equal(t, 3.0, v)
	v, ok = Find(samples, "shepherd_requests_total", map[string]string{"code": "4xx", "model": `a,b="c"`, "provider": "relay", "route": "chat"})
	require.True(t, ok, "quoted commas and escapes in label values")
	require.Equal(t, 1.0, v)
	v, ok = Find(samples, "envoy_server_live", map[string]string{})
	require.True(t, ok)
	require.Equal(t, 1.0, v)
	_, ok = Find(samples, "shepherd_requests_total", map[string]string{"code": "5xx"})
	require.False(t, ok)
}
