package envoy

// Emscripten leftovers proxy-wasm-cpp-host also provides (src/wasm.cc
// registerCallbacks): modules built with old toolchains import them.
var compatFuncs = []hostFunc{
	{name: "pthread_equal", fn: pthreadEqual},
	{name: "emscripten_notify_memory_growth", fn: emscriptenNotifyMemoryGrowth},
}

func pthreadEqual(a, b uint32) uint32 {
	if a == b {
		return 1
	}
	return 0
}

func emscriptenNotifyMemoryGrowth(uint32) {}
