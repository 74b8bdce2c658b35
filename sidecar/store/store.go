// Package store holds the rate limit counters of the sidecar: fixed-window hit
// counts keyed by descriptor, kept in process memory or in Redis.
//
// Both stores give the same answers for the same sequence of hits: a hit adds
// to its key's counter in the given window, and the count after the addition
// is returned. A counter whose window has ended starts again from zero.
package store

import (
	"context"
	"errors"
)

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
// to read the current count without changing it.
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
