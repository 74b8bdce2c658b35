package limits

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func newConsumers(t testing.TB, store SharedData, max int) *Consumers {
	t.Helper()
	c, err := NewConsumers(store, "chat", max)
	require.NoError(t, err)
	return c
}

func TestConsumersOverflow(t *testing.T) {
	store := &MemorySharedData{}
	vm1 := newConsumers(t, store, 3)
	vm2 := newConsumers(t, store, 3)
	steps := []struct {
		vm      *Consumers
		value   string
		tracked bool
	}{
		{vm1, "alice", true},
		{vm1, "bob", true},
		{vm2, "alice", true}, // seen by another VM
		{vm1, "", false},
		{vm1, strings.Repeat("x", MaxConsumerLen+1), false},
		{vm2, "carol", true},
		{vm1, "dave", false}, // set full
		{vm1, "carol", true}, // learned from the full set
		{vm2, "dave", false},
		{vm2, "bob", true},
		{vm1, "alice", true},
	}
	for i, s := range steps {
		got, err := s.vm.Resolve(s.value)
		require.NoError(t, err, "step %d", i)
		require.Equal(t, s.tracked, got, "step %d %q", i, s.value)
	}
	require.Equal(t, 3, vm1.Tracked())
	require.Equal(t, 1+3, store.Len(), "the count and one key per tracked value")
}

func TestConsumersAgreeAcrossConcurrentVMs(t *testing.T) {
	store := &yieldingStore{}
	const max, values, vms = 10, 40, 8
	// Create the set before the race: its creation is an unconditional write
	// in Envoy (see Consumers), every later change is CAS-checked.
	ok, err := newConsumers(t, store, max).Resolve("user-0")
	require.NoError(t, err)
	require.True(t, ok)
	results := make([][]bool, vms)
	var wg sync.WaitGroup
	for w := range vms {
		c := newConsumers(t, store, max)
		c.maxRetries = 1 << 20
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := make([]bool, values)
			// Each VM sees all values in its own order (multipliers coprime
			// to values make permutations), twice.
			mult := [vms]int{1, 3, 7, 9, 11, 13, 17, 19}[w]
			for round := range 2 {
				for i := range values {
					v := (i*mult + w + round) % values
					ok, err := c.Resolve("user-" + strconv.Itoa(v))
					if err != nil {
						panic(err)
					}
					if round == 1 {
						res[v] = ok
					}
				}
			}
			results[w] = res
		}()
	}
	wg.Wait()
	tracked := 0
	for i := range values {
		for w := 1; w < vms; w++ {
			require.Equal(t, results[0][i], results[w][i], "vm %d disagrees on user-%d", w, i)
		}
		if results[0][i] {
			tracked++
		}
	}
	require.Equal(t, max, tracked)
}

func TestConsumersStoreError(t *testing.T) {
	boom := errors.New("host: internal failure")
	c := newConsumers(t, brokenStore{boom}, 3)
	ok, err := c.Resolve("alice")
	require.False(t, ok)
	require.ErrorIs(t, err, boom)
}

func TestConsumersContendedFallsToOverflow(t *testing.T) {
	c := newConsumers(t, &contendedStore{}, 3)
	ok, err := c.Resolve("alice")
	require.NoError(t, err)
	require.False(t, ok)
}

func TestConsumersReplaceForeignValue(t *testing.T) {
	store := &MemorySharedData{}
	c := newConsumers(t, store, 3)
	require.NoError(t, store.Set(c.countKey, []byte{0, 0, 0, 1, 9, 'x'}, 0))
	ok, err := c.Resolve("alice")
	require.NoError(t, err)
	require.True(t, ok)
}

func TestNewConsumersValidates(t *testing.T) {
	_, err := NewConsumers(&MemorySharedData{}, "chat", 0)
	require.EqualError(t, err, `limits: route "chat" maxConsumers: must be between 1 and 65536`)
}

func TestKnownConsumerAllocatesNothing(t *testing.T) {
	c := newConsumers(t, &MemorySharedData{}, 3)
	ok, err := c.Resolve("alice")
	require.NoError(t, err)
	require.True(t, ok)
	value := strings.Clone("alice")
	allocs := testing.AllocsPerRun(1000, func() {
		if ok, err := c.Resolve(value); !ok || err != nil {
			panic("unexpected")
		}
	})
	require.Zero(t, allocs)
}

