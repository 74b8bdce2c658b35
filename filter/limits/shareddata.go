package limits

import (
	"errors"
	"sync"
)

// Errors a SharedData implementation returns. The filter's adapter over the
// proxy-wasm binding maps the host's NOT_FOUND and CAS_MISMATCH statuses to these.
var (
	// ErrNotFound means the key holds no value.
	ErrNotFound = errors.New("shared data: not found")
	// ErrCasMismatch means the key changed since the version passed to Set was read.
	ErrCasMismatch = errors.New("shared data: cas mismatch")
)

// SharedData is proxy-wasm shared data: a process-wide key → bytes map that all
// worker VMs of one vm_id see, with compare-and-swap versions.
//
// Get returns the value and its CAS version, or ErrNotFound with version 0 when
// the key is absent. The returned slice may be the store's own buffer: the
// caller must not modify it, and it is valid only until the next call on the
// store (this package decodes or copies what it reads at once).
// Get does not keep key beyond the call (the caller may pass a view of a
// buffer it reuses).
//
// Set stores a copy of value. A non-zero cas must equal the key's current version
// or Set fails with ErrCasMismatch. As in Envoy, cas 0 means "do not check": the
// write is unconditional. Envoy also ignores cas when the key is absent, so there
// is no create-if-absent operation; callers that create keys must tolerate a
// concurrent creator overwriting their first write (see Limiter).
type SharedData interface {
	Get(key string) (value []byte, cas uint32, err error)
	Set(key string, value []byte, cas uint32) error
}

// MemorySharedData is an in-process SharedData with Envoy's semantics (as in
// proxy-wasm-cpp-host's SharedData): versions come from one process-wide counter
// that increments on every successful Set and skips 0; a Set with a non-zero cas
// that differs from the current version fails; cas is not checked for an absent key.
// It is safe for concurrent use, so tests can run many "workers" as goroutines.
// The zero value is ready to use.
type MemorySharedData struct {
	mu   sync.Mutex
	next uint32
	m    map[string]memEntry
}

type memEntry struct {
	value []byte
	cas   uint32
}

// Get returns a copy of the value stored under key and its version.
func (s *MemorySharedData) Get(key string) ([]byte, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return append([]byte(nil), e.value...), e.cas, nil
}

// Set stores a copy of value under key when cas is 0, the key is absent, or cas
// equals the key's current version; otherwise it returns ErrCasMismatch.
func (s *MemorySharedData) Set(key string, value []byte, cas uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]memEntry)
	}
	e, ok := s.m[key]
	if ok && cas != 0 && cas != e.cas {
		return ErrCasMismatch
	}
	s.next++
	if s.next == 0 {
		s.next = 1
	}
	s.m[key] = memEntry{value: append(e.value[:0:0], value...), cas: s.next}
	return nil
}

// Len is the number of keys stored.
func (s *MemorySharedData) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
