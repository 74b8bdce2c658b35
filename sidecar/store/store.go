// Package store holds the rate limit counters of the sidecar: fixed-window hit
// counts keyed by descriptor, kept in process memory or in Redis.
//
// Both stores give the same answers for the same sequence of hits: a hit adds
// to its key's counter in the given window, and the count after the addition
// is returned. A counter whose window has ended starts again from zero.
//
// Counts are bounded: a hit adds at most MaxHits, and a counter saturates at
// MaxCount instead of wrapping (memory) or failing every later increment
// (Redis's INCRBY past 2^63-1). Both bounds are far above any limit the rate
// limit service can express (requests_per_unit is a uint32), so saturating
// changes no decision.
package store

import (
	"context"
	"errors"
)

// Bounds of what a counter holds.
const (
	// MaxHits is the most one Hit adds; larger Hits count as MaxHits. It is
	// the largest requests_per_unit (a uint32): one such hit is over every
	// limit.
	MaxHits = 1<<32 - 1
	// MaxCount is where a counter saturates: it stays there for the rest of
	// its window. It leaves every sum of a count and a hit exact in an int64
	// and in a double (Redis's Lua numbers).
	MaxCount = 1 << 40
)

// addCount is count + hits, with hits taken as at most MaxHits and the sum
// saturating at MaxCount.
func addCount(count, hits uint64) uint64 {
	return min(min(count, MaxCount)+min(hits, MaxHits), MaxCount)
}

// Window is one fixed counting window: it starts at Start (unix seconds) and
// lasts Seconds seconds. Windows are aligned by the caller (Start is a
// multiple of Seconds for the rate limit service).
type Window struct {
	Start   int64
	Seconds int64
}

// End returns the unix second at which the window ends and its counter resets.
func (w Window) End() int64 { return w.Start + w.Seconds }

// Hit asks a store to add Hits to the counter Key in Window. Hits may be zero
// to read the current count without changing it; above MaxHits it counts as
// MaxHits.
type Hit struct {
	// Key names the counter. Stores copy it when they keep it, so the caller
	// may reuse the bytes after Apply returns.
	Key    []byte
	Hits   uint64
	Window Window
}

// Result is the state of one counter after a Hit was applied.
type Result struct {
	// Count is the counter's value in the hit's window after the addition.
	Count uint64
	// Reset is the unix second at which the window ends.
	Reset int64
}

// Store is a counter store shared by every decision of the rate limit service.
type Store interface {
	// Apply adds hits to each key's window atomically and returns the counts
	// after, in the order of reqs, with each window's reset time; one round
	// trip for all keys of a decision. On error no result is returned; some
	// hits may have been counted.
	Apply(ctx context.Context, reqs []Hit) ([]Result, error)
	// Close releases the store. Apply must not be called after Close.
	Close() error
}

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("store: closed")
