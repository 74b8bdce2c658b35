package envoy

import "sync"

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

// sharedQueues are the named queues of proxy-wasm-cpp-host src/shared_queue.cc: a queue
// is keyed by (vm_id, name); registering again returns the same token and makes the new
// registrant the one notified; enqueue notifies that VM's context with on_queue_ready.
type sharedQueues struct {
	mu        sync.Mutex
	nextToken uint32
	tokens    map[[2]string]uint32
	queues    map[uint32]*sharedQueue
}

type sharedQueue struct {
	items    [][]byte
	notifyVM *vm
	ctxID    uint32
}

func newSharedQueues() *sharedQueues {
	return &sharedQueues{tokens: map[[2]string]uint32{}, queues: map[uint32]*sharedQueue{}}
}

func (q *sharedQueues) register(vmID, name string, v *vm, ctxID uint32) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := [2]string{vmID, name}
	tok, ok := q.tokens[key]
	if !ok {
		for {
			q.nextToken++
			if q.nextToken != 0 && q.queues[q.nextToken] == nil {
				break
			}
		}
		tok = q.nextToken
		q.tokens[key] = tok
		q.queues[tok] = &sharedQueue{}
	}
	sq := q.queues[tok]
	sq.notifyVM, sq.ctxID = v, ctxID
	return tok
}

func (q *sharedQueues) resolve(vmID, name string) (uint32, Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	tok, ok := q.tokens[[2]string{vmID, name}]
	if !ok {
		return 0, StatusNotFound
	}
	return tok, StatusOK
}

func (q *sharedQueues) enqueue(tok uint32, data []byte) (*vm, uint32, Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq, ok := q.queues[tok]
	if !ok {
		return nil, 0, StatusNotFound
	}
	sq.items = append(sq.items, append([]byte(nil), data...))
	return sq.notifyVM, sq.ctxID, StatusOK
}

func (q *sharedQueues) dequeue(tok uint32) ([]byte, Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq, ok := q.queues[tok]
	if !ok {
		return nil, StatusNotFound
	}
	if len(sq.items) == 0 {
		return nil, StatusEmpty
	}
	d := sq.items[0]
	sq.items = sq.items[1:]
	return d, StatusOK
}
