package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

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
	// 4). Decisions that arrive while they are all busy wait and go out
	// together in the next one, so under load one round trip carries many
	// decisions (see Redis). 1 sends one pipeline at a time.
	Pipelines int
}

// Redis is a Store in Redis, shared by every sidecar replica that uses the
// same server or cluster. Each hit runs one small Lua script on one key
// (INCRBY, then PEXPIRE when the key has no expiry yet), so each counter is
// updated atomically. Every script touches a single key, so a pipeline is
// safe on Redis Cluster without hash tags: the client sends each script to
// the node that owns its key.
//
// Decisions are batched: a few sender goroutines (RedisOptions.Pipelines)
// each take every decision waiting, send all their scripts in one
// pipeline, and hand each decision its results. An idle store sends a
// decision at once, alone (one round trip, as before); under load the
// decisions that arrive during a round trip share the next one, so Redis
// and the sidecar pay one read and one write per batch instead of per
// decision. A caller waits only as long as its own context allows; a
// decision whose caller has gone before it is sent is dropped, uncounted.
type Redis struct {
	client redis.UniversalClient
	prefix string
	grace  int64
	closed atomic.Bool

	pipelines atomic.Int64 // pipelines sent, for tests and benchmarks

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

// incrScript adds ARGV[1] to KEYS[1], saturating at ARGV[3] (MaxCount), and
// makes sure the key expires after ARGV[2] milliseconds; it returns the count
// after the addition. The sum is taken in Lua before INCRBY, so no addition
// can reach Redis's int64 overflow error: a counter at its bound stays there
// (SET ... KEEPTTL, Redis 6.0+) and keeps answering. A stored value outside
// [0, ARGV[3]] (written by something else, or by a version without the bound)
// is taken as the bound or as 0. Lua numbers are doubles: every value the
// script computes below 2^53 is exact.
const incrScriptSource = `local cap = tonumber(ARGV[3])
local v = redis.call('GET', KEYS[1])
local c = 0
if v then
  c = tonumber(v)
  if c == nil then
    return redis.error_reply('ERR counter is not an integer')
  end
end
c = c + tonumber(ARGV[1])
if c >= cap then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  c = cap
elseif c < 0 or c ~= math.floor(c) then
  c = tonumber(ARGV[1])
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
else
  c = redis.call('INCRBY', KEYS[1], ARGV[1])
end
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return c`

var incrScript = redis.NewScript(incrScriptSource)

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
		opts.Pipelines = 4
	}
	s := &Redis{client: client, prefix: opts.Prefix, grace: opts.GraceSeconds,
		wake: make(chan struct{}, opts.Pipelines), stop: make(chan struct{})}
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
	cmds, err := s.runAll(context.Background(), args, keys)
	at := 0
	for _, j := range live {
		if err != nil {
			j.err = err
		} else {
			j.out, j.err = results(j.args, cmds[at:at+len(j.args)])
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

// Apply implements Store. It waits for a sender to run the decision's
// hits (see Redis), or for ctx to end.
func (s *Redis) Apply(ctx context.Context, reqs []Hit) ([]Result, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if len(reqs) == 0 {
		return []Result{}, nil
	}
	j := &batchJob{ctx: ctx, keys: make([]string, len(reqs)), args: make([]hitArgs, len(reqs)), done: make(chan struct{})}
	for i := range reqs {
		h := &reqs[i]
		j.keys[i] = s.Key(h.Key, h.Window)
		j.args[i] = hitArgs{hits: min(h.Hits, MaxHits), ttlMs: (h.Window.Seconds + s.grace) * 1000, reset: h.Window.End()}
	}
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

// runAll runs the script for every hit in one pipeline; a server that lost
// its script cache (restart, SCRIPT FLUSH, a new cluster node) answers
// NOSCRIPT without running anything, and those hits are sent again with
// the script's source.
func (s *Redis) runAll(ctx context.Context, args []hitArgs, keys []string) ([]*redis.Cmd, error) {
	cmds, err := s.run(ctx, args, keys, nil, true)
	if err != nil {
		return nil, err
	}
	var again []int
	for i, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		retried, err := s.run(ctx, args, keys, again, false)
		if err != nil {
			return nil, err
		}
		for j, i := range again {
			cmds[i] = retried[j]
		}
	}
	return cmds, nil
}

// results reads one decision's counts from its commands.
func results(args []hitArgs, cmds []*redis.Cmd) ([]Result, error) {
	out := make([]Result, len(args))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, fmt.Errorf("redis store: hit %d: %w", i, err)
		}
		if n < 0 || n > MaxCount {
			return nil, fmt.Errorf("redis store: hit %d: count %d out of range", i, n)
		}
		out[i] = Result{Count: uint64(n), Reset: args[i].reset}
	}
	return out, nil
}

// run pipelines the script for the hits at idx (all hits when idx is nil),
// by digest when sha is true and by source otherwise.
func (s *Redis) run(ctx context.Context, args []hitArgs, keys []string, idx []int, sha bool) ([]*redis.Cmd, error) {
	n := len(args)
	if idx != nil {
		n = len(idx)
	}
	cmds := make([]*redis.Cmd, n)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j := 0; j < n; j++ {
			i := j
			if idx != nil {
				i = idx[j]
			}
			a := &args[i]
			k := keys[i : i+1]
			if sha {
				cmds[j] = p.EvalSha(ctx, incrScript.Hash(), k, a.hits, a.ttlMs, MaxCount)
			} else {
				cmds[j] = p.Eval(ctx, incrScriptSource, k, a.hits, a.ttlMs, MaxCount)
			}
		}
		return nil
	})
	// A reply error (NOSCRIPT, WRONGTYPE) belongs to its command and is
	// looked at per hit; anything else (network, timeout) fails the call.
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return nil, fmt.Errorf("redis store: %w", err)
	}
	return cmds, nil
}

// Pipelines returns how many batches the store has sent (each one
// pipeline, plus a second one only after NOSCRIPT).
func (s *Redis) Pipelines() int64 { return s.pipelines.Load() }

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
