package envoy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
)

// childCounter is a parent context that counts the children registered on it and
// not yet unregistered. It is not a cancelCtx, so the context package registers a
// child through its AfterFunc method (context.go propagateCancel) and unregisters
// it with the returned stop when the child is cancelled: live() is the number of
// children a caller has left behind.
type childCounter struct {
	done chan struct{}
	mu   sync.Mutex
	next int
	regs map[int]func()
}

var _ context.Context = (*childCounter)(nil)

func newChildCounter() *childCounter {
	return &childCounter{done: make(chan struct{}), regs: map[int]func(){}}
}

func (c *childCounter) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *childCounter) Done() <-chan struct{}       { return c.done }
func (c *childCounter) Err() error                  { return nil }
func (c *childCounter) Value(any) any               { return nil }

func (c *childCounter) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next++
	c.regs[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.regs[id]
		delete(c.regs, id)
		return ok
	}
}

func (c *childCounter) live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.regs)
}

func TestCalloutContextLeavesNoChild(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		expire  bool // wait for the deadline before cancelling
	}{
		{"no timeout", 0, false},
		{"timeout cancelled early", time.Hour, false},
		{"timeout expired", time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := newChildCounter()
			ctx, cancel := calloutContext(parent, tc.timeout)
			require.Equal(t, 1, parent.live(), "one child per callout")
			_, hasDeadline := ctx.Deadline()
			require.Equal(t, tc.timeout > 0, hasDeadline)
			if tc.expire {
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("the callout's deadline did not end its context")
				}
			}
			cancel()
			require.Zero(t, parent.live(), "cancel unregisters everything the callout registered")
		})
	}
}

// TestCalloutsLeaveNoContextBehind runs many http and gRPC callouts with
// timeouts through the host and counts the children left on the host's
// context once every answer has been delivered: none may remain.
func TestCalloutsLeaveNoContextBehind(t *testing.T) {
	up := echoUpstream(t)
	side := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "pong")
	}))
	t.Cleanup(side.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		var in []byte
		if err := st.RecvMsg(&in); err != nil {
			return err
		}
		out := append([]byte("pong:"), in...)
		return st.SendMsg(&out)
	}))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	const n = 40
	for _, tc := range []struct{ mode, want string }{
		{"callout", "x-callout=200 pong"},
		{"grpc", "x-grpc=pong:ping"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := newHost(t, tc.mode, up.URL, func(c *Config) {
				c.Clusters["side"] = hostPort(side.URL)
				c.Clusters["grpc"] = lis.Addr().String()
			})
			parent := newChildCounter()
			h.ctx = parent // before any request: the callouts' parent
			srv := httptest.NewServer(h)
			defer srv.Close()
			for i := 0; i < n; i++ {
				resp, err := http.Get(srv.URL + "/c")
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				require.Contains(t, string(body), tc.want)
			}
			// The answer resumes the request before the callout's goroutine
			// returns and cancels; wait for those few to finish.
			deadline := time.Now().Add(5 * time.Second)
			for parent.live() > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			require.Zero(t, parent.live(), "contexts left on the host's context after %d callouts", n)
		})
	}
}

// TestGrpcSendDoesNotWaitForTheConnection: proxy_grpc_send on a stream
// whose connection is not up yet returns at once, as Envoy's async stream
// buffers the message (source/common/grpc/async_client_impl.cc,
// AsyncStreamImpl::sendMessageRaw): the plugin's callback ends and the VM
// serves others while the stream connects. The upstream here accepts the
// connection and never speaks HTTP/2, so the stream stays unconnected.
func TestGrpcSendDoesNotWaitForTheConnection(t *testing.T) {
	up := echoUpstream(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	})
	h := newHost(t, "grpcstream", up.URL, func(c *Config) { c.Clusters["grpc"] = lis.Addr().String() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		// The guest sends on the stream from its request callback and waits
		// for the stream's close before it answers.
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/s", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case c := <-accepted:
		accepted <- c // closed at cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the stream never connected")
	}
	// The connection was opened from inside the request callback; the VM is
	// free again only once that callback returned.
	stats := make(chan []VMStat, 1)
	go func() { stats <- h.VMStats() }()
	select {
	case s := <-stats:
		require.Len(t, s, 1)
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin's callback is still waiting in proxy_grpc_send")
	}
}
