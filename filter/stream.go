package main

import (
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/routing"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// stream is one HTTP request through the filter.
type stream struct {
	types.DefaultHttpContext
	plugin *plugin
}

// OnHttpRequestHeaders routes the request: it rewrites :authority and :path to the
// route's provider and replaces any client credential with the provider's. Envoy
// clears its route cache when these headers change, so the request is re-routed to
// the provider's cluster. Requests no route matches pass through untouched.
func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	cfg := s.plugin.cfg
	if cfg == nil {
		return types.ActionContinue
	}
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil {
		return types.ActionContinue
	}
	d, ok := routing.Decide(cfg, path, requestHeader, 0)
	if !ok {
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceHttpRequestHeader(":authority", d.Authority()); err != nil {
		proxywasm.LogError("shepherd: route " + d.Route.Name + ": rewriting :authority: " + err.Error())
		return types.ActionContinue
	}
	if d.PathChanged() {
		if err := proxywasm.ReplaceHttpRequestHeader(":path", d.Path()); err != nil {
			proxywasm.LogError("shepherd: route " + d.Route.Name + ": rewriting :path: " + err.Error())
		}
	}
	// The client's own credential never reaches a provider.
	_ = proxywasm.RemoveHttpRequestHeader("authorization")
	if auth := d.Provider.Authorization; auth != "" {
		_ = proxywasm.ReplaceHttpRequestHeader("authorization", auth)
	}
	s.plugin.requests[d.Route.Index].Increment(1)
	return types.ActionContinue
}

// OnHttpStreamDone gives the collector a chance at stream end, so a busy VM does
// not wait for the next tick.
func (s *stream) OnHttpStreamDone() { proxywasm.CollectGarbageIfGrown(gcThreshold) }

// requestHeader reads a request header for route matching.
func requestHeader(name string) (string, bool) {
	v, err := proxywasm.GetHttpRequestHeader(name)
	return v, err == nil
}
