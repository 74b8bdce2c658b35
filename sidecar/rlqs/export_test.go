package rlqs

import "context"

// SyncPending serves the publications for buckets whose clients wait for a
// first claim (what Run does between its ticks), until ctx ends: tests on
// a virtual clock call Sync themselves for the periodic ones.
func (s *Service) SyncPending(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.syncNow:
			_ = s.sync(ctx, true)
		}
	}
}

// Settled reports whether no action waits to be sent, and how many messages
// have been taken for sending: once every client has received that many,
// nothing is in flight.
func (s *Service) Settled() (bool, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.syncing {
		return false, s.taken
	}
	for _, b := range s.buckets {
		if s.waiting(b) {
			return false, s.taken
		}
	}
	for st := range s.streams {
		if len(st.order) > 0 {
			return false, s.taken
		}
	}
	return true, s.taken
}
