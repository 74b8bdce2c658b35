package store

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// MemoryOptions configures a Memory store. Zero values take the defaults.
type MemoryOptions struct {
	// MaxKeys bounds the number of counters kept (default 1<<20, roughly
	// 150 MiB at its fullest with 50-byte keys). When a new key arrives at a
	// full shard, expired counters are dropped first, then the least
	// recently used of a small sample. Each new key also checks a couple of
	// counters for expiry, so expired ones leave without the store filling.
	MaxKeys int
	// Shards is the number of independently locked parts (default 64,
	// rounded up to a power of two).
	Shards int
}

// Memory is an in-process Store: sharded maps of counters, bounded in size,
// whose windows expire. It is safe for concurrent use. Counts are local to
// the process, so several sidecar replicas each count on their own.
type Memory struct {
	seed      maphash.Seed
	mask      uint64
	shards    []memShard
	evictions atomic.Uint64
	closed    atomic.Bool
}

// sampleSize is how many counters a full shard inspects to find one to evict.
const sampleSize = 16

type memShard struct {
	mu   sync.Mutex
	m    map[string]*memEntry
	max  int
	tick uint64
	// now is the latest window start seen by this shard; a counter whose
	// window ended at or before it has certainly expired.
	now int64
	_   [40]byte // keep shards on separate cache lines
}

type memEntry struct {
	win   Window
	count uint64
	used  uint64
}

// NewMemory returns an empty Memory store.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 1 << 20
	}
	if opts.Shards <= 0 {
		opts.Shards = 64
	}
	n := 1
	for n < opts.Shards {
		n <<= 1
	}
	per := opts.MaxKeys / n
	if per < 1 {
		per = 1
	}
	s := &Memory{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]memShard, n)}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*memEntry)
		s.shards[i].max = per
	}
	return s
}

// Apply implements Store. Each key is updated under its shard's lock, so a
// counter is never lost or double counted between concurrent decisions.
func (s *Memory) Apply(_ context.Context, reqs []Hit) ([]Result, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	out := make([]Result, len(reqs))
	for i := range reqs {
		out[i] = s.apply(&reqs[i])
	}
	return out, nil
}

func (s *Memory) apply(h *Hit) Result {
	sh := &s.shards[maphash.Bytes(s.seed, h.Key)&s.mask]
	sh.mu.Lock()
	if h.Window.Start > sh.now {
		sh.now = h.Window.Start
	}
	sh.tick++
	e := sh.m[string(h.Key)]
	if e == nil {
		if h.Hits == 0 {
			sh.mu.Unlock()
			return Result{Count: 0, Reset: h.Window.End()}
		}
		if len(sh.m) >= sh.max {
			s.evictEvictable(sh)
		} else {
			sweep(sh)
		}
		e = &memEntry{win: h.Window}
		sh.m[string(h.Key)] = e
	} else if e.win != h.Window {
		e.win = h.Window
		e.count = 0
	}
	e.count = addCount(e.count, h.Hits)
	e.used = sh.tick
	r := Result{Count: e.count, Reset: h.Window.End()}
	sh.mu.Unlock()
	return r
}

// evictEvictable drops the expired counters among a sample of the shard, or
// the least recently used of the sample when none has expired. The shard's
// lock must be held.
func (s *Memory) evictEvictable(sh *memShard) {
	var (
		lruKey  string
		lruUsed uint64
		found   bool
		dropped bool
		seen    int
	)
	for k, e := range sh.m {
		if e.win.End() <= sh.now {
			delete(sh.m, k)
			s.evictions.Add(1)
			dropped = true
		} else if !found || e.used < lruUsed {
			lruKey, lruUsed, found = k, e.used, true
		}
		seen++
		if seen >= sampleSize {
			break
		}
	}
	if !dropped && found {
		delete(sh.m, lruKey)
		s.evictions.Add(1)
	}
}

// sweepSize is how many counters each new key inspects for expiry, so that
// expired counters leave the store even while it is not full.
const sweepSize = 2

// sweep drops the expired counters among a few of the shard's, starting
// at a random place (Go's map iteration order). The shard's lock must be held.
func sweep(sh *memShard) {
	seen := 0
	for k, e := range sh.m {
		if e.win.End() <= sh.now {
			delete(sh.m, k)
		}
		seen++
		if seen >= sweepSize {
			return
		}
	}
}

// Len returns the number of counters held.
func (s *Memory) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Evictions returns how many counters were dropped to make room.
func (s *Memory) Evictions() uint64 { return s.evictions.Load() }

// Close implements Store; it drops all counters.
func (s *Memory) Close() error {
	s.closed.Store(true)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.m = make(map[string]*memEntry)
		sh.mu.Unlock()
	}
	return nil
}
