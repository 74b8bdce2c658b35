// Command bodyread is a proxy-wasm module that reads each request body whole
// into the VM and does nothing else: the reference for the filter's cost per
// body byte (BenchmarkCurves). It buffers the body as the filter does (pause
// until its end), then copies it into a buffer it keeps, the copy no filter
// that reads bodies avoids.
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

func (h *httpContext) OnHttpRequestBody(size int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	proxywasm.ReserveScratch(size)
	b, err := proxywasm.PeekHttpRequestBody(0, size)
	if err != nil {
		return types.ActionContinue
	}
	h.bytes = len(b)
	return types.ActionContinue
}
