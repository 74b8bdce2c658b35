package rlqs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Several replicas. Each replica divides a bucket's limit among its own
// clients, so with several replicas each must first agree with the others
// on its part of the limit, its claim. A Sharer holds, per bucket, one entry
// per replica: the replica's demand (the weights its clients would have in
// the division), its claim, and until when that claim counts (the longest
// assignment its clients may still be using, plus two publications).
// Publishing replaces the replica's entry and returns its new claim:
//
//	target = limit × demand / (sum of the live entries' demands), rounded,
//	         at least the shares held by its ended streams;
//	claim  = the previous claim while the target is within Hysteresis of
//	         the limit of it, else the target;
//	claim  = min(claim, limit - the other live entries' claims).
//
// Each publication is atomic, so the claims of live entries never add up
// to more than the limit: a replica whose demand grows takes what the
// others gave back at their own publications, and demand that moves from
// one replica to another moves in two publications (ShareInterval each).
// Entries whose time is up are dropped, so the claim of a replica that died
// returns once its clients' assignments have expired.
//
// When a publication fails (Redis unreachable), the replica keeps its last
// claims while they still count for the others; after that it divides, per
// bucket, limit / (replicas last seen on it), as the others cannot see it
// any longer and may have taken its claim: while one replica is cut off
// from Redis, a bucket can admit up to 1 + 1/n times its limit, n being
// the replicas seen. A bucket this replica never published (Redis down
// since it appeared) takes the limit divided by the replicas seen in the
// last successful round, or the whole limit if there was none.

// Sharer publishes a replica's demand per bucket and answers its claims.
type Sharer interface {
	// Publish publishes every entry and returns, for each, the claim
	// granted (requests per unit) and the replicas sharing the bucket
	// (this one included), or a claim of -1 when the bucket has no room
	// for another replica's entry.
	Publish(ctx context.Context, now time.Time, entries []ShareEntry) ([]ShareClaim, error)
	// Release removes this replica's entries of the buckets named.
	Release(ctx context.Context, keys []string) error
}

// ShareEntry is one bucket's publication.
type ShareEntry struct {
	Key       string  // the bucket's identity (domain and id)
	Demand    float64 // requests per second this replica's clients would take
	Limit     uint64  // requests per unit
	Tolerance uint64  // keep the previous claim while the target is this close
	Minimum   uint64  // shares held by ended streams: claim at least this, room permitting
	ValidFor  time.Duration
}

// ShareClaim is the answer to one ShareEntry.
type ShareClaim struct {
	Claim int64 // -1: no room for this replica's entry
	Peers int
}

// MaxSharePeers is how many replicas' entries one bucket holds in Redis;
// a further replica gets no entry and divides limit / MaxSharePeers.
const MaxSharePeers = 64

// shareBatch bounds the entries of one pipeline.
const shareBatch = 1000

// publishBudget is the time a publication round allows per bucket on top
// of ShareInterval: several times what one costs on a local Redis
// (BenchmarkRedisSharePublish: 40-60 µs on two busy cores).
const publishBudget = 250 * time.Microsecond

// Sync publishes this replica's demand for every bucket with a token limit
// (or, with pending, only those whose clients wait for a first claim) and
// applies the claims it gets back, revising the clients' assignments that
// change. Without Options.Share it does nothing.
func (s *Service) Sync(ctx context.Context) error { return s.sync(ctx, false) }

