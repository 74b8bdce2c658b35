package envoy

import "unsafe"

// Body buffers as Envoy's Buffer::OwnedImpl keeps them, for the cost of the
// calls that change them. Envoy's set_buffer_bytes with start 0 drains length
// bytes and prepends the data (source/extensions/common/wasm/context.cc,
// Buffer::copyFrom), and with start at the end adds it; OwnedImpl drains by
// moving the front slice's start and prepends into the free room before it or
// into a new slice (source/common/buffer/buffer_impl.cc, OwnedImpl::drainImpl,
// OwnedImpl::prepend, Slice::prepend): the work is the size of the data, not of
// the body. This host keeps a body in one array with free room before its
// first byte, so that a plugin replacing the start of a 1 MiB body pays for the
// bytes it replaces, as under Envoy, and not for a copy of the rest.

// bodyRoom is the free room a body buffer keeps before its first byte: more
// than a plugin's edit of a request's start grows it by (a model renamed,
// stream_options added). A prefix that grows the body by more is prepended by
// copying the body once, into a buffer with that room again.
const bodyRoom = 1 << 10

// appendBody appends chunk to body, whose array starts at base (nil when
// body is nil), and returns the new base and body. A new body gets bodyRoom
// before it; a body that outgrows its array moves with its room.
func appendBody(base, body, chunk []byte) (newBase, newBody []byte) {
	if body != nil && len(chunk) <= cap(body)-len(body) {
		return base, append(body, chunk...)
	}
	size := len(body) + len(chunk)
	c := size
	if body != nil {
		c = 2 * size // buffering: grow as append does
	}
	newBase = make([]byte, bodyRoom+size, bodyRoom+c)
	copy(newBase[bodyRoom:], body)
	copy(newBase[bodyRoom+len(body):], chunk)
	return newBase, newBase[bodyRoom:]
}

// roomBefore returns the free bytes before body[0] in base's array, or -1
// when body does not lie in it (or is empty). Two live arrays never overlap,
// so a body whose first byte lies within base's array is a part of it.
func roomBefore(base, body []byte) int {
	if len(body) == 0 || cap(base) == 0 {
		return -1
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(body))) - uintptr(unsafe.Pointer(unsafe.SliceData(base)))
	if off >= uintptr(cap(base)) {
		return -1
	}
	return int(off)
}

// replacePrefix drains length bytes (at most the body) from the start of
// body and prepends data, in place when the drained bytes and the room
// before them hold it; it returns the new base and body.
func replacePrefix(base, body []byte, length int, data []byte) (newBase, newBody []byte) {
	rest := body[min(length, len(body)):]
	if room := roomBefore(base, rest); room >= len(data) {
		all := base[:cap(base)]
		newBody = all[room-len(data) : room+len(rest) : room+cap(rest)]
		copy(newBody, data)
		return base, newBody
	}
	newBase = make([]byte, bodyRoom+len(data)+len(rest))
	newBody = newBase[bodyRoom:]
	copy(newBody, data)
	copy(newBody[len(data):], rest)
	return newBase, newBody
}
