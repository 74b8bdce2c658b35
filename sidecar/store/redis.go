package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
}

// Redis is a Store in Redis, shared by every sidecar replica that uses the
// same server or cluster. Each hit runs one small Lua script on one key
// (INCRBY, then PEXPIRE when the key has no expiry yet), so each counter is
// updated atomically; the scripts of one decision are sent in one pipeline,
// one round trip. Every script touches a single key, so the pipeline is safe
// on Redis Cluster without hash tags: the client sends each script to the
// node that owns its key.
type Redis struct {
	client redis.UniversalClient
	prefix string
	grace  int64
	closed atomic.Bool
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
	return &Redis{client: client, prefix: opts.Prefix, grace: opts.GraceSeconds}
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

// Apply implements Store.
func (s *Redis) Apply(ctx context.Context, reqs []Hit) ([]Result, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if len(reqs) == 0 {
		return []Result{}, nil
	}
	keys := make([]string, len(reqs))
	for i := range reqs {
		keys[i] = s.Key(reqs[i].Key, reqs[i].Window)
	}
	cmds, err := s.run(ctx, reqs, keys, nil, true)
	if err != nil {
		return nil, err
	}
	// A server that lost its script cache (restart, SCRIPT FLUSH, a new
	// cluster node) answers NOSCRIPT without running anything; send those
	// hits again with the script's source.
	var again []int
	for i, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		retried, err := s.run(ctx, reqs, keys, again, false)
		if err != nil {
			return nil, err
		}
		for j, i := range again {
			cmds[i] = retried[j]
		}
	}
	out := make([]Result, len(reqs))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, fmt.Errorf("redis store: hit %d: %w", i, err)
		}
		if n < 0 || n > MaxCount {
			return nil, fmt.Errorf("redis store: hit %d: count %d out of range", i, n)
		}
		out[i] = Result{Count: uint64(n), Reset: reqs[i].Window.End()}
	}
	return out, nil
}

// run pipelines the script for the hits at idx (all hits when idx is nil),
// by digest when sha is true and by source otherwise.
func (s *Redis) run(ctx context.Context, reqs []Hit, keys []string, idx []int, sha bool) ([]*redis.Cmd, error) {
	n := len(reqs)
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
			h := &reqs[i]
			ttl := (h.Window.Seconds + s.grace) * 1000
			hits := min(h.Hits, MaxHits)
			k := keys[i : i+1]
			if sha {
				cmds[j] = p.EvalSha(ctx, incrScript.Hash(), k, hits, ttl, MaxCount)
			} else {
				cmds[j] = p.Eval(ctx, incrScriptSource, k, hits, ttl, MaxCount)
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

// Close implements Store. It does not close the client.
func (s *Redis) Close() error {
	s.closed.Store(true)
	return nil
}
