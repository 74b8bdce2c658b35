package main

import (
	"os"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

const (
	// tickMillis is how often the plugin context wakes to let the collector run.
	tickMillis = 1000
	// gcThreshold is how many bytes may be allocated between collections. The
	// collector does not finish cycles by itself in a reactor whose callbacks never
	// block; a bound here bounds each VM's heap.
	gcThreshold = 4 << 20
)

// vm is the filter's VM context: one per Wasm VM (Envoy worker).
type vm struct{ types.DefaultVMContext }

// NewPluginContext is called once per plugin configuration on this VM.
func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

// plugin holds the validated config and the metrics defined for it. Its fields are
// replaced as a whole on reconfigure and only read by streams.
type plugin struct {
	types.DefaultPluginContext
	cfg *config.Config
	// requests holds the request counter of each (route, provider) pair, indexed
	// like cfg.Routes.
	requests []proxywasm.MetricCounter
}

// OnPluginStart validates the pluginConfig. A bad config fails the start with a
// log line naming the field; Envoy then keeps the previous config, or applies the
// plugin's fail_open setting when there is none.
func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCritical("shepherd: reading pluginConfig: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	cfg, err := config.Parse(data, os.LookupEnv)
	if err != nil {
		proxywasm.LogCritical("shepherd: invalid pluginConfig: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	requests := make([]proxywasm.MetricCounter, len(cfg.Routes))
	for i, r := range cfg.Routes {
		requests[i] = proxywasm.DefineCounterMetric(telemetry.RouteProvider(telemetry.Requests, r.Name, r.Provider.Name))
		if err := requests[i].Err(); err != nil {
			proxywasm.LogCritical("shepherd: defining metrics: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	p.cfg, p.requests = cfg, requests
	if err := proxywasm.SetTickPeriodMilliSeconds(tickMillis); err != nil {
		proxywasm.LogWarn("shepherd: no tick, garbage is collected at stream end only: " + err.Error())
	}
	proxywasm.LogInfo("shepherd: configured " + itoa(len(cfg.Routes)) + " routes, " + itoa(len(cfg.Providers)) + " providers")
	return types.OnPluginStartStatusOK
}

// OnTick lets the collector run when enough has been allocated.
func (p *plugin) OnTick() { proxywasm.CollectGarbageIfGrown(gcThreshold) }

// NewHttpContext is called for every HTTP stream.
func (p *plugin) NewHttpContext(uint32) types.HttpContext {
	return &stream{plugin: p}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
