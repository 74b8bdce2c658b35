package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a Redis store.
type RedisOptions struct {
	// Prefix is put in front of every key (default "shepherd_rl:").
	Prefix string
	// GraceSeconds is added to a window's length for its key's expiry, so a
	// counter outlives small clock differences between replicas (default 1).
	GraceSeconds int64
	// Pipelines is how many pipelines may be on the wire at once (default
	// 2). Decisions that arrive while they are all busy wait and go out
	// together in the next one, so under load one round trip carries many
	// decisions (see Redis). 1 sends one pipeline at a time: the largest
	// batches, but one slow round trip then holds every decision; 4 cost
	// Redis a quarter more CPU per decision than 1 under 32 callers.
	Pipelines int
	// Registerer, when set, gets the histogram
	// shepherd_ratelimit_store_batch_decisions: the decisions each round
	// trip carried. A second store on the same registry shares it.
	Registerer prometheus.Registerer
}

// batchBuckets are the bounds of the batch size histogram: powers of two up
// to the most decisions a batch usually holds.
var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

// Redis is a Store in Redis, shared by every sidecar replica that uses the
// same server or cluster. One Lua script counts hits (INCRBY, then PEXPIRE
// when the key has no expiry yet), so each counter is updated atomically.
//
// Decisions are batched: a few sender goroutines (RedisOptions.Pipelines)
// each take every decision waiting and count all their hits at once. On one
// server (or Sentinel's primary) that is one script call over all the
// batch's keys, so N decisions cost Redis one command instead of N; on a
// cluster it is one script call per key in one pipeline, because the keys
// of a call must share a hash slot, and the client sends each call to the
// node that owns its key. An idle store sends a decision at once, alone
// (one round trip); under load the decisions that arrive during a round
// trip share the next one. A caller waits only as long as its own context
// allows; a decision whose caller has gone before it is sent is dropped,
// uncounted.
type Redis struct {
	client redis.UniversalClient
	perKey bool // one key per script call (a cluster, or a client of unknown kind)
	prefix string
	grace  int64
	closed atomic.Bool

	pipelines atomic.Int64 // pipelines sent, for tests and benchmarks
	sizes     prometheus.Histogram

	mu      sync.Mutex
	pending []*batchJob
	wake    chan struct{}
	stop    chan struct{}
	once    sync.Once
}

// batchJob is one Apply waiting for a sender. It holds copies of what the
// sender needs, never the caller's hits, which the caller may reuse as soon
// as it stops waiting.
type batchJob struct {
	ctx  context.Context
	keys []string
	args []hitArgs
	out  []Result
	err  error
	done chan struct{}
}

// hitArgs are the script arguments of one hit and its window's end.
type hitArgs struct {
	hits  uint64
	ttlMs int64
	reset int64
}

// incrScript counts the hits of any number of keys in one call: for the
// i-th key it adds ARGV[2i] to KEYS[i], saturating at ARGV[1] (MaxCount),
// makes sure the key expires after ARGV[2i+1] milliseconds, and puts the
// count after the addition in the i-th place of the reply (an error reply
// there when that key cannot count, so one bad key fails only its own
// decision).
//
// The usual hit is one INCRBY and one PTTL. Hits are at most MaxHits, so
// INCRBY of a stored value in [0, MaxCount] cannot reach Redis's int64
// overflow error; a result at or past the bound is set back to it (SET ...
// KEEPTTL, Redis 6.0+) and a counter stays there for the rest of its
// window. A stored value that INCRBY refuses (out of int64 range, a
// fraction, "5.0") is read and handled in Lua: a sum at or over the bound
// becomes the bound; a sum below 0 or not a whole number starts again from
// the hits; any other sum is stored as a plain integer. A negative stored
// value is healed the same way. Lua numbers are doubles: every value the
// script computes below 2^53 is exact.
const incrScriptSource = `local cap = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local k, h = KEYS[i], ARGV[2 * i]
  local c = redis.pcall('INCRBY', k, h)
  if type(c) == 'table' then
    local v = redis.pcall('GET', k)
    if not v then
      -- INCRBY failed on no value at all: its own error stands
    elseif type(v) == 'table' then
      c = v
    else
      c = tonumber(v)
      if c == nil then
        c = {err = 'ERR counter is not an integer'}
      else
        c = c + tonumber(h)
        if c >= cap then
          c = cap
        elseif c < 0 or c ~= math.floor(c) then
          c = tonumber(h)
        end
        redis.call('SET', k, string.format('%d', c), 'KEEPTTL')
      end
    end
  elseif c >= cap then
    c = cap
    redis.call('SET', k, ARGV[1], 'KEEPTTL')
  elseif c < 0 then
    c = tonumber(h)
    redis.call('SET', k, h, 'KEEPTTL')
  end
  if type(c) ~= 'table' and redis.call('PTTL', k) < 0 then
    redis.call('PEXPIRE', k, ARGV[2 * i + 1])
  end
  out[i] = c
end
return out`

