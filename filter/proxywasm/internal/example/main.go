// Command example is a minimal filter that proves package proxywasm links
// into a wasip1 c-shared module: it adds a request header, counts requests
// and collects garbage from the plugin tick.
package main

import (
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	requests proxywasm.MetricCounter
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	p.requests = proxywasm.DefineCounterMetric("example_requests_total")
	if err := proxywasm.SetTickPeriodMilliSeconds(1000); err != nil {
		proxywasm.LogError("set tick period: " + err.Error())
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) OnTick() { proxywasm.CollectGarbageIfGrown(4 << 20) }

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	_ = h.plugin.requests.Increment(1)
	if err := proxywasm.AddHttpRequestHeader("x-example", "1"); err != nil {
		proxywasm.LogWarn("add header: " + err.Error())
	}
	return types.ActionContinue
}
