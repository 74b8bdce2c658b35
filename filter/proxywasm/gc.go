package proxywasm

import (
	"runtime"
	"runtime/metrics"
)

// In a wasip1 reactor whose callbacks never block, the Go collector does not
// finish a cycle by itself and the heap grows until the VM dies. The filter
// therefore collects explicitly, from the plugin context's OnTick.

var (
	gcSample   = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	gcBaseline uint64
	memSample  = []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
)

// MemoryBytes returns the memory the Go runtime has mapped in this VM (its
// heap, stacks and runtime structures): in a wasm VM, the linear memory it
// has grown, which never shrinks. One runtime/metrics sample, no
// stop-the-world.
func MemoryBytes() uint64 {
	metrics.Read(memSample)
	if memSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return memSample[0].Value.Uint64()
}

// CollectGarbageIfGrown runs runtime.GC when at least thresholdBytes have
// been allocated since the last collection it ran, and reports whether it
// did. Checking is cheap (one runtime/metrics sample, no stop-the-world), so
// it can run on every tick. The collector's stop-the-world calls WASI
// poll_oneoff, which hosts without proxy-wasm-cpp-host PR #533 answer with
// ENOSYS; see the package README for the Envoy versions that are safe.
func CollectGarbageIfGrown(thresholdBytes uint64) bool {
	metrics.Read(gcSample)
	if gcSample[0].Value.Kind() != metrics.KindUint64 {
		return false
	}
	allocated := gcSample[0].Value.Uint64()
	if allocated-gcBaseline < thresholdBytes {
		return false
	}
	runtime.GC()
	metrics.Read(gcSample)
	gcBaseline = gcSample[0].Value.Uint64()
	return true
}
