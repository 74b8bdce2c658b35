package identity

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWorkload(t *testing.T) {
	for _, tc := range []struct {
		ns, sa, want string
		ok           bool
	}{
		{"team-a", "chat", "team-a/chat", true},
		{"team-b", "default", "team-b/default", true},
		{"", "chat", "", false},
		{"team-a", "", "", false},
		{"Team-A", "chat", "", false},
		{"team/a", "chat", "", false},
		{"team-a", strings.Repeat("s", 130), "", false},
	} {
		got, ok := Workload([]byte(tc.ns), []byte(tc.sa))
		require.Equal(t, tc.ok, ok, "%q %q", tc.ns, tc.sa)
		require.Equal(t, tc.want, got)
	}
}

func TestPeer(t *testing.T) {
	for _, tc := range []struct {
		uri, want string
		ok        bool
	}{
		{"spiffe://cluster.local/ns/team-a/sa/chat", "team-a/chat", true},
		{"spiffe://example.org/ns/istio-system/sa/istio-ingressgateway-service-account", "istio-system/istio-ingressgateway-service-account", true},
		{"spiffe://cluster.local/ns/team-a/sa/", "", false},
		{"spiffe://cluster.local/ns//sa/chat", "", false},
		{"spiffe://cluster.local/ns/team-a/sa/chat/extra", "", false},
		{"spiffe://cluster.local/ns/team-a", "", false},
		{"spiffe:///ns/team-a/sa/chat", "", false},
		{"https://cluster.local/ns/team-a/sa/chat", "", false},
		{"spiffe://cluster.local/sa/chat/ns/team-a", "", false},
		{"spiffe://cluster.local/ns/TEAM/sa/chat", "", false},
		{"", "", false},
		{"spiffe://", "", false},
	} {
		got, ok := Peer([]byte(tc.uri))
		require.Equal(t, tc.ok, ok, tc.uri)
		require.Equal(t, tc.want, got, tc.uri)
	}
}

func TestClaim(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"alice@example.com", true},
		{"0f4c-11", true},
		{"", false},
		{"a b", false},
		{"a;b=c", false},
		{"\x01\x00\x00\x00\x00\x00\x00\x00", false}, // an integer claim, as Envoy serializes it
		{strings.Repeat("x", MaxLen), true},
		{strings.Repeat("x", MaxLen+1), false},
	} {
		got, ok := Claim([]byte(tc.v))
		require.Equal(t, tc.ok, ok, "%q", tc.v)
		if ok {
			require.Equal(t, tc.v, got)
		}
	}
}

func FuzzPeer(f *testing.F) {
	f.Add([]byte("spiffe://cluster.local/ns/team-a/sa/chat"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := string(b)
		got, ok := Peer(b)
		if !ok {
			return
		}
		require.LessOrEqual(t, len(got), MaxLen)
		require.Equal(t, 1, strings.Count(got, "/"), in)
		require.True(t, strings.HasPrefix(in, "spiffe://"))
	})
}
