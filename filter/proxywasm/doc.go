// Package proxywasm binds Go filters to the proxy-wasm ABI v0.2.1 for the
// upstream Go compiler (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared).
//
// A filter registers its VM context from main or init with SetVMContext and
// implements the context interfaces of
// github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types. The host calls
// the module's proxy_on_* exports; this package routes each one to the
// context it names. The functions of this package (GetHttpRequestHeader,
// SendHttpResponse, DispatchHttpCall, ...) call the host and are valid only
// from inside such a callback: never from init, main or another goroutine,
// and never while the host is allocating memory.
//
// # Effective context
//
// The host scopes every call to the context whose callback is running.
// Envoy answers http and gRPC callouts with the plugin (root) context id,
// even when a stream made them. This package remembers which context made
// each callout and, before running its callback, switches the host to that
// stream with proxy_set_effective_context, so the callback can read and
// change the stream's headers and resume it. When the stream is gone by the
// time the answer arrives, the callback is dropped.
//
// # Reading host data in place
//
// Data a host returns (a header map, a buffer, shared data) arrives in a
// buffer the guest hands out from its allocator export, and the Get
// functions copy it out. The Peek functions (PeekHttpRequestHeaders,
// PeekHttpResponseHeaders, PeekHttpResponseHeader, PeekHttpRequestBody, PeekHttpResponseBody,
// PeekSharedData) return it in place instead, saving an allocation and a
// copy: the result is valid until the next call that returns data, which
// reuses the buffer. Calls that return no data (replacing or removing a
// header, sending a reply, the time, metrics, ...) leave it intact. Copy
// what must live longer (strings.Clone, append) before such a call. Natively
// the Get functions return data the caller owns, and what a Peek function
// returned is overwritten with abi.PoisonByte (0xDB) by the next call that
// returns data, so native tests catch a read of stale host data every time
// (in a VM it shows only when the new data lands where the old was).
//
// # Native tests
//
// Outside wasip1 the host functions are served by package proxytest, an
// in-process host that follows Envoy's behaviour where filters depend on it.
//
// # Garbage collection
//
// A wasip1 reactor whose callbacks never block does not finish collection
// cycles on its own. Call CollectGarbageIfGrown from the plugin's OnTick.
package proxywasm