var incrScript = redis.NewScript(incrScriptSource)

// RedisScript is the Lua source the Redis store counts with: KEYS are the
// counters, ARGV[1] is MaxCount and ARGV[2i], ARGV[2i+1] the hits and the
// expiry in milliseconds of KEYS[i]; the reply holds each count in order.
// A tool that counts in the same keys by other means (the benchmarks'
// experimental stores) runs it too.
const RedisScript = incrScriptSource

// NewRedis returns a Redis store on client. The store does not own the
// client: Close leaves it open.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = "shepherd_rl:"
	}
	if opts.GraceSeconds <= 0 {
		opts.GraceSeconds = 1
	}
	if opts.Pipelines <= 0 {
		opts.Pipelines = 2
	}
	_, single := client.(*redis.Client) // one server, or Sentinel's primary
	s := &Redis{client: client, perKey: !single, prefix: opts.Prefix, grace: opts.GraceSeconds,
		wake: make(chan struct{}, opts.Pipelines), stop: make(chan struct{})}
	s.sizes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "shepherd_ratelimit_store_batch_decisions",
		Help:    "Decisions counted by one round trip to Redis.",
		Buckets: batchBuckets,
	})
	if opts.Registerer != nil {
		s.sizes = register(opts.Registerer, s.sizes)
	}
	for range opts.Pipelines {
		go s.sender()
	}
	return s
}

// sender sends the waiting decisions, all of them in one pipeline, until
// the store is closed.
func (s *Redis) sender() {
	var batch []*batchJob
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			batch, s.pending = s.pending, batch[:0]
			s.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			s.send(batch)
			clear(batch)
		}
	}
}

// send runs one batch: the hits of every decision whose caller still waits,
// in one pipeline (and the NOSCRIPT retries in a second one).
func (s *Redis) send(batch []*batchJob) {
	var args []hitArgs
	var keys []string
	live := batch[:0:0]
	for _, j := range batch {
		if j.ctx.Err() != nil {
			j.err = j.ctx.Err()
			close(j.done)
			continue
		}
		live = append(live, j)
		args = append(args, j.args...)
		keys = append(keys, j.keys...)
	}
	if len(live) == 0 {
		return
	}
	s.pipelines.Add(1)
	s.sizes.Observe(float64(len(live)))
	replies, err := s.count(context.Background(), args, keys)
	at := 0
	for _, j := range live {
		if err != nil {
			j.err = err
		} else {
			j.out, j.err = results(j.args, replies[at:at+len(j.args)])
		}
		at += len(j.args)
		close(j.done)
	}
}

// Key returns the Redis key that holds the counter of key in window w:
// the prefix, the key bytes, ':' and the window's start in unix seconds.
func (s *Redis) Key(key []byte, w Window) string {
	b := make([]byte, 0, len(s.prefix)+len(key)+21)
	b = append(b, s.prefix...)
	b = append(b, key...)
	b = append(b, ':')
	b = strconv.AppendInt(b, w.Start, 10)
	return string(b)
}

// job copies what a sender needs of reqs.
func (s *Redis) job(ctx context.Context, reqs []Hit) *batchJob {
	j := &batchJob{ctx: ctx, keys: make([]string, len(reqs)), args: make([]hitArgs, len(reqs)), done: make(chan struct{})}
	for i := range reqs {
		h := &reqs[i]
		j.keys[i] = s.Key(h.Key, h.Window)
		j.args[i] = hitArgs{hits: min(h.Hits, MaxHits), ttlMs: (h.Window.Seconds + s.grace) * 1000, reset: h.Window.End()}
	}
	return j
}

// Apply implements Store. It waits for a sender to run the decision's
// hits (see Redis), or for ctx to end.
func (s *Redis) Apply(ctx context.Context, reqs []Hit) ([]Result, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if len(reqs) == 0 {
		return []Result{}, nil
	}
	j := s.job(ctx, reqs)
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.pending = append(s.pending, j)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // every sender is already awake and will find it
	}
	select {
	case <-j.done:
		return j.out, j.err
	case <-ctx.Done():
		return nil, fmt.Errorf("redis store: %w", ctx.Err())
	}
}

