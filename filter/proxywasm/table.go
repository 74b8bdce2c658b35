package proxywasm

// table maps context ids to values: an open-addressing hash table with linear
// probing and deletion by backward shift, so it never holds tombstones. The
// binding looks up a context on every callback and adds and removes one per
// stream; Go's maps cost microseconds for that inside a VM, this a fraction.
// The zero table is ready.
type table[V any] struct {
	slots []slot[V] // len is a power of two, or 0
	n     int
}

type slot[V any] struct {
	key  uint32
	used bool
	val  V
}

func (t *table[V]) home(key uint32) int {
	return int((key * 0x9e3779b1) >> 7 & uint32(len(t.slots)-1))
}

// get returns key's value.
func (t *table[V]) get(key uint32) (V, bool) {
	if len(t.slots) > 0 {
		mask := len(t.slots) - 1
		for i := t.home(key); t.slots[i].used; i = (i + 1) & mask {
			if t.slots[i].key == key {
				return t.slots[i].val, true
			}
		}
	}
	var zero V
	return zero, false
}

// put sets key's value.
func (t *table[V]) put(key uint32, val V) {
	if 4*(t.n+1) > 3*len(t.slots) {
		t.grow()
	}
	mask := len(t.slots) - 1
	i := t.home(key)
	for ; t.slots[i].used; i = (i + 1) & mask {
		if t.slots[i].key == key {
			t.slots[i].val = val
			return
		}
	}
	t.slots[i] = slot[V]{key: key, used: true, val: val}
	t.n++
}

// del removes key and returns the value it had.
func (t *table[V]) del(key uint32) (V, bool) {
	var zero V
	if len(t.slots) == 0 {
		return zero, false
	}
	mask := len(t.slots) - 1
	i := t.home(key)
	for ; t.slots[i].key != key; i = (i + 1) & mask {
		if !t.slots[i].used {
			return zero, false
		}
	}
	if !t.slots[i].used {
		return zero, false
	}
	val := t.slots[i].val
	// Shift later members of the probe run back over the hole, so every
	// key stays reachable from its home slot.
	for j := (i + 1) & mask; t.slots[j].used; j = (j + 1) & mask {
		h := t.home(t.slots[j].key)
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot[V]{}
	t.n--
	return val, true
}

// len returns the number of keys.
func (t *table[V]) len() int { return t.n }

func (t *table[V]) grow() {
	old := t.slots
	t.slots = make([]slot[V], max(16, 2*len(old)))
	t.n = 0
	for _, s := range old {
		if s.used {
			t.put(s.key, s.val)
		}
	}
}
