package envoy

import (
	"context"
	"sync"
)

// Shared queues: register, resolve, enqueue and dequeue, with
// proxy_on_queue_ready for the registrant (proxy-wasm-cpp-host
// src/shared_queue.cc).
var sharedQueueFuncs = []hostFunc{
	{name: "proxy_register_shared_queue", fn: proxyRegisterSharedQueue},
	{name: "proxy_resolve_shared_queue", fn: proxyResolveSharedQueue},
	{name: "proxy_enqueue_shared_queue", fn: proxyEnqueueSharedQueue},
	{name: "proxy_dequeue_shared_queue", fn: proxyDequeueSharedQueue},
}

// proxyRegisterSharedQueue registers (or takes over) a queue of the vm_id.
func proxyRegisterSharedQueue(ctx context.Context, namePtr, nameSize, tokenPtr uint32) uint32 {
	v := vmFrom(ctx)
	name, ok := v.readString(namePtr, nameSize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	// Envoy registers the queue for the calling context's root context.
	tok := v.h.queues.register(v.h.cfg.VMID, name, v, v.currentRoot().id)
	if !v.putU32(tokenPtr, tok) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// proxyResolveSharedQueue finds a queue by vm_id and name.
func proxyResolveSharedQueue(ctx context.Context, vmPtr, vmSize, namePtr, nameSize, tokenPtr uint32) uint32 {
	v := vmFrom(ctx)
	vmID, ok1 := v.readString(vmPtr, vmSize)
	name, ok2 := v.readString(namePtr, nameSize)
	if !ok1 || !ok2 {
		return uint32(StatusInvalidMemoryAccess)
	}
	tok, st := v.h.queues.resolve(vmID, name)
	if st != StatusOK {
		return uint32(st)
	}
	if !v.putU32(tokenPtr, tok) {
		return uint32(StatusInvalidMemoryAccess)
	}
	return uint32(StatusOK)
}

// proxyEnqueueSharedQueue adds an item and notifies the registrant.
func proxyEnqueueSharedQueue(ctx context.Context, tok, dataPtr, dataSize uint32) uint32 {
	v := vmFrom(ctx)
	data, ok := v.read(dataPtr, dataSize)
	if !ok {
		return uint32(StatusInvalidMemoryAccess)
	}
	target, ctxID, st := v.h.queues.enqueue(tok, data)
	if st != StatusOK {
		return uint32(st)
	}
	if target != nil {
		// Envoy posts on_queue_ready to the registrant's worker; it never runs inline.
		v.h.queues.post(target, ctxID, tok)
	}
	return uint32(StatusOK)
}

// proxyDequeueSharedQueue takes the oldest item, Empty when there is none.
func proxyDequeueSharedQueue(ctx context.Context, tok, ptrPtr, sizePtr uint32) uint32 {
	v := vmFrom(ctx)
	data, st := v.h.queues.dequeue(tok)
	if st != StatusOK {
		return uint32(st)
	}
	return uint32(v.copyOut(data, ptrPtr, sizePtr))
}

// sharedQueues are the named queues of proxy-wasm-cpp-host src/shared_queue.cc: a queue
// is keyed by (vm_id, name); registering again returns the same token and makes the new
// registrant the one notified; enqueue notifies that VM's context with on_queue_ready.
type sharedQueues struct {
	mu        sync.Mutex
	nextToken uint32
	tokens    map[[2]string]uint32
	queues    map[uint32]*sharedQueue
	// posted are the on_queue_ready calls posted to each VM's worker and not
	// yet run.
	posted map[*vm][]postedReady
}

// postedReady is an on_queue_ready call posted to a worker.
type postedReady struct{ ctxID, token uint32 }

type sharedQueue struct {
	items    [][]byte
	notifyVM *vm
	ctxID    uint32
}

func newSharedQueues() *sharedQueues {
	return &sharedQueues{tokens: map[[2]string]uint32{}, queues: map[uint32]*sharedQueue{}, posted: map[*vm][]postedReady{}}
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

// post delivers on_queue_ready for token to context ctxID of VM v as Envoy does:
// proxy-wasm-cpp-host src/shared_queue.cc SharedQueue::enqueue hands the call to
// the registrant's call_on_thread, which Envoy implements as a post to that
// worker's dispatcher (source/extensions/common/wasm/wasm.cc,
// Wasm::callOnThreadFunction); DispatcherImpl::post
// (source/common/event/dispatcher_impl.cc) schedules posted callbacks for the
// current loop iteration, so they run before the worker reads anything that
// arrives after the post. Here the call runs before the VM's next stream
// callback (stream.lock), or on its own when the VM is idle.
func (q *sharedQueues) post(v *vm, ctxID, token uint32) {
	q.mu.Lock()
	q.posted[v] = append(q.posted[v], postedReady{ctxID, token})
	q.mu.Unlock()
	go func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		q.runPosted(v)
	}()
}

// runPosted runs the calls posted to v. The caller holds v.mu.
func (q *sharedQueues) runPosted(v *vm) {
	q.mu.Lock()
	calls := q.posted[v]
	delete(q.posted, v)
	q.mu.Unlock()
	for _, c := range calls {
		if v.closed || v.failed.Load() {
			return
		}
		_, _ = v.callLocked(c.ctxID, "proxy_on_queue_ready", uint64(c.ctxID), uint64(c.token))
	}
}
