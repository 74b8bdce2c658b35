// Command chunkread is a proxy-wasm module that reads each response body
// chunk in place as it passes (proxy_get_buffer_bytes, whose answer arrives
// through the module's proxy_on_memory_allocate) and does nothing else: the
// floor of any filter that looks at a stream's events, which the stream
// benchmarks compare the filter's body callback with.
package main

import (
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct{ types.DefaultPluginContext }

func (*pluginContext) NewHttpContext(uint32) types.HttpContext { return &httpContext{} }

type httpContext struct {
	types.DefaultHttpContext
	bytes int
}

func (h *httpContext) OnHttpResponseBody(size int, _ bool) types.Action {
	if size == 0 {
		return types.ActionContinue
	}
	b, err := proxywasm.PeekHttpResponseBody(0, size)
	if err != nil {
		return types.ActionContinue
	}
	h.bytes += len(b)
	return types.ActionContinue
}
