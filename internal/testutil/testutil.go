// Package testutil holds the helpers the module's tests share: a buffer
// that several goroutines may write and read, and a channel receive that
// fails the test instead of hanging it.
package testutil

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer that goroutines may write to while others
// read what it holds (a server's log, a child process's output).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Receive returns the next value from ch, or fails the test when none
// arrives within d. A closed channel yields its zero value, as a receive
// does.
func Receive[T any](t testing.TB, ch <-chan T, d time.Duration) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("nothing received within %v", d)
		panic("unreachable")
	}
}
