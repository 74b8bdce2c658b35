package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
	"github.com/shepherd-mesh/shepherd/internal/promtext"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
)

// The fault tests run the compiled filter on two worker VMs under the
// Envoy-faithful host, against real fake providers that misbehave on demand.
// Each case says what the client gets, then checks that nothing leaked: the
// token reservation was settled (the bucket has room for a full reservation
// again), every stream context was freed and no VM trapped.

// faultRoute is a route with a token bucket of 100 that refills by one token
// a minute (so refill never hides a leak during a test), and a fallback to
// provider b. Each probe reserves its prompt estimate plus 80 tokens, so a
// reservation that was never settled leaves no room for the next one.
const faultConfig = `{"providers":[
   {"name":"p","host":"p.example.com","cluster":"p"},
   {"name":"b","host":"b.example.com","cluster":"b"}],
 "models":{"m":{},"m2":{}},
 "routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p",
   "limits":{"tokensPerMinute":1,"tokenBurst":100},
   "fallback":{"models":[{"model":"m2","provider":"b"}],"maxAttempts":2,
     "baseBackoffMs":1,"maxBackoffMs":2,"retryAfterCapMs":300,"timeoutMs":400}}]}`

type faultEnv struct {
	host    *envoy.Host
	url     string
	p, b    *fakeprovider.Provider
	clients *http.Client
}

func newFaultEnv(t *testing.T, cfg string) *faultEnv {
	t.Helper()
	e := &faultEnv{
		p:       fakeprovider.New(fakeprovider.Options{Name: "p"}),
		b:       fakeprovider.New(fakeprovider.Options{Name: "b"}),
		clients: &http.Client{Timeout: 30 * time.Second},
	}
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(cfg), Workers: 2,
		Clusters:  map[string]string{"p": scenario.Upstream(t, e.p), "b": scenario.Upstream(t, e.b)},
		Routes:    map[string]string{"p.example.com": "p", "b.example.com": "b"},
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	front := serveHost(t, h)
	e.host, e.url = h, front.URL
	return e
}

