package soak

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEarlyDisconnectReachesTheProxy: a client planned to leave before the
// answer leaves only after its request was written, however long the dial or
// the write took, so every request the run counts is one the proxy (and the
// filter's shepherd_requests_total) saw. The dial here stalls longer than the
// longest planned wait (250 ms), as a loaded machine's scheduler can.
func TestEarlyDisconnectReachesTheProxy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall time.Duration
	}{
		{"prompt dial", 0},
		{"stalled dial", 400 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
				seen <- q.URL.Path
				_, _ = io.Copy(io.Discard, q.Body) // then a client that leaves cancels q's context
				select {                           // the answer is late: the client leaves first
				case <-q.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}))
			defer srv.Close()
			dialer := &net.Dialer{}
			client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				time.Sleep(tc.stall)
				return dialer.DialContext(context.Background(), network, addr)
			}}}
			defer client.CloseIdleConnections()

			r := &run{faults: map[string]int64{}}
			r.res = Result{ByStatus: map[int]int64{}, ByRoute: map[string]int64{}, Faults: map[string]int64{}, Shepherd5xx: map[string]int64{}}
			r.pods[0] = &pod{url: srv.URL}
			p := plan{route: "chat", header: map[string]string{"x-fake-delay-ms": "2000"}, disconnect: "early"}
			r.send(context.Background(), client, rand.New(rand.NewPCG(1, 1)), p, 1)

			select {
			case path := <-seen:
				require.Equal(t, "/chat/v1/chat/completions", path)
			case <-time.After(5 * time.Second):
				require.FailNow(t, "the proxy never saw the request the client counted")
			}
			require.Equal(t, int64(1), r.res.Disconnects)
			require.Zero(t, r.res.Errors)
			require.Zero(t, r.res.Responses)
		})
	}
}
