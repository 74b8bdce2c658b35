package cooldown

import "encoding/binary"

// The wake-up list: the shared queues of the VMs that want to hear at once of
// a new pause. A route with one provider and no fallback does not read the
// table while its VM knows of no pause (no host call per request); a VM that
// stores a refusal's pause enqueues a notice to every queue listed here, and
// the VM that registered the queue reads the table from its next request on.
//
// Each VM registers a queue of its own name and lists the queue's token with
// the time it last said it was alive. proxy-wasm-cpp-host
// (src/shared_queue.cc) deletes queues only when the last VM of the vm_id is
// gone, and enqueues to the queue of a VM that is gone still succeed and are
// kept: so entries not refreshed for WakeStale are dropped and receive
// nothing, and the list holds at most MaxWake entries.
//
// Encoding (little endian): a version byte (1), an entry count (uint16), then
// per entry: the queue token (uint32) and when it was last listed (int64, Unix
// ms).

// WakeKey is the shared-data key of the wake-up list.
const WakeKey = "shepherd.cooldowns.wake"

// Bounds of the wake-up list.
const (
	// MaxWake is the most queues listed; a new one replaces the one listed
	// longest ago.
	MaxWake = 256
	// WakeRefresh is how often a VM lists its queue again (ms).
	WakeRefresh = int64(10_000)
	// WakeStale is how long an entry not listed again is kept (ms); after it
	// its VM is taken for gone.
	WakeStale = 6 * WakeRefresh
)

const (
	wakeVersion = 1
	wakeHeader  = 3
	wakeEntry   = 4 + 8
)

// Wakers calls f with the token of every queue listed within WakeStale of
// now. A malformed list has none.
func Wakers(raw []byte, now int64, f func(token uint32)) {
	eachWaker(raw, func(token uint32, seen int64) {
		if now-seen < WakeStale {
			f(token)
		}
	})
}

func eachWaker(raw []byte, f func(token uint32, seen int64)) {
	if len(raw) < wakeHeader || raw[0] != wakeVersion {
		return
	}
	n := int(binary.LittleEndian.Uint16(raw[1:]))
	for i, off := 0, wakeHeader; i < n && off+wakeEntry <= len(raw); i, off = i+1, off+wakeEntry {
		f(binary.LittleEndian.Uint32(raw[off:]), int64(binary.LittleEndian.Uint64(raw[off+4:])))
	}
}

// Enlist returns the list raw with token listed at now, appended to dst[:0]:
// its earlier entry and entries stale at now are dropped, a time in the
// future counts as now, and when the list is full the entry listed longest
// ago gives way. dst must not share memory with raw.
func Enlist(dst, raw []byte, token uint32, now int64) []byte {
	type entry struct {
		token uint32
		seen  int64
	}
	var kept [MaxWake]entry
	n := 0
	eachWaker(raw, func(t uint32, seen int64) {
		seen = min(seen, now)
		if t == token || now-seen >= WakeStale || n == MaxWake {
			return
		}
		kept[n] = entry{t, seen}
		n++
	})
	if n == MaxWake {
		oldest := 0
		for i := 1; i < n; i++ {
			if kept[i].seen < kept[oldest].seen {
				oldest = i
			}
		}
		copy(kept[oldest:n], kept[oldest+1:n])
		n--
	}
	kept[n] = entry{token, now}
	n++
	out := append(dst[:0], wakeVersion, 0, 0)
	binary.LittleEndian.PutUint16(out[1:], uint16(n))
	for _, e := range kept[:n] {
		var b [wakeEntry]byte
		binary.LittleEndian.PutUint32(b[0:], e.token)
		binary.LittleEndian.PutUint64(b[4:], uint64(e.seen))
		out = append(out, b[:]...)
	}
	return out
}
