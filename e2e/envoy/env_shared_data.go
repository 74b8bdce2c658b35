package envoy

import (
	"context"
	"sync"
)

// Shared data: proxy_get_shared_data and proxy_set_shared_data over the
// key-value space of a vm_id (proxy-wasm-cpp-host src/shared_data.cc).
var sharedDataFuncs = []hostFunc{
	{name: "proxy_get_shared_data", fn: proxyGetSharedData},
	{name: "proxy_set_shared_data", fn: proxySetSharedData},
}

// proxyGetSharedData answers a key's value and CAS, NotFound for a missing key.
func proxyGetSharedData(ctx context.Context, keyPtr, keySize, ptrPtr, sizePtr, casPtr uint32) uint32 {
	v := vmFrom(ctx)
	key, ok := v.readString(keyPtr, keySize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	val, cas, st := v.h.shared.get(v.h.cfg.VMID, key)
	if st != StatusOK {
		return uint32(st)
	}
	if st := v.copyOut(val, ptrPtr, sizePtr); st != StatusOK {
		return uint32(st)
	}
	if !v.putU32(casPtr, cas) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// proxySetSharedData stores a value under the CAS rules of sharedData.set.
func proxySetSharedData(ctx context.Context, keyPtr, keySize, valPtr, valSize, cas uint32) uint32 {
	v := vmFrom(ctx)
	key, ok1 := v.readString(keyPtr, keySize)
	val, ok2 := v.read(valPtr, valSize)
	if !ok1 || !ok2 {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(v.h.shared.set(v.h.cfg.VMID, key, val, cas))
}

// sharedData is the key-value space that all VMs of one vm_id share, with CAS
// (proxy-wasm-cpp-host src/shared_data.cc). CAS values come from one counter and are
// never 0; a set with cas 0 always succeeds; a set with a non-zero cas on an existing key
// succeeds only if the cas matches; a set on a missing key ignores the cas.
type sharedData struct {
	mu      sync.Mutex
	nextCas uint32
	data    map[string]map[string]sharedValue // vm_id -> key -> value
}

type sharedValue struct {
	value []byte
	cas   uint32
}

func newSharedData() *sharedData {
	return &sharedData{data: map[string]map[string]sharedValue{}}
}

func (s *sharedData) casLocked() uint32 {
	s.nextCas++
	if s.nextCas == 0 {
		s.nextCas++
	}
	return s.nextCas
}

func (s *sharedData) get(vmID, key string) ([]byte, uint32, Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[vmID][key]
	if !ok {
		return nil, 0, StatusNotFound
	}
	return v.value, v.cas, StatusOK
}

func (s *sharedData) set(vmID, key string, value []byte, cas uint32) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.data[vmID]
	if m == nil {
		m = map[string]sharedValue{}
		s.data[vmID] = m
	}
	if cur, ok := m[key]; ok && cas != 0 && cas != cur.cas {
		return StatusCasMismatch
	}
	m[key] = sharedValue{value: append([]byte(nil), value...), cas: s.casLocked()}
	return StatusOK
}
