package rlqs_test

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fakeClock is the virtual time the server and the clients share.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// envoyClient behaves as Envoy's rate_limit_quota filter does with its
// global client (source/extensions/filters/http/rate_limit_quota/
// global_client_impl.cc and filter.cc):
//   - the first request matched into an unknown bucket creates it, is
//     decided by no_assignment_behavior (allow all here) and is reported at
//     once in a report of its own;
//   - every reporting interval, one report names every bucket with the
//     requests allowed and denied since the last one (then reset) and the
//     whole seconds elapsed;
//   - an assignment applies until its TTL (whole seconds) runs out, then the
//     bucket reverts to no_assignment_behavior (no expired_assignment_behavior
//     configured);
//   - a token bucket assignment creates a full bucket of max_tokens filling
//     continuously at tokens_per_fill / fill_interval seconds, unless max_tokens
//     and tokens_per_fill equal the current one's, which is then kept;
//   - abandon erases the bucket; the next request starts over.
type envoyClient struct {
	t      *testing.T
	clock  *fakeClock
	domain string
	stream grpc.BidiStreamingClient[rlqsv3.RateLimitQuotaUsageReports, rlqsv3.RateLimitQuotaResponse]
	cancel context.CancelFunc

	mu      sync.Mutex
	buckets map[string]*clientBucket
	recvd   chan struct{} // signalled on every message received
	recvErr error
	since   []*rlqsv3.RateLimitQuotaResponse // messages since the last report sent
	// fresh sums max_tokens over every token bucket started full: what the
	// client may admit beyond its assigned rates.
	fresh float64
	// settle waits until every message the server has sent has been
	// received and applied, by every client.
	settle   func()
	received *atomic.Uint64 // shared by the clients of one server
}

type clientBucket struct {
	id              map[string]string
	allowed, denied uint64
	lastReport      time.Time

	action  *rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction // nil: no assignment
	expires time.Time
	// token bucket state
	tokens, maxTokens, perSecond float64
	tpf                          uint32
	filled                       time.Time
}

func bucketKey(id map[string]string) string {
	keys := make([]string, 0, len(id))
	for k := range id {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + id[k] + ";")
	}
	return b.String()
}

func (h *harness) dialEnvoy(t *testing.T, domain string) *envoyClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := rlqsv3.NewRateLimitQuotaServiceClient(h.cc).StreamRateLimitQuotas(ctx)
	require.NoError(t, err)
	c := &envoyClient{t: t, clock: h.clock, domain: domain, stream: st, cancel: cancel,
		buckets: map[string]*clientBucket{}, recvd: make(chan struct{}, 1), settle: h.settle, received: &h.received}
	t.Cleanup(cancel)
	go c.recvLoop()
	return c
}

func (c *envoyClient) recvLoop() {
	for {
		m, err := c.stream.Recv()
		c.mu.Lock()
		if err != nil {
			c.recvErr = err
			c.mu.Unlock()
			select {
			case c.recvd <- struct{}{}:
			default:
			}
			return
		}
		c.apply(m)
		c.since = append(c.since, m)
		c.received.Add(1)
		c.mu.Unlock()
		select {
		case c.recvd <- struct{}{}:
		default:
		}
	}
}

// apply applies a response's actions; c.mu is held.
func (c *envoyClient) apply(m *rlqsv3.RateLimitQuotaResponse) {
	now := c.clock.Now()
	for _, a := range m.GetBucketAction() {
		key := bucketKey(a.GetBucketId().GetBucket())
		b := c.buckets[key]
		if b == nil {
			continue // Envoy ignores actions for buckets it does not hold
		}
		if a.GetAbandonAction() != nil {
			delete(c.buckets, key)
			continue
		}
		qa := a.GetQuotaAssignmentAction()
		if qa == nil {
			continue
		}
		if tb := qa.GetRateLimitStrategy().GetTokenBucket(); tb != nil {
			same := b.action != nil && b.action.GetRateLimitStrategy().GetTokenBucket() != nil &&
				b.maxTokens == float64(tb.GetMaxTokens()) && b.tpf == tb.GetTokensPerFill().GetValue()
			if !same {
				secs := tb.GetFillInterval().GetSeconds()
				b.maxTokens, b.tokens, b.tpf = float64(tb.GetMaxTokens()), float64(tb.GetMaxTokens()), tb.GetTokensPerFill().GetValue()
				b.perSecond = float64(b.tpf) / float64(secs)
				b.filled = now
				c.fresh += b.maxTokens
			}
		}
		b.action = qa
		b.expires = now.Add(time.Duration(qa.GetAssignmentTimeToLive().GetSeconds()) * time.Second)
	}
}