// request builds a chat completion with max_tokens 80.
func (e *faultEnv) request(ctx context.Context, stream bool, header ...string) *http.Request {
	body := `{"model":"m","max_tokens":80,"messages":[{"role":"user","content":"hi"}]}`
	if stream {
		body = `{"model":"m","max_tokens":80,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// send sends a request and reads the whole answer; readErr is what reading the
// body returned (a reset shows there).
func (e *faultEnv) send(t *testing.T, stream bool, header ...string) (resp *http.Response, body []byte, readErr error) {
	t.Helper()
	resp, err := e.clients.Do(e.request(context.Background(), stream, header...))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, readErr = io.ReadAll(resp.Body)
	return resp, body, readErr
}

// settled waits until the bucket admits a full reservation again, and checks
// that every stream context is freed and no VM trapped.
func (e *faultEnv) settled(t *testing.T) {
	t.Helper()
	e.noLeaks(t)
	until(t, 10*time.Second, "a full reservation admitted (the fault's reservation settled)", func() bool {
		resp, _, err := e.send(t, false)
		require.NoError(t, err)
		require.Contains(t, []int{http.StatusOK, http.StatusTooManyRequests}, resp.StatusCode)
		return resp.StatusCode == http.StatusOK
	})
	e.noLeaks(t)
}

// attempts is the number of upstream attempts the filter has counted, all
// VMs and labels together.
func (e *faultEnv) attempts() float64 {
	var buf bytes.Buffer
	e.host.WritePrometheus(&buf)
	var n float64
	for _, s := range promtext.Parse(&buf) {
		if s.Name == telemetry.UpstreamAttempts {
			n += s.Value
		}
	}
	return n
}

// ticksPast waits until at has passed and then every VM has run two more
// callbacks (with no traffic, its ticks): whatever a tick would do once at
// has passed has been done.
func (e *faultEnv) ticksPast(t *testing.T, at time.Time) {
	t.Helper()
	var base []uint64
	until(t, 10*time.Second, "two ticks of every VM past the due time", func() bool {
		stats := e.host.VMStats()
		if base == nil {
			if time.Now().Before(at) {
				return false
			}
			for _, s := range stats {
				base = append(base, s.Callbacks)
			}
			return false
		}
		for i, s := range stats {
			if s.Callbacks < base[i]+2 {
				return false
			}
		}
		return true
	})
}

// noLeaks waits until every VM has no live stream context, and checks no VM trapped.
func (e *faultEnv) noLeaks(t *testing.T) {
	t.Helper()
	until(t, 10*time.Second, "every stream context freed", func() bool {
		for _, s := range e.host.VMStats() {
			if s.Streams != 0 {
				return false
			}
		}
		return true
	})
	for _, s := range e.host.VMStats() {
		require.Zero(t, s.Traps, "vm %d trapped", s.Index)
		require.False(t, s.Failed, "vm %d failed", s.Index)
	}
}

// TestFaultProviderResetsMidStream: the provider drops the connection after
// three chunks. The client gets 200, the chunks that arrived and then a
// broken body (no [DONE]); the reservation is settled with the estimate of
// what was streamed.
func TestFaultProviderResetsMidStream(t *testing.T) {
	e := newFaultEnv(t, faultConfig)
	resp, body, readErr := e.send(t, true, "x-fake-reset-after-chunks", "3")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "data:")
	require.NotContains(t, string(body), "[DONE]")
	require.Error(t, readErr, "the client sees the reset")
	e.settled(t)
}

// TestFaultProviderNeverAnswers: a provider that never answers holds the
// request until the client gives up (here at 2 s, before the route's 15 s
// timeout; Istio's routes have none); the client's deadline ends the stream,
// the upstream request is cancelled and the reservation settled.
func TestFaultProviderNeverAnswers(t *testing.T) {
	e := newFaultEnv(t, faultConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := e.clients.Do(e.request(ctx, false, "x-fake-delay-ms", "60000"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.EqualValues(t, 1, e.p.Bodies(), "the provider had the request and held it")
	e.settled(t)
	require.Zero(t, e.b.Requests(), "a client that left gets no fallback")
}

// TestFaultFallbackNeverAnswers: the primary answers 429 and the fallback
// provider never answers: fallback.timeoutMs (400 ms) ends the callout, which
// the host answers like Envoy's async client, with its own 504 "upstream
// request timeout". That is no provider's answer: the attempt counts as a
// timeout and the client gets the last real upstream answer, the primary's
// 429, with shepherd's attempt headers.
func TestFaultFallbackNeverAnswers(t *testing.T) {
	e := newFaultEnv(t, faultConfig)
	e.b.Script(fakeprovider.Fault{Delay: time.Minute})
	start := time.Now()
	resp, body, err := e.send(t, false, "x-fake-status", "429")
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s", body)
	require.Equal(t, "p", resp.Header.Get("x-fake-provider"), "the primary's own answer")
	require.Contains(t, string(body), "p answered 429")
	require.Equal(t, "2", resp.Header.Get("x-shepherd-attempts"))
	require.Equal(t, "p", resp.Header.Get("x-shepherd-provider"))
	require.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "the callout ran to its timeout")
	require.EqualValues(t, 1, e.b.Requests())
	e.noLeaks(t) // the request's metrics are recorded when its stream ends
	require.EqualValues(t, 1, counterOf(t, e.host, telemetry.Name(telemetry.UpstreamAttempts, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, "b", telemetry.LabelModel, "m2", telemetry.LabelCode, "timeout")))
	require.EqualValues(t, 1, counterOf(t, e.host, telemetry.Name(telemetry.UpstreamAttempts, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, "p", telemetry.LabelModel, "m", telemetry.LabelCode, "4xx")))
	require.EqualValues(t, 1, counterOf(t, e.host, telemetry.Name(telemetry.Requests, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, "p", telemetry.LabelModel, "m", telemetry.LabelCode, "4xx")))
	e.settled(t)
}

// TestFaultProviderAnswersGarbage: 200 with a body that is not JSON is passed
// through as it came (shepherd scans usage, it does not judge the body); the
// reservation is settled without usage.
func TestFaultProviderAnswersGarbage(t *testing.T) {
	e := newFaultEnv(t, faultConfig)
	resp, body, err := e.send(t, false, "x-fake-malformed", "1")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, `{"id":"chatcmpl-broken","choices":[{"message":{"content":"trunc`, string(body))
	e.settled(t)
}

// TestFaultProviderAnswersTenMiB: a 10 MiB answer streams through whole; the
// filter scans it for usage without buffering it, so no VM's memory grows by
// the body's size.
func TestFaultProviderAnswersTenMiB(t *testing.T) {
	e := newFaultEnv(t, faultConfig)
	before := e.host.VMStats()
	resp, body, err := e.send(t, false, "x-fake-body-bytes", "10485760")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Greater(t, len(body), 10<<20)
	require.Contains(t, string(body), `"usage"`)
	for i, s := range e.host.VMStats() {
		require.Less(t, s.MemoryBytes, before[i].MemoryBytes+8<<20, "vm %d grew with the body", s.Index)
	}
	e.settled(t)
}

// TestFaultThrottleRetryAfter: a 429 without Retry-After, with an absurd
// number of seconds, or with an HTTP date in 2099 is retried; the wait is at
// most retryAfterCapMs (300 ms), so the client gets the retry's 200 instead of
// a request held for days. The chain has only the primary here, so the retry
// is a revisit that honours the Retry-After.
func TestFaultThrottleRetryAfter(t *testing.T) {
	cfg := strings.Replace(faultConfig, `"models":[{"model":"m2","provider":"b"}]`, `"models":[]`, 1)
	for _, tc := range []struct{ name, retryAfter string }{
		{"none", ""},
		{"absurd-seconds", "999999"},
		{"date-2099", "Thu, 01 Jan 2099 00:00:00 GMT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, cfg)
			e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: tc.retryAfter})
			start := time.Now()
			resp, body, err := e.send(t, false)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
			require.Equal(t, "2", resp.Header.Get("x-shepherd-attempts"))
			require.Equal(t, "p", resp.Header.Get("x-shepherd-provider"))
			if tc.retryAfter != "" {
				require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the capped Retry-After was waited")
			}
			require.EqualValues(t, 2, e.p.Requests())
			e.settled(t)
		})
	}
}

// TestFaultClientDisconnects: a client that leaves before the upstream
// answers, while the response streams, or after the upstream answered 429
// (while shepherd waits to retry) leaves nothing behind: its stream context is
// freed, its reservation settled, and a retry for a client that left is
// never sent.
func TestFaultClientDisconnects(t *testing.T) {
	t.Run("before-the-answer", func(t *testing.T) {
		// The provider holds its answer; the client leaves once it has the request.
		e := newFaultEnv(t, faultConfig)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := e.clients.Do(e.request(ctx, false, "x-fake-delay-ms", "60000"))
			done <- err
		}()
		until(t, 5*time.Second, "the request at the provider", func() bool { return e.p.Bodies() == 1 })
		cancel()
		require.ErrorIs(t, testutil.Receive(t, done, time.Minute), context.Canceled)
		e.settled(t)
		require.Zero(t, e.b.Requests())
	})
	t.Run("during-the-stream", func(t *testing.T) {
		// The client reads the first chunk and leaves while chunks still come.
		e := newFaultEnv(t, faultConfig)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := e.clients.Do(e.request(ctx, true, "x-fake-chunk-delay-ms", "100"))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		require.Contains(t, line, "data:")
		cancel()
		resp.Body.Close()
		e.settled(t)
	})
	t.Run("after-the-answer", func(t *testing.T) {
		// The provider answers 429 with Retry-After 1 (under a 5 s cap): shepherd
		// holds the response to retry on the same provider, and the client leaves
		// during that wait.
		cfg := strings.Replace(faultConfig, `"models":[{"model":"m2","provider":"b"}]`, `"models":[]`, 1)
		cfg = strings.Replace(cfg, `"retryAfterCapMs":300`, `"retryAfterCapMs":5000`, 1)
		e := newFaultEnv(t, cfg)
		e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := e.clients.Do(e.request(ctx, false))
			done <- err
		}()
		// The filter counts the attempt when the 429's headers reach it,
		// where it plans the retry.
		until(t, 10*time.Second, "the 429 held by the filter", func() bool { return e.attempts() == 1 })
		held := time.Now()
		require.EqualValues(t, 1, e.p.Requests())
		cancel()
		require.ErrorIs(t, testutil.Receive(t, done, time.Minute), context.Canceled)
		e.noLeaks(t)
		// The retry was due 1 s after the filter read the 429 (before held);
		// a tick past that would have sent it. It must not go out.
		e.ticksPast(t, held.Add(1200*time.Millisecond))
		require.EqualValues(t, 1, e.p.Requests(), "no retry for a client that left")
		e.settled(t)
	})
	t.Run("after-the-whole-answer", func(t *testing.T) {
		// The client has the whole answer and drops the connection at once.
		e := newFaultEnv(t, faultConfig)
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := e.clients.Do(e.request(ctx, false))
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		require.NoError(t, err)
		cancel()
		resp.Body.Close()
		e.clients.CloseIdleConnections()
		e.settled(t)
	})
}

