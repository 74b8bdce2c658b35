package limits

import (
	"errors"
	"strconv"
	"unsafe"
)

// MaxConsumerLen is the longest consumer value a Consumers tracker tracks; longer
// values go to the overflow bucket.
const MaxConsumerLen = 128

// MaxConsumers is the most consumers one Consumers tracker admits: the bound of
// a route's limits.maxConsumers, which the config validator reads from here.
const MaxConsumers = 1 << 16

// maxLocalConsumers bounds the values one VM remembers as tracked, so a VM's
// memory does not grow with MaxConsumers: a tracked value beyond it costs one
// shared-data read per request instead of a map lookup.
const maxLocalConsumers = 4096

// recentAdmissions is how many of the latest admitted values the count key
// carries (see Consumers).
const recentAdmissions = 16

// Consumers bounds the consumer values (taken from a client header, so chosen by
// the client) that get a bucket of their own on one route: the first Max distinct
// values seen by any VM of the Envoy process are tracked, every other value shares
// the route's overflow bucket (Limiter.OverflowKey).
//
// The set lives in shared data, not per VM: with a per-VM set each worker would
// admit a different first Max consumers, so one consumer could have its own
// bucket on one worker and share the overflow bucket on another, and which limit
// applies would depend on the worker a connection landed on.
//
// Each tracked value has a key of its own, and one count key per route holds how
// many were admitted, so admitting a value costs the same however many are
// tracked: read the value's key (present: tracked); else compare-and-swap the
// count one up and write the value's key. Proxy-wasm has no atomic
// create-if-absent (Envoy ignores cas for an absent key), so two VMs admitting
// the same value at once would both count it; to see that, the count key also
// carries the last recentAdmissions values admitted, and a VM that finds its
// value there writes the value's key and counts nothing. A slot is wasted only
// if that many other values are admitted between one VM's count and its write
// of the value's key, which are two consecutive host calls; the set never
// exceeds Max and every VM agrees on every value (a value is tracked exactly
// when its key exists).
//
// As with buckets (see Limiter), the first write of the count key is
// unconditional in Envoy: NewConsumers creates it when absent, before traffic,
// and every later change is a checked compare-and-swap.
//
// Each VM remembers up to maxLocalConsumers values it has seen tracked (the
// set only grows) and whether the set is full; it never copies the set.
//
// A Consumers belongs to one VM: it is not safe for concurrent use.
type Consumers struct {
	store      SharedData
	prefix     string // of every value's key
	countKey   string
	max        int
	maxRetries int
	known      map[string]struct{}
	full       bool
	keyBuf     []byte
	buf        []byte
}

// NewConsumers returns the tracker of at most max consumers on route. It
// creates the route's count key in store when absent.
func NewConsumers(store SharedData, route string, max int) (*Consumers, error) {
	if max <= 0 || max > MaxConsumers {
		return nil, errors.New("limits: route " + strconv.Quote(route) + " maxConsumers: must be between 1 and " + strconv.Itoa(MaxConsumers))
	}
	if store == nil {
		return nil, errors.New("limits: nil shared data store")
	}
	base := "shepherd.consumers/" + strconv.Itoa(len(route)) + ":" + route
	c := &Consumers{
		store:      store,
		prefix:     base + "/",
		countKey:   base,
		max:        max,
		maxRetries: DefaultMaxRetries,
		known:      make(map[string]struct{}, min(max, 64)),
	}
	if _, _, err := store.Get(c.countKey); errors.Is(err, ErrNotFound) {
		if err := store.Set(c.countKey, []byte{0, 0, 0, 0}, 0); err != nil && !errors.Is(err, ErrCasMismatch) {
			return nil, wrap("limits: create consumers count", err)
		}
	}
	return c, nil
}

// Resolve reports whether value has a bucket of its own. When it returns false
// the caller uses the overflow bucket. Empty values and values longer than
// MaxConsumerLen are never tracked. A value this VM has seen tracked costs one
// map lookup; any other one read of its key, and admitting it a read and a
// compare-and-swap of the count and a write of its key: none of it depends on
// how many values are tracked. Nothing allocates but the admission of a value.
// On a store error, or when the count keeps changing under it, the value is
// not tracked and the error (if any) is returned.
func (c *Consumers) Resolve(value string) (bool, error) {
	if value == "" || len(value) > MaxConsumerLen {
		return false, nil
	}
	if _, ok := c.known[value]; ok {
		return true, nil
	}
	c.keyBuf = append(append(c.keyBuf[:0], c.prefix...), value...)
	// The store does not keep the key of a Get (see SharedData), so a view
	// of the reused buffer saves an allocation per request.
	key := unsafe.String(unsafe.SliceData(c.keyBuf), len(c.keyBuf))
	for range c.maxRetries {
		if _, _, err := c.store.Get(key); err == nil {
			c.remember(value)
			return true, nil
		} else if !errors.Is(err, ErrNotFound) {
			return false, wrap("limits: read consumer", err)
		}
		if c.full {
			return false, nil
		}
		v, cas, err := c.store.Get(c.countKey)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, wrap("limits: read consumers count", err)
		}
		n, recent, ok := decodeCount(v)
		if !ok {
			n, recent = 0, nil // start afresh over a foreign value, still under CAS
		}
		if inRecent(recent, value) {
			// Another VM counted it and is about to write its key.
			return c.admit(value)
		}
		if n >= c.max {
			c.full = true
			return false, nil
		}
		c.buf = encodeCount(c.buf[:0], n+1, value, recent)
		if err := c.store.Set(c.countKey, c.buf, cas); err != nil {
			if errors.Is(err, ErrCasMismatch) {
				continue
			}
			return false, wrap("limits: write consumers count", err)
		}
		return c.admit(value)
	}
	return false, nil
}

// admit writes value's key: from now on every VM finds it tracked.
func (c *Consumers) admit(value string) (bool, error) {
	if err := c.store.Set(string(c.keyBuf), []byte{1}, 0); err != nil {
		return false, wrap("limits: write consumer", err)
	}
	c.remember(value)
	return true, nil
}

func (c *Consumers) remember(value string) {
	if len(c.known) < maxLocalConsumers {
		c.known[value] = struct{}{}
	}
}

// Tracked is the number of values this VM remembers as tracked (at most
// maxLocalConsumers).
func (c *Consumers) Tracked() int { return len(c.known) }

// The count key holds a u32 big-endian count, then up to recentAdmissions
// entries (u8 length, bytes), newest first.

func decodeCount(v []byte) (n int, recent []byte, ok bool) {
	if len(v) < 4 {
		return 0, nil, len(v) == 0
	}
	n = int(uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3]))
	recent = v[4:]
	entries := 0
	for r := recent; len(r) > 0; entries++ {
		l := int(r[0])
		if l == 0 || l > MaxConsumerLen || len(r) < 1+l || entries == recentAdmissions {
			return 0, nil, false
		}
		r = r[1+l:]
	}
	return n, recent, n <= MaxConsumers
}

func inRecent(recent []byte, value string) bool {
	for len(recent) > 0 {
		l := int(recent[0])
		if string(recent[1:1+l]) == value {
			return true
		}
		recent = recent[1+l:]
	}
	return false
}

func encodeCount(dst []byte, n int, value string, recent []byte) []byte {
	dst = append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), byte(len(value)))
	dst = append(dst, value...)
	for entries := 1; len(recent) > 0 && entries < recentAdmissions; entries++ {
		l := int(recent[0])
		dst = append(dst, recent[:1+l]...)
		recent = recent[1+l:]
	}
	return dst
}
