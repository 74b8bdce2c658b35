// Command guest is the test plugin of package envoy: one proxy-wasm module whose
// behaviour is chosen by its plugin configuration (a mode name), each mode exercising
// one family of host calls. It reports what it saw through log lines and headers.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
	"google.golang.org/protobuf/encoding/protowire"
)

func main() {}

var garbage []byte

func init() { proxywasm.SetVMContext(&vmContext{}) }

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

type plugin struct {
	types.DefaultPluginContext
	mode     string
	requests proxywasm.MetricCounter
	tagged   proxywasm.MetricCounter
	sizes    proxywasm.MetricHistogram
	ticks    proxywasm.MetricCounter
	queue    uint32
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogError("no plugin configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.mode = string(cfg)
	proxywasm.LogInfo("started in mode " + p.mode)
	switch p.mode {
	case "startfail":
		proxywasm.LogError("refusing configuration")
		return types.OnPluginStartStatusFailed
	case "basic":
		p.requests = proxywasm.DefineCounterMetric("guest_requests_total")
		p.tagged = proxywasm.DefineCounterMetric("guest_calls_route=.=chat;.;_total")
		p.sizes = proxywasm.DefineHistogramMetric("guest_sizes")
		p.cas()
	case "tick":
		p.ticks = proxywasm.DefineCounterMetric("guest_ticks")
		if err := proxywasm.SetTickPeriodMilliSeconds(5); err != nil {
			proxywasm.LogError("tick: " + err.Error())
		}
	case "gc":
		// A runtime timer that never fires: it starts the Go netpoller.
		time.AfterFunc(time.Hour, func() {})
	case "queue":
		q, err := proxywasm.RegisterSharedQueue("jobs")
		if err != nil {
			proxywasm.LogError("register queue: " + err.Error())
		}
		p.queue = q
	}
	return types.OnPluginStartStatusOK
}

// cas checks compare-and-swap on shared data and logs each result.
func (p *plugin) cas() {
	if err := proxywasm.SetSharedData("k", []byte("v1"), 0); err != nil {
		proxywasm.LogError("cas set1: " + err.Error())
	}
	_, cas, err := proxywasm.GetSharedData("k")
	if err != nil {
		proxywasm.LogError("cas get: " + err.Error())
	}
	err = proxywasm.SetSharedData("k", []byte("v2"), cas+1)
	proxywasm.LogInfo("cas stale: " + errText(err))
	err = proxywasm.SetSharedData("k", []byte("v3"), cas)
	proxywasm.LogInfo("cas current: " + errText(err))
	v, _, _ := proxywasm.GetSharedData("k")
	proxywasm.LogInfo("cas value: " + string(v))
	_, _, err = proxywasm.GetSharedData("missing")
	proxywasm.LogInfo("cas missing: " + errText(err))
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func (p *plugin) OnTick() {
	if p.mode == "tick" {
		_ = p.ticks.Increment(1)
	}
}

func (p *plugin) OnQueueReady(id uint32) {
	for {
		d, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			proxywasm.LogInfo("queue drained: " + err.Error())
			return
		}
		proxywasm.LogInfo("dequeued " + string(d))
	}
}

func (p *plugin) NewHttpContext(id uint32) types.HttpContext {
	return &stream{p: p, id: id}
}

type stream struct {
	types.DefaultHttpContext
	p      *plugin
	id     uint32
	path   string
	chunks []string
}

func (s *stream) OnHttpRequestHeaders(n int, eos bool) types.Action {
	s.path, _ = proxywasm.GetHttpRequestHeader(":path")
	switch s.p.mode {
	case "basic":
		if err := s.p.requests.Increment(1); err != nil {
			proxywasm.LogError("increment: " + err.Error())
		}
		proxywasm.LogInfo("counter zero delta: " + errText(s.p.requests.Increment(0)))
		_ = s.p.tagged.Increment(2)
		_ = s.p.sizes.Record(7)
		_ = proxywasm.AddHttpRequestHeader("x-guest", "1")
		if s.path == "/deny" {
			_ = proxywasm.SendHttpResponse(403, [][2]string{{"x-denied", "yes"}}, []byte("denied"), -1)
			return types.ActionPause
		}
	case "reroute":
		_ = proxywasm.ReplaceHttpRequestHeader(":authority", "b.example")
		_ = proxywasm.ReplaceHttpRequestHeader(":path", "/rewritten")
	case "callout":
		_, err := proxywasm.DispatchHttpCall("nowhere", [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "x"}}, nil, nil, 1000, nil)
		proxywasm.LogInfo("unknown cluster: " + errText(err))
		_, err = proxywasm.DispatchHttpCall("side", [][2]string{{":method", "GET"}, {":path", "/side"}, {":authority", "side"}}, nil, nil, 5000,
			func(nh, bodySize, nt int) {
				body, _ := proxywasm.GetHttpCallResponseBody(0, bodySize)
				status, _ := proxywasm.GetHttpCallResponseHeader(":status")
				_ = proxywasm.AddHttpRequestHeader("x-callout", status+" "+string(body))
				_ = proxywasm.AddHttpRequestHeader("x-callout-sizes", strconv.Itoa(nh)+","+strconv.Itoa(bodySize)+","+strconv.Itoa(nt))
				_ = proxywasm.ResumeHttpRequest()
			})
		if err != nil {
			proxywasm.LogError("callout: " + err.Error())
			return types.ActionContinue
		}
		return types.ActionPause
	case "grpc":
		_, err := proxywasm.DispatchGrpcCall("nowhere", "test.Echo", "Say", nil, []byte("x"), 1000, proxywasm.GrpcCallbacks{})
		proxywasm.LogInfo("grpc unknown cluster: " + errText(err))
		_, err = proxywasm.DispatchGrpcCall("grpc", "test.Echo", "Say", [][2]string{{"x-md", "v"}}, []byte("ping"), 5000, proxywasm.GrpcCallbacks{
			OnMessage: func(size int) {
				msg, _ := proxywasm.GetGrpcCallResponseMessage(0, size)
				_ = proxywasm.AddHttpRequestHeader("x-grpc", string(msg))
				_ = proxywasm.ResumeHttpRequest()
			},
			OnClose: func(code uint32) {
				_, msg, _ := proxywasm.GetStatus()
				_ = proxywasm.AddHttpRequestHeader("x-grpc-error", strconv.Itoa(int(code))+" "+msg)
				_ = proxywasm.ResumeHttpRequest()
			},
		})
		if err != nil {
			proxywasm.LogError("grpc: " + err.Error())
			return types.ActionContinue
		}
		return types.ActionPause
	case "foreign":
		s.foreign()
	case "grpcstream":
		return s.grpcStream()
	case "holdbody":
		if !eos {
			return types.ActionPause // hold the headers until the body is read
		}
	case "queue":
		q, err := proxywasm.ResolveSharedQueue("guestvm", "jobs")
		if err != nil {
			proxywasm.LogError("resolve: " + err.Error())
			break
		}
		_ = proxywasm.EnqueueSharedQueue(q, []byte("job-"+strings.TrimPrefix(s.path, "/")))
	case "trap":
		if s.path == "/trap" {
			// A fatal runtime error cannot be recovered by the binding: the Go runtime
			// prints it to stderr and exits, which traps the VM.
			var mu sync.Mutex
			mu.Unlock()
		}
	case "gc":
		// Collect the way a filter keeps its heap small. Once the runtime's netpoller
		// has started (with its first timer, in a real filter the scavenger's after
		// some traffic; here at plugin start), every collection's start-the-world
		// polls it with WASI poll_oneoff.
		for i := 0; i < 1024; i++ {
			garbage = make([]byte, 16<<10)
		}
		runtime.GC()
		_ = proxywasm.AddHttpRequestHeader("x-gc", "done")
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(size int, eos bool) types.Action {
	if s.p.mode == "holdbody" {
		if !eos {
			return types.ActionPause
		}
		body, _ := proxywasm.GetHttpRequestBody(0, size)
		// The headers are still held, so they can be changed from the body.
		if strings.Contains(string(body), "to-b") {
			_ = proxywasm.ReplaceHttpRequestHeader(":authority", "b.example")
		}
		_ = proxywasm.AddHttpRequestHeader("x-body-len", strconv.Itoa(size))
		return types.ActionContinue
	}
	if s.p.mode != "buffer" {
		return types.ActionContinue
	}
	s.chunks = append(s.chunks, strconv.Itoa(size))
	if !eos {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil {
		proxywasm.LogError("body: " + err.Error())
	}
	_ = proxywasm.ReplaceHttpRequestBody([]byte(strings.ToUpper(string(body))))
	proxywasm.LogInfo("request body sizes " + strings.Join(s.chunks, ","))
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(n int, eos bool) types.Action {
	switch s.p.mode {
	case "basic":
		_ = proxywasm.AddHttpResponseHeader("x-resp", "ok")
		_, err := proxywasm.GetHttpRequestHeader(":path")
		proxywasm.LogInfo("request header in response phase: " + errText(err))
	case "replace":
		_ = proxywasm.SendHttpResponse(418, [][2]string{{"x-local", "1"}}, []byte("replaced"), -1)
		return types.ActionPause
	case "buffer":
		_ = proxywasm.RemoveHttpResponseHeader("content-length")
	case "route":
		// What the plugin sees of the route and the router's answer.
		md, err := proxywasm.GetProperty([]string{"route_metadata"})
		if err != nil {
			_ = proxywasm.AddHttpResponseHeader("x-route-metadata", "<"+err.Error()+">")
		} else {
			_ = proxywasm.AddHttpResponseHeader("x-route-metadata", hex.EncodeToString(md))
		}
		name, _ := proxywasm.GetProperty([]string{"xds", "route_name"})
		_ = proxywasm.AddHttpResponseHeader("x-route-name", string(name))
		status, _ := proxywasm.GetHttpResponseHeader(":status")
		_ = proxywasm.AddHttpResponseHeader("x-seen-status", status)
		st, _ := proxywasm.GetHttpResponseHeader("x-envoy-upstream-service-time")
		_ = proxywasm.AddHttpResponseHeader("x-seen-service-time", st)
		ns, _ := proxywasm.GetProperty([]string{"node", "metadata", "NAMESPACE"})
		_ = proxywasm.AddHttpResponseHeader("x-node-namespace", string(ns))
		for _, f := range []string{"mtls", "uri_san_peer_certificate", "subject_peer_certificate", "tls_version", "sha256_peer_certificate_digest"} {
			v, err := proxywasm.GetProperty([]string{"connection", f})
			if err != nil {
				_ = proxywasm.AddHttpResponseHeader("x-conn-"+f, "<"+err.Error()+">")
			} else {
				_ = proxywasm.AddHttpResponseHeader("x-conn-"+f, hex.EncodeToString(v))
			}
		}
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseBody(size int, eos bool) types.Action {
	if s.p.mode == "buffer" {
		if !eos {
			return types.ActionPause
		}
		body, _ := proxywasm.GetHttpResponseBody(0, size)
		_ = proxywasm.ReplaceHttpResponseBody(append([]byte("["), append(body, ']')...))
	}
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	if s.p.mode == "basic" {
		path, err := proxywasm.GetHttpRequestHeader(":path")
		status, _ := proxywasm.GetHttpResponseHeader(":status")
		proxywasm.LogInfo("log phase path=" + path + " status=" + status + " err=" + errText(err))
		prop := func(path ...string) string {
			v, err := proxywasm.GetProperty(path)
			if err != nil {
				return "<" + err.Error() + ">"
			}
			return string(v)
		}
		code, _ := proxywasm.GetProperty([]string{"response", "code"})
		codeText := "?"
		if len(code) == 8 {
			codeText = strconv.Itoa(int(binary.LittleEndian.Uint64(code)))
		}
		_, missing := proxywasm.GetProperty([]string{"request.path"})
		proxywasm.LogInfo("props: " + strings.Join([]string{prop("plugin_name"), prop("plugin_root_id"), prop("plugin_vm_id"),
			prop("request", "path"), prop("request", "method"), prop("xds", "cluster_name"), prop("xds", "route_name"),
			codeText, prop("request", "headers", "x-guest"), errText(missing)}, "|"))
	}
}

// foreign calls Envoy's foreign functions and logs what each answered.
func (s *stream) foreign() {
	var out []string
	note := func(name string, err error) { out = append(out, name+"="+strings.ReplaceAll(errText(err), " ", "_")) }
	text := []byte(strings.Repeat("shepherd ", 50))
	z, err := proxywasm.CallForeignFunction("compress", text)
	note("compress", err)
	back, err := proxywasm.CallForeignFunction("uncompress", z)
	note("uncompress", err)
	out = append(out, "roundtrip="+strconv.FormatBool(string(back) == string(text)), "smaller="+strconv.FormatBool(len(z) < len(text)))
	_, err = proxywasm.CallForeignFunction("uncompress", []byte("not zlib"))
	note("uncompress-garbage", err)
	_, err = proxywasm.CallForeignFunction("clear_route_cache", nil)
	note("clear_route_cache", err)
	fs := func(path, value string) []byte {
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendString(b, path)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		return protowire.AppendString(b, value)
	}
	_, err = proxywasm.CallForeignFunction("set_envoy_filter_state", fs("envoy.tcp_proxy.cluster", "side"))
	note("filter_state", err)
	v, err := proxywasm.GetProperty([]string{"envoy.tcp_proxy.cluster"})
	out = append(out, "filter_state_value="+string(v)+"/"+strings.ReplaceAll(errText(err), " ", "_"))
	_, err = proxywasm.CallForeignFunction("set_envoy_filter_state", fs("my.own.key", "x"))
	note("filter_state_unknown", err)
	decl := protowire.AppendTag(nil, 1, protowire.BytesType)
	decl = protowire.AppendString(decl, "guest_once")
	decl = protowire.AppendTag(decl, 5, protowire.VarintType)
	decl = protowire.AppendVarint(decl, 1)
	_, err = proxywasm.CallForeignFunction("declare_property", decl)
	note("declare", err)
	note("set1", proxywasm.SetProperty([]string{"guest_once"}, []byte("a")))
	note("set2", proxywasm.SetProperty([]string{"guest_once"}, []byte("b")))
	_, err = proxywasm.CallForeignFunction("expr_create", []byte("1 + 1"))
	note("expr_create", err)
	_, err = proxywasm.CallForeignFunction("no_such_function", nil)
	note("unknown", err)
	proxywasm.LogInfo("foreign: " + strings.Join(out, " "))
}

// grpcStream opens a bidirectional stream, sends two messages and records every
// event in the order the host delivers them; the record goes upstream as a header.
func (s *stream) grpcStream() types.Action {
	var events []string
	get := func(md [][2]string, k string) string {
		for _, p := range md {
			if p[0] == k {
				return p[1]
			}
		}
		return ""
	}
	id, err := proxywasm.OpenGrpcStream("grpc", "test.Echo", "Chat", [][2]string{{"x-md", "s"}}, proxywasm.GrpcCallbacks{
		OnInitialMetadata: func(int) {
			md, _ := proxywasm.GetGrpcCallInitialMetadata()
			events = append(events, "im:"+get(md, "x-server"))
		},
		OnMessage: func(size int) {
			msg, _ := proxywasm.GetGrpcCallResponseMessage(0, size)
			events = append(events, string(msg))
		},
		OnTrailingMetadata: func(int) {
			md, _ := proxywasm.GetGrpcCallTrailingMetadata()
			events = append(events, "tm:"+get(md, "x-trailer"))
		},
		OnClose: func(code uint32) {
			events = append(events, "close:"+strconv.Itoa(int(code)))
			_ = proxywasm.AddHttpRequestHeader("x-stream", strings.Join(events, ","))
			_ = proxywasm.ResumeHttpRequest()
		},
	})
	if err != nil {
		proxywasm.LogError("grpc stream: " + err.Error())
		return types.ActionContinue
	}
	_ = proxywasm.SendGrpcStreamMessage(id, []byte("a"), false)
	_ = proxywasm.SendGrpcStreamMessage(id, []byte("b"), true)
	return types.ActionPause
}