// maxScriptKeys bounds the keys of one script call, so that a large batch
// never holds Redis (which runs one script at a time) for long: a batch
// with more keys is cut into several calls in one pipeline.
const maxScriptKeys = 256

// count runs the script for every hit and returns each hit's count or
// error, in order. On one server (or a Sentinel-managed primary) the hits
// go in as few script calls as maxScriptKeys allows; on a cluster each call
// holds one key, because the keys of one call must share a hash slot and a
// batch's keys seldom do, and the client sends each call to the node that
// owns its key. A server that lost its script cache (restart, SCRIPT FLUSH,
// a failover, a new cluster node) answers NOSCRIPT without running
// anything, and those calls are sent again with the script's source.
func (s *Redis) count(ctx context.Context, args []hitArgs, keys []string) ([]reply, error) {
	per := maxScriptKeys
	if s.perKey {
		per = 1
	}
	calls := make([]span, 0, (len(keys)+per-1)/per)
	for at := 0; at < len(keys); at += per {
		calls = append(calls, span{at, min(at+per, len(keys))})
	}
	cmds, err := s.run(ctx, args, keys, calls, true)
	if err != nil {
		return nil, err
	}
	var again []span
	var where []int
	for i, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, calls[i])
			where = append(where, i)
		}
	}
	if len(again) > 0 {
		retried, err := s.run(ctx, args, keys, again, false)
		if err != nil {
			return nil, err
		}
		for j, i := range where {
			cmds[i] = retried[j]
		}
	}
	out := make([]reply, len(keys))
	for i, c := range cmds {
		sp := calls[i]
		vals, err := c.Slice()
		if err == nil && len(vals) != sp.end-sp.start {
			err = fmt.Errorf("%d counts for %d keys", len(vals), sp.end-sp.start)
		}
		for k := sp.start; k < sp.end; k++ {
			if err != nil {
				out[k].err = err
				continue
			}
			switch v := vals[k-sp.start].(type) {
			case int64:
				out[k].n = v
			case error:
				out[k].err = v
			default:
				out[k].err = fmt.Errorf("unexpected reply %T", v)
			}
		}
	}
	return out, nil
}

// span is the hits [start, end) of one script call.
type span struct{ start, end int }

// reply is one hit's count, or why it has none.
type reply struct {
	n   int64
	err error
}

// results reads one decision's counts from its replies.
func results(args []hitArgs, replies []reply) ([]Result, error) {
	out := make([]Result, len(args))
	for i, r := range replies {
		if r.err != nil {
			return nil, fmt.Errorf("redis store: hit %d: %w", i, r.err)
		}
		if r.n < 0 || r.n > MaxCount {
			return nil, fmt.Errorf("redis store: hit %d: count %d out of range", i, r.n)
		}
		out[i] = Result{Count: uint64(r.n), Reset: args[i].reset}
	}
	return out, nil
}

// run pipelines one script call per span, by digest when sha is true and
// by source otherwise.
func (s *Redis) run(ctx context.Context, args []hitArgs, keys []string, calls []span, sha bool) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sp := range calls {
			argv := make([]any, 1, 1+2*(sp.end-sp.start))
			argv[0] = MaxCount
			for k := sp.start; k < sp.end; k++ {
				argv = append(argv, args[k].hits, args[k].ttlMs)
			}
			if sha {
				cmds[i] = p.EvalSha(ctx, incrScript.Hash(), keys[sp.start:sp.end], argv...)
			} else {
				cmds[i] = p.Eval(ctx, incrScriptSource, keys[sp.start:sp.end], argv...)
			}
		}
		return nil
	})
	// A reply error (NOSCRIPT, OOM) belongs to its call and is looked at
	// per call; anything else (network, timeout) fails the batch.
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return nil, fmt.Errorf("redis store: %w", err)
	}
	return cmds, nil
}

// Pipelines returns how many batches the store has sent (each one
// pipeline, plus a second one only after NOSCRIPT).
func (s *Redis) Pipelines() int64 { return s.pipelines.Load() }

// register registers c on reg, or returns the collector already there
// under the same description.
func register(reg prometheus.Registerer, c prometheus.Histogram) prometheus.Histogram {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Histogram); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Waiting returns how many decisions wait for a sender.
func (s *Redis) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Close implements Store: it stops the senders. It does not close the
// client.
func (s *Redis) Close() error {
	s.mu.Lock()
	s.closed.Store(true)
	left := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.once.Do(func() { close(s.stop) })
	for _, j := range left {
		j.err = ErrClosed
		close(j.done)
	}
	return nil
}