// request decides one request matched into the bucket id.
func (c *envoyClient) request(id map[string]string) bool {
	now := c.clock.Now()
	key := bucketKey(id)
	c.mu.Lock()
	b := c.buckets[key]
	if b == nil {
		b = &clientBucket{id: id, allowed: 1, lastReport: now}
		c.buckets[key] = b
		c.mu.Unlock()
		c.send([]string{key})
		return true
	}
	defer c.mu.Unlock()
	if b.action != nil && !now.Before(b.expires) {
		b.action = nil
	}
	ok := true
	if b.action != nil {
		s := b.action.GetRateLimitStrategy()
		switch {
		case s.GetTokenBucket() != nil:
			b.tokens = min(b.maxTokens, b.tokens+now.Sub(b.filled).Seconds()*b.perSecond)
			b.filled = now
			ok = b.tokens >= 1
			if ok {
				b.tokens--
			}
		case s.GetBlanketRule() == typev3.RateLimitStrategy_DENY_ALL:
			ok = false
		}
	}
	if ok {
		b.allowed++
	} else {
		b.denied++
	}
	return ok
}

// reportAll sends the periodic report of every bucket.
func (c *envoyClient) reportAll() {
	c.mu.Lock()
	keys := make([]string, 0, len(c.buckets))
	for k := range c.buckets {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	sort.Strings(keys)
	if len(keys) > 0 {
		c.send(keys)
	}
}

// send reports the named buckets and waits for the answer that names them
// all (the server answers every report), and for every other message the
// server sent meanwhile to reach its client.
func (c *envoyClient) send(keys []string) {
	c.t.Helper()
	now := c.clock.Now()
	m := &rlqsv3.RateLimitQuotaUsageReports{Domain: c.domain}
	c.mu.Lock()
	for _, k := range keys {
		b := c.buckets[k]
		m.BucketQuotaUsages = append(m.BucketQuotaUsages, &rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
			BucketId:           &rlqsv3.BucketId{Bucket: b.id},
			TimeElapsed:        durationpb.New(now.Sub(b.lastReport).Truncate(time.Second)),
			NumRequestsAllowed: b.allowed,
			NumRequestsDenied:  b.denied,
		})
		b.allowed, b.denied, b.lastReport = 0, 0, now
	}
	c.since = nil
	c.mu.Unlock()
	require.NoError(c.t, c.stream.Send(m))
	c.waitFor(func(r *rlqsv3.RateLimitQuotaResponse) bool {
		named := map[string]bool{}
		for _, a := range r.GetBucketAction() {
			named[bucketKey(a.GetBucketId().GetBucket())] = true
		}
		for _, k := range keys {
			if !named[k] {
				return false
			}
		}
		return true
	})
	c.settle()
}

// waitFor waits, up to 5 s, for a message that satisfies ok.
func (c *envoyClient) waitFor(ok func(*rlqsv3.RateLimitQuotaResponse) bool) *rlqsv3.RateLimitQuotaResponse {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		msgs, err := c.since, c.recvErr
		c.mu.Unlock()
		for _, m := range msgs {
			if ok(m) {
				return m
			}
		}
		require.NoError(c.t, err, "stream ended while waiting for an answer")
		select {
		case <-c.recvd:
		case <-deadline:
			c.t.Fatalf("no answer within 5s")
		}
	}
}

// rate is the bucket's assigned token rate per second, 0 for none or deny
// all, -1 for allow all or no assignment.
func (c *envoyClient) rate(id map[string]string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buckets[bucketKey(id)]
	if b == nil || b.action == nil || !c.clock.Now().Before(b.expires) {
		return -1
	}
	s := b.action.GetRateLimitStrategy()
	switch {
	case s.GetTokenBucket() != nil:
		return b.perSecond
	case s.GetBlanketRule() == typev3.RateLimitStrategy_DENY_ALL:
		return 0
	}
	return -1
}

func (c *envoyClient) holds(id map[string]string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buckets[bucketKey(id)] != nil
}

// close ends the stream as Envoy does on shutdown.
func (c *envoyClient) close() {
	_ = c.stream.CloseSend()
	c.cancel()
}