func (s *Service) sync(ctx context.Context, pending bool) error {
	if s.opts.Share == nil {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()

	s.mu.Lock()
	if s.syncAll {
		s.syncAll, pending = false, false
	}
	now := s.opts.Clock()
	cfg := s.cfg.Load()
	var entries []ShareEntry
	var targets []*bucket
	for _, b := range s.buckets {
		if b.cfg != cfg {
			// The config changed and this bucket was not revised yet.
			s.rebalance(b, now, nil)
			if s.buckets[b.key] != b {
				continue
			}
		}
		if !b.limited() || (pending && b.claimed) {
			continue
		}
		e, ok := s.entry(b, now)
		if !ok {
			continue
		}
		entries = append(entries, e)
		targets = append(targets, b)
	}
	s.syncing = len(entries) > 0
	s.flush()
	s.mu.Unlock()
	if len(entries) == 0 {
		return nil
	}

	// A round may take longer than ShareInterval with many buckets (the
	// next one then starts late): its deadline grows with them.
	pctx, cancel := context.WithTimeout(ctx, s.opts.ShareInterval+time.Duration(len(entries))*publishBudget)
	claims, err := s.opts.Share.Publish(pctx, now, entries)
	cancel()
	if err == nil && len(claims) != len(entries) {
		err = fmt.Errorf("rlqs share: %d claims for %d entries", len(claims), len(entries))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.flush()
	s.syncing = false
	published := now // the entries count until published + ValidFor
	now = s.opts.Clock()
	if err != nil {
		s.m.shareFailed.Inc()
		if !s.shareDown {
			// Logged once per outage; the counter counts every failure.
			s.shareDown = true
			s.log.Warn("rlqs: cannot publish this replica's demand; claims are kept while they count, then divided by the replicas last seen",
				"buckets", len(entries), "error", err)
		}
	} else {
		if s.shareDown {
			s.shareDown = false
			s.log.Info("rlqs: publishing this replica's demand again", "buckets", len(entries))
		}
		s.peers = 0
		for _, c := range claims {
			s.peers = max(s.peers, c.Peers)
		}
	}
	for i, b := range targets {
		if s.buckets[b.key] != b || !b.limited() {
			continue // dropped, or no longer limited (a reload), meanwhile
		}
		limit := uint64(b.limit.RequestsPerUnit)
		old, was := b.claim, b.claimed
		switch {
		case err == nil && claims[i].Claim >= 0:
			b.claim, b.peers, b.until, b.fallback = min(uint64(claims[i].Claim), limit), max(1, claims[i].Peers), published.Add(entries[i].ValidFor), false
		case err == nil:
			b.claim, b.peers, b.until, b.fallback = limit/MaxSharePeers, MaxSharePeers, time.Time{}, true
		case !b.claimed || !now.Before(b.until):
			// Unpublished past its time: the others may have taken it.
			peers := b.peers
			if !b.claimed {
				peers = s.peers
			}
			b.claim, b.fallback = limit/uint64(max(1, peers)), true
		}
		b.claimed = true
		if !was || old != b.claim {
			s.rebalance(b, now, nil)
		}
	}
	n := 0
	for _, b := range s.buckets {
		if b.fallback {
			n++
		}
	}
	s.m.shareBuckets.Set(float64(n))
	if err != nil {
		return err
	}
	return nil
}

// Release gives this replica's claims back to the other replicas: call it
// after Shutdown, when the clients have been told to reconnect (to another
// replica, which can then give them their shares at once instead of waiting
// for these claims to lapse). Without Options.Share it does nothing.
func (s *Service) Release(ctx context.Context) error {
	if s.opts.Share == nil {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	keys := make([]string, 0, len(s.buckets))
	for _, b := range s.buckets {
		if b.claimed {
			keys = append(keys, b.key)
		}
	}
	s.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ShareInterval+time.Duration(len(keys))*publishBudget)
	defer cancel()
	return s.opts.Share.Release(ctx, keys)
}

// entry is the bucket's publication; false when no live client shares it.
func (s *Service) entry(b *bucket, now time.Time) (ShareEntry, bool) {
	var live []*stream
	var held uint64
	valid := 2 * s.opts.ShareInterval
	for st, sh := range b.clients {
		if sh.sent {
			valid = max(valid, sh.expires.Sub(now)+s.opts.ShareInterval)
		}
		if sh.gone {
			held = satAdd(held, sh.cur.perPeriod)
			continue
		}
		valid = max(valid, s.ttl(st)+s.opts.ShareInterval)
		live = append(live, st)
	}
	if len(live) == 0 && held == 0 {
		return ShareEntry{}, false
	}
	l := b.limit
	perSecond := float64(l.RequestsPerUnit) / float64(l.Period())
	var demand float64
	for _, w := range s.weights(b, live, perSecond) {
		demand += w
	}
	if math.IsNaN(demand) || demand < 0 {
		demand = 0
	}
	limit := uint64(l.RequestsPerUnit)
	return ShareEntry{Key: b.key, Demand: min(demand, 1e15), Limit: limit,
		Tolerance: uint64(s.opts.Hysteresis * float64(limit)), Minimum: min(held, limit), ValidFor: valid}, true
}

// Run publishes every ShareInterval, and at once for buckets whose clients
// wait for a first claim, until ctx ends. A round that takes longer than
// ShareInterval delays the next. Without Options.Share it returns at once.
func (s *Service) Run(ctx context.Context) {
	if s.opts.Share == nil {
		return
	}
	tick := time.NewTicker(s.opts.ShareInterval)
	defer tick.Stop()
	for {
		pending := false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.syncNow:
			pending = true
		}
		_ = s.sync(ctx, pending)
	}
}

// RedisShare is a Sharer on Redis: one hash per bucket, one field per
// replica, each publication one script run, pipelined.
type RedisShare struct {
	client redis.UniversalClient
	prefix string
	id     string
}

// DefaultSharePrefix is the prefix of RedisShare's keys.
const DefaultSharePrefix = "shepherd:rlqs:"

// NewRedisShare returns a Sharer on client for one replica, named by a
// random id (a restarted replica is a new one; its old entries lapse).
func NewRedisShare(client redis.UniversalClient, prefix string) *RedisShare {
	if prefix == "" {
		prefix = DefaultSharePrefix
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &RedisShare{client: client, prefix: prefix, id: hex.EncodeToString(id[:])}
}

// shareScript publishes one replica's entry in a bucket's hash and returns
// {claim, peers} (see Sharer). Fields are replica ids; values are
// "<valid until, unix ms> <demand> <claim>". KEYS[1]: the hash. ARGV: id,
// now (unix ms), demand, limit, tolerance, minimum, valid until (unix ms),
// key expiry (ms), MaxSharePeers.
const shareScriptSource = `local now = tonumber(ARGV[2])
local demand = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local tol = tonumber(ARGV[5])
local minimum = tonumber(ARGV[6])
local odemand, others, peers, cur = 0, 0, 1, -1
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  local u, d, c = string.match(h[i+1], '^(%S+) (%S+) (%S+)$')
  u, d, c = tonumber(u), tonumber(d), tonumber(c)
  if h[i] == ARGV[1] then
    if c then cur = c end
  elseif u == nil or d == nil or c == nil or u <= now then
    redis.call('HDEL', KEYS[1], h[i])
  else
    odemand = odemand + d
    others = others + c
    peers = peers + 1
  end
end
if cur < 0 and peers > tonumber(ARGV[9]) then
  return {-1, peers}
end
local target = limit
if demand + odemand > 0 then
  target = math.floor(limit * demand / (demand + odemand) + 0.5)
end
if target < minimum then target = minimum end
local claim = target
if cur >= 0 and math.abs(target - cur) <= tol then claim = cur end
local room = limit - others
if room < 0 then room = 0 end
if claim > room then claim = room end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[7] .. ' ' .. ARGV[3] .. ' ' .. claim)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[8]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
end
return {claim, peers}
`

var shareScript = redis.NewScript(shareScriptSource)

// key is the bucket's hash: the prefix and a digest of its identity, so
// that the key's size is fixed whatever the bucket id.
func (r *RedisShare) key(bucket string) string {
	sum := sha256.Sum256([]byte(bucket))
	return r.prefix + hex.EncodeToString(sum[:16])
}

// Publish implements Sharer: one pipeline per shareBatch entries; a script
// the server lost (restart, SCRIPT FLUSH, a new cluster node) is sent again
// with its source.
func (r *RedisShare) Publish(ctx context.Context, now time.Time, entries []ShareEntry) ([]ShareClaim, error) {
	out := make([]ShareClaim, 0, len(entries))
	for lo := 0; lo < len(entries); lo += shareBatch {
		part := entries[lo:min(lo+shareBatch, len(entries))]
		cmds, err := r.run(ctx, now, part, true)
		if err != nil {
			return nil, err
		}
		for _, c := range cmds {
			if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				if cmds, err = r.run(ctx, now, part, false); err != nil {
					return nil, err
				}
				break
			}
		}
		for i, c := range cmds {
			v, err := c.Int64Slice()
			if err != nil || len(v) != 2 {
				return nil, fmt.Errorf("rlqs share: bucket %d: %w", lo+i, errors.Join(err, errors.New("unexpected reply")))
			}
			out = append(out, ShareClaim{Claim: v[0], Peers: int(v[1])})
		}
	}
	return out, nil
}

// Release implements Sharer: one HDEL per bucket, pipelined.
func (r *RedisShare) Release(ctx context.Context, keys []string) error {
	for lo := 0; lo < len(keys); lo += shareBatch {
		_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys[lo:min(lo+shareBatch, len(keys))] {
				p.HDel(ctx, r.key(k), r.id)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rlqs share: release: %w", err)
		}
	}
	return nil
}

func (r *RedisShare) run(ctx context.Context, now time.Time, entries []ShareEntry, sha bool) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(entries))
	nowMs := now.UnixMilli()
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			valid := max(e.ValidFor.Milliseconds(), 1)
			args := []any{r.id, nowMs, strconv.FormatFloat(e.Demand, 'g', 6, 64), e.Limit, e.Tolerance, e.Minimum,
				nowMs + valid, 2 * valid, MaxSharePeers}
			keys := []string{r.key(e.Key)}
			if sha {
				cmds[i] = p.EvalSha(ctx, shareScript.Hash(), keys, args...)
			} else {
				cmds[i] = p.Eval(ctx, shareScriptSource, keys, args...)
			}
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return nil, fmt.Errorf("rlqs share: %w", err)
	}
	return cmds, nil
}
