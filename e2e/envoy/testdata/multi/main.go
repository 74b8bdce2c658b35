// Command multi is the test plugin of several plugins in one host: every root
// context (one per plugin) takes its name and what it does from its plugin
// configuration ("<name> [tick] [share] [write] [read] [register] [send] [names]") and reports
// what it sees through headers and log lines.
package main

import (
	"strconv"
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

// roots counts the root contexts created on this VM.
var roots int

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	roots++
	return &plugin{}
}

type plugin struct {
	types.DefaultPluginContext
	name  string
	does  map[string]bool
	ticks int
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogError("no configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	fields := strings.Fields(string(cfg))
	if len(fields) == 0 {
		return types.OnPluginStartStatusFailed
	}
	p.name, p.does = fields[0], map[string]bool{}
	for _, f := range fields[1:] {
		p.does[f] = true
	}
	root, _ := proxywasm.GetProperty([]string{"plugin_root_id"})
	proxywasm.LogInfo("configure " + p.name + " root=" + string(root) + " roots=" + strconv.Itoa(roots))
	if p.does["tick"] {
		if err := proxywasm.SetTickPeriodMilliSeconds(5); err != nil {
			proxywasm.LogError("tick: " + err.Error())
		}
	}
	if p.does["share"] {
		if err := proxywasm.SetSharedData("multi-key", []byte("from "+p.name), 0); err != nil {
			proxywasm.LogError("share: " + err.Error())
		}
	}
	if p.does["register"] {
		if _, err := proxywasm.RegisterSharedQueue("multi-queue"); err != nil {
			proxywasm.LogError("register: " + err.Error())
		}
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() {
	p.ticks++
	if p.ticks == 1 {
		proxywasm.LogInfo("tick " + p.name)
	}
}

func (p *plugin) OnQueueReady(queueID uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if err != nil {
			return
		}
		proxywasm.LogInfo("queue " + p.name + " got " + string(item))
	}
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &httpContext{p: p} }

type httpContext struct {
	types.DefaultHttpContext
	p *plugin
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	if h.p.does["names"] {
		// The request's header names in the order the plugin gets them.
		hs, err := proxywasm.GetHttpRequestHeaders()
		var names []string
		for _, kv := range hs {
			names = append(names, kv[0])
		}
		if err != nil {
			names = append(names, err.Error())
		}
		_ = proxywasm.AddHttpRequestHeader("x-names", strings.Join(names, " "))
	}
	_ = proxywasm.AddHttpRequestHeader("x-order", h.p.name)
	if h.p.does["write"] {
		// The request's x-write value becomes the shared value.
		if v, err := proxywasm.GetHttpRequestHeader("x-write"); err == nil {
			if err := proxywasm.SetSharedData("multi-key", []byte(v), 0); err != nil {
				proxywasm.LogError("write: " + err.Error())
			}
		}
	}
	if h.p.does["read"] {
		v, _, err := proxywasm.GetSharedData("multi-key")
		if err != nil {
			v = []byte(err.Error())
		}
		_ = proxywasm.AddHttpRequestHeader("x-shared", string(v))
	}
	if h.p.does["send"] {
		vmID, _ := proxywasm.GetProperty([]string{"plugin_vm_id"})
		q, err := proxywasm.ResolveSharedQueue(string(vmID), "multi-queue")
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(q, []byte("from "+h.p.name))
		}
		res := "ok"
		if err != nil {
			res = err.Error()
		}
		_ = proxywasm.AddHttpRequestHeader("x-sent", res)
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	_ = proxywasm.AddHttpResponseHeader("x-resp-order", h.p.name)
	return types.ActionContinue
}
