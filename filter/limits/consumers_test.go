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
	require.Equal(t, 1, store.Len())
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
	require.NoError(t, store.Set(c.key, []byte{0, 9, 'x'}, 0))
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
