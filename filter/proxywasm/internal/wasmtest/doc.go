// Package wasmtest checks the wasip1 half of package proxywasm: its tests
// build internal/example with GOOS=wasip1 and run it under wazero with a
// small host that implements just the functions the example imports, the
// way Envoy does (data handed back through a re-entrant
// proxy_on_memory_allocate, callouts answered on the root context).
//
// The full Envoy-faithful host lives in e2e; this one only proves that the
// pointers, wire formats and exports line up.
package wasmtest
