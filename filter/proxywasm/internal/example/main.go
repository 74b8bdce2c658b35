// Command example is a minimal filter that proves package proxywasm links
// into a wasip1 c-shared module and exercises its wasm-side paths: header
// maps handed back through proxy_on_memory_allocate, an http callout whose
// answer arrives on the root context, metrics, garbage collection from the
// plugin tick, and recovery from a panicking callback.
package main

import (
	"strconv"

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
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

// OnTick collects garbage once 1 MiB has been allocated since the last
// collection.
func (p *pluginContext) OnTick() {
	if proxywasm.CollectGarbageIfGrown(1 << 20) {
		proxywasm.LogDebug("gc")
	}
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

// OnHttpRequestHeaders adds x-example with the number of request headers.
// When the request names a cluster in x-callout, it asks that cluster and
// pauses until the answer, whose body it copies into x-callout-body.
func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	_ = h.plugin.requests.Increment(1)
	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		proxywasm.LogWarn("get headers: " + err.Error())
		return types.ActionContinue
	}
	if err := proxywasm.AddHttpRequestHeader("x-example", strconv.Itoa(len(headers))); err != nil {
		proxywasm.LogWarn("add header: " + err.Error())
	}
	if _, err := proxywasm.GetHttpRequestHeader("x-panic"); err == nil {
		// Lets tests check that a panicking callback leaves the VM usable.
		panic("x-panic requested")
	}
	cluster, err := proxywasm.GetHttpRequestHeader("x-callout")
	if err != nil {
		return types.ActionContinue
	}
	_, err = proxywasm.DispatchHttpCall(cluster,
		[][2]string{{":method", "GET"}, {":path", "/"}, {":authority", cluster}}, nil, nil, 1000,
		func(numHeaders, bodySize, numTrailers int) {
			body, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
			if err != nil {
				proxywasm.LogWarn("callout body: " + err.Error())
			}
			if err := proxywasm.ReplaceHttpRequestHeader("x-callout-body", string(body)); err != nil {
				proxywasm.LogWarn("set header: " + err.Error())
			}
			if err := proxywasm.ResumeHttpRequest(); err != nil {
				proxywasm.LogWarn("resume: " + err.Error())
			}
		})
	if err != nil {
		proxywasm.LogWarn("dispatch: " + err.Error())
		return types.ActionContinue
	}
	return types.ActionPause
}