// TestFaultBrokenReconfigureUnderTraffic: while four clients send requests,
// broken configurations are pushed again and again between good ones. Each
// broken one is refused; every request is answered 200 under a good config
// (the old one until a good one replaces it), and no stream is lost.
func TestFaultBrokenReconfigureUnderTraffic(t *testing.T) {
	e := newFaultEnv(t, `{"providers":[{"name":"p","host":"p.example.com","cluster":"p","pathPrefix":"/good"}],`+
		`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`)
	broken := []string{
		`{"providers":[{"name":"p","host":"p.example.com"}],"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"nope"}]}`,
		`{"providers":[`,
		`{"providers":[{"name":"p","host":"p.example.com\r\nx-evil: 1"}],"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`,
		`{"providers":[{"name":"p","host":"p.example.com"}],"routes":[],"unknownField":1}`,
	}
	var stop atomic.Bool
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200 && !stop.Load(); i++ {
				resp, err := e.clients.Do(e.request(context.Background(), false))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	good := `{"providers":[{"name":"p","host":"p.example.com","cluster":"p","pathPrefix":"/good"}],` +
		`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`
	until(t, 10*time.Second, "traffic flowing", func() bool { return ok.Load() >= 10 })
	for round := 0; round < 5; round++ {
		for _, b := range broken {
			require.Error(t, e.host.Reconfigure([]byte(b)))
		}
		require.NoError(t, e.host.Reconfigure([]byte(good)))
	}
	stop.Store(true)
	wg.Wait()
	require.Zero(t, failed.Load(), "every request answered 200")
	require.Positive(t, ok.Load())
	require.Equal(t, "/good/chat/completions", e.p.Last().Path)
	e.noLeaks(t)
}

// TestFaultContentionOnOneBucket: 16 clients × 10 requests contend for one
// route's bucket of 40 requests (refilling by one a minute) across both worker
// VMs: exactly 40 are admitted, the other 120 get 429, and only the admitted
// ones reach the provider. The same for one consumer's bucket.
//
// One request goes first, alone: it creates the bucket. Shared data has no
// create-if-absent, so two VMs that both find a key absent may both create it,
// and a bucket's creation can over-admit by what the other VM took in that
// window (once per key per Envoy, documented in filter/limits). Every later
// update is a compare-and-swap, which this test holds to exactly the limit.
func TestFaultContentionOnOneBucket(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"route", nil},
		{"consumer", []string{"x-tenant", "team-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, `{"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],`+
				`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p","streamUsage":false,`+
				`"limits":{"requestsPerMinute":1,"requestBurst":40,"consumerHeader":"x-tenant"}}]}`)
			var ok, limited, other atomic.Int64
			first, err := e.clients.Do(e.request(context.Background(), false, tc.header...))
			require.NoError(t, err)
			io.Copy(io.Discard, first.Body)
			first.Body.Close()
			require.Equal(t, http.StatusOK, first.StatusCode)
			ok.Add(1)
			var wg sync.WaitGroup
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						resp, err := e.clients.Do(e.request(context.Background(), false, tc.header...))
						if err != nil {
							other.Add(1)
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						switch resp.StatusCode {
						case http.StatusOK:
							ok.Add(1)
						case http.StatusTooManyRequests:
							limited.Add(1)
						default:
							other.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			require.EqualValues(t, 40, ok.Load())
			require.EqualValues(t, 121, limited.Load())
			require.Zero(t, other.Load())
			require.EqualValues(t, 40, e.p.Requests())
			e.noLeaks(t)
		})
	}
}
