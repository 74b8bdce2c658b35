package proxywasm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

var sink []byte

func TestCollectGarbageIfGrown(t *testing.T) {
	CollectGarbageIfGrown(0) // establish a baseline
	require.False(t, CollectGarbageIfGrown(1<<40), "nothing near 1 TiB was allocated")
	for i := 0; i < 64; i++ {
		sink = make([]byte, 64<<10)
	}
	require.True(t, CollectGarbageIfGrown(1<<20), "4 MiB allocated crosses a 1 MiB threshold")
	require.False(t, CollectGarbageIfGrown(1<<20), "the baseline moved to the collection")
}

// BenchmarkCollectGarbageIfGrownCheck measures the check alone (threshold
// never reached), which is what most ticks pay.
func BenchmarkCollectGarbageIfGrownCheck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		CollectGarbageIfGrown(1 << 62)
	}
}
