package proxywasm

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The table agrees with a Go map under random puts and deletes, including
// keys that collide and runs that wrap around the end of the slots.
func TestTableAgreesWithMap(t *testing.T) {
	for _, keys := range []uint32{8, 64, 5000} {
		var tab table[int]
		ref := map[uint32]int{}
		rng := rand.New(rand.NewPCG(1, uint64(keys)))
		for i := range 200_000 {
			k := rng.Uint32N(keys) + 1
			switch rng.IntN(3) {
			case 0, 1:
				tab.put(k, i)
				ref[k] = i
			case 2:
				got, ok := tab.del(k)
				want, wok := ref[k]
				require.Equal(t, wok, ok)
				require.Equal(t, want, got)
				delete(ref, k)
			}
			if i%997 == 0 {
				require.Equal(t, len(ref), tab.len())
				for k, v := range ref {
					got, ok := tab.get(k)
					require.True(t, ok, "key %d lost", k)
					require.Equal(t, v, got)
				}
			}
		}
		for k := range ref {
			_, ok := tab.del(k)
			require.True(t, ok)
		}
		require.Zero(t, tab.len())
		_, ok := tab.get(1)
		require.False(t, ok)
	}
}

func TestZeroTable(t *testing.T) {
	var tab table[string]
	_, ok := tab.get(7)
	require.False(t, ok)
	_, ok = tab.del(7)
	require.False(t, ok)
	tab.put(0, "zero key")
	v, ok := tab.get(0)
	require.True(t, ok)
	require.Equal(t, "zero key", v)
}