// A value another VM has counted but whose key it has not written yet is in
// the count's recent admissions: a second VM admitting it at that moment finds
// it there and counts nothing, so no slot is spent twice.
func TestConsumersSameValueAdmittedOnce(t *testing.T) {
	store := &MemorySharedData{}
	vm1 := newConsumers(t, store, 2)
	ok, err := vm1.Resolve("alice")
	require.NoError(t, err)
	require.True(t, ok)
	// vm2 counts "bob" and stops before writing its key.
	v, cas, err := store.Get(vm1.countKey)
	require.NoError(t, err)
	n, recent, valid := decodeCount(v)
	require.True(t, valid)
	require.Equal(t, 1, n)
	require.NoError(t, store.Set(vm1.countKey, encodeCount(nil, n+1, "bob", recent), cas))

	ok, err = vm1.Resolve("bob")
	require.NoError(t, err)
	require.True(t, ok, "bob is in the recent admissions")
	v, _, err = store.Get(vm1.countKey)
	require.NoError(t, err)
	n, _, _ = decodeCount(v)
	require.Equal(t, 2, n, "bob was counted once")
	ok, err = newConsumers(t, store, 2).Resolve("bob")
	require.NoError(t, err)
	require.True(t, ok, "bob's key was written")
	ok, err = vm1.Resolve("carol")
	require.NoError(t, err)
	require.False(t, ok, "the set is full")
}

// The count keeps only the last recentAdmissions values, whatever was admitted.
func TestConsumersCountStaysSmall(t *testing.T) {
	store := &MemorySharedData{}
	c := newConsumers(t, store, MaxConsumers)
	for i := range 100 {
		ok, err := c.Resolve(strings.Repeat("v", MaxConsumerLen-3) + strconv.Itoa(100+i))
		require.NoError(t, err)
		require.True(t, ok)
	}
	v, _, err := store.Get(c.countKey)
	require.NoError(t, err)
	n, _, ok := decodeCount(v)
	require.True(t, ok)
	require.Equal(t, 100, n)
	require.LessOrEqual(t, len(v), 4+recentAdmissions*(1+MaxConsumerLen))
}

// A VM remembers at most maxLocalConsumers values; the others it finds in
// shared data on each request, and they stay tracked.
func TestConsumersLocalMemoryBounded(t *testing.T) {
	store := &MemorySharedData{}
	c := newConsumers(t, store, MaxConsumers)
	const n = maxLocalConsumers + 500
	for i := range n {
		ok, err := c.Resolve("user-" + strconv.Itoa(i))
		require.NoError(t, err)
		require.True(t, ok)
	}
	require.Equal(t, maxLocalConsumers, c.Tracked())
	for _, i := range []int{0, maxLocalConsumers - 1, maxLocalConsumers, n - 1} {
		ok, err := c.Resolve("user-" + strconv.Itoa(i))
		require.NoError(t, err)
		require.True(t, ok, "user-%d", i)
	}
	ok, err := newConsumers(t, store, MaxConsumers).Resolve("user-" + strconv.Itoa(n-1))
	require.NoError(t, err)
	require.True(t, ok)
}

// peekingStore reads values in place, as the filter's adapter does
// (proxywasm.PeekSharedData), instead of copying them.
type peekingStore struct{ MemorySharedData }

func (s *peekingStore) Get(key string) ([]byte, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return e.value, e.cas, nil
}

// An untracked value (the set is full) and a tracked one this VM does not
// remember cost no allocation either.
func TestResolveFromSharedDataAllocatesNothing(t *testing.T) {
	store := &peekingStore{}
	c := newConsumers(t, store, 1)
	ok, err := newConsumers(t, store, 1).Resolve("alice")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = c.Resolve("bob")
	require.NoError(t, err)
	require.False(t, ok)
	for _, v := range []string{"bob", "alice"} {
		want := v == "alice"
		allocs := testing.AllocsPerRun(100, func() {
			clear(c.known)
			if ok, err := c.Resolve(v); ok != want || err != nil {
				panic("unexpected")
			}
		})
		require.Zero(t, allocs, v)
	}
}

// BenchmarkConsumerAdmit is the first request of a new consumer value with
// tracked values already admitted: the cost must not grow with tracked.
func BenchmarkConsumerAdmit(b *testing.B) {
	for _, tracked := range []int{0, 10_000, 30_000, 60_000} {
		b.Run("tracked="+strconv.Itoa(tracked), func(b *testing.B) {
			var c *Consumers
			fresh := 0
			refill := func() {
				store := &MemorySharedData{}
				fill := newConsumers(b, store, MaxConsumers)
				for i := range tracked {
					if ok, _ := fill.Resolve("t-" + strconv.Itoa(i)); !ok {
						b.Fatal("not tracked")
					}
				}
				c = newConsumers(b, store, MaxConsumers)
				fresh = MaxConsumers - tracked
			}
			values := make([]string, 4096)
			for i := range values {
				values[i] = "new-" + strconv.Itoa(i)
			}
			refill()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if fresh == 0 || i%len(values) == 0 && i > 0 {
					b.StopTimer()
					refill()
					b.StartTimer()
				}
				fresh--
				if ok, err := c.Resolve(values[i%len(values)]); !ok || err != nil {
					b.Fatal("not admitted", err)
				}
			}
		})
	}
}
