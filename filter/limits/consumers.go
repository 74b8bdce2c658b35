package limits

import (
	"errors"
	"strconv"
)

// MaxConsumerLen is the longest consumer value a Consumers tracker tracks; longer
// values go to the overflow bucket.
const MaxConsumerLen = 128

// MaxConsumers is the most consumers one Consumers tracker admits: the bound of
// a route's limits.maxConsumers, which the config validator reads from here.
const MaxConsumers = 1 << 16

// Consumers bounds the consumer values (taken from a client header, so chosen by
// the client) that get a bucket of their own on one route: the first Max distinct
// values seen by any VM of the Envoy process are tracked, every other value shares
// the route's overflow bucket (Limiter.OverflowKey).
//
// The set lives in shared data, not per VM: with a per-VM set each worker would
// admit a different first Max consumers, so one consumer could have its own
// bucket on one worker and share the overflow bucket on another, and which limit
// applies would depend on the worker a connection landed on. The shared set is
// append-only until it is full, so each VM keeps a local copy of the values it
// has confirmed and reads shared data only for a value it has not seen; once the
// set is full the VM copies it whole and stops reading shared data. The local
// copy is bounded by Max.
//
// As with buckets (see Limiter), the first write of the set is unconditional in
// Envoy: if two VMs create it at the same moment, a value one of them confirmed
// can be erased by the other. That VM keeps treating the value as tracked until it
// finds the set full, when it replaces its copy with the shared set; every later
// change is a checked compare-and-swap.
//
// A Consumers belongs to one VM: it is not safe for concurrent use.
type Consumers struct {
	store      SharedData
	key        string
	max        int
	maxRetries int
	known      map[string]struct{}
	full       bool
	buf        []byte
}

// NewConsumers returns the tracker of at most max consumers on route.
func NewConsumers(store SharedData, route string, max int) (*Consumers, error) {
	if max <= 0 || max > MaxConsumers {
		return nil, errors.New("limits: route " + strconv.Quote(route) + " maxConsumers: must be between 1 and " + strconv.Itoa(MaxConsumers))
	}
	if store == nil {
		return nil, errors.New("limits: nil shared data store")
	}
	return &Consumers{
		store:      store,
		key:        "shepherd.consumers/" + strconv.Itoa(len(route)) + ":" + route,
		max:        max,
		maxRetries: DefaultMaxRetries,
		known:      make(map[string]struct{}, min(max, 64)),
	}, nil
}

// Resolve reports whether value has a bucket of its own. When it returns false
// the caller uses the overflow bucket. Empty values and values longer than
// MaxConsumerLen are never tracked. A known value costs one map lookup and no
// allocation; an unknown one reads (and may extend) the shared set. On a store
// error, or when the set keeps changing under it, the value is not tracked and
// the error (if any) is returned.
func (c *Consumers) Resolve(value string) (bool, error) {
	if value == "" || len(value) > MaxConsumerLen {
		return false, nil
	}
	if _, ok := c.known[value]; ok {
		return true, nil
	}
	if c.full {
		return false, nil
	}
	for range c.maxRetries {
		v, cas, err := c.store.Get(c.key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, wrap("limits: read consumers", err)
		}
		if !validSet(v) {
			v = nil // start a fresh set over a foreign value, still under CAS
		}
		found, count := scanSet(v, value)
		if found {
			c.known[value] = struct{}{}
			return true, nil
		}
		if count >= c.max {
			c.loadFull(v)
			return false, nil
		}
		// Append and write; the next round confirms the value is in the set,
		// which also catches a concurrent creator overwriting the first write.
		c.buf = append(append(c.buf[:0], v...), 0, 0)
		putUint16(c.buf[len(c.buf)-2:], uint16(len(value)))
		c.buf = append(c.buf, value...)
		if err := c.store.Set(c.key, c.buf, cas); err != nil && !errors.Is(err, ErrCasMismatch) {
			return false, wrap("limits: write consumers", err)
		}
	}
	return false, nil
}

// Tracked is the number of values this VM knows to be tracked.
func (c *Consumers) Tracked() int { return len(c.known) }

func (c *Consumers) loadFull(v []byte) {
	clear(c.known)
	for len(v) >= 2 {
		n := int(getUint16(v))
		c.known[string(v[2:2+n])] = struct{}{}
		v = v[2+n:]
	}
	c.full = true
}

// The shared set is a sequence of (u16 big-endian length, bytes) entries.

func validSet(v []byte) bool {
	for len(v) > 0 {
		if len(v) < 2 {
			return false
		}
		n := int(getUint16(v))
		if n == 0 || n > MaxConsumerLen || len(v) < 2+n {
			return false
		}
		v = v[2+n:]
	}
	return true
}

func scanSet(v []byte, value string) (found bool, count int) {
	for len(v) >= 2 {
		n := int(getUint16(v))
		if string(v[2:2+n]) == value {
			return true, count
		}
		count++
		v = v[2+n:]
	}
	return false, count
}
