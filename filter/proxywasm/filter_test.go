//go:build !wasip1

package proxywasm_test

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
)

// testVM is a small filter that exercises the binding. Its behaviour per
// stream is chosen by the request header x-mode.
type testVM struct {
	types.DefaultVMContext
	plugin *testPlugin
}

func (v *testVM) NewPluginContext(id uint32) types.PluginContext {
	v.plugin = &testPlugin{id: id}
	return v.plugin
}

type testPlugin struct {
	types.DefaultPluginContext
	id       uint32
	config   string
	requests proxywasm.MetricCounter
	inflight proxywasm.MetricGauge
	sizes    proxywasm.MetricHistogram
	queueID  uint32
	ticks    int
	received []string
	streams  map[uint32]*testHTTP
	deleted  []uint32
}

func (p *testPlugin) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		return types.OnPluginStartStatusFailed
	}
	p.config = string(cfg)
	p.requests = proxywasm.DefineCounterMetric("requests_total")
	p.inflight = proxywasm.DefineGaugeMetric("inflight")
	p.sizes = proxywasm.DefineHistogramMetric("body_bytes")
	if err := proxywasm.SetTickPeriodMilliSeconds(250); err != nil {
		return types.OnPluginStartStatusFailed
	}
	if p.queueID, err = proxywasm.RegisterSharedQueue("events"); err != nil {
		return types.OnPluginStartStatusFailed
	}
	p.streams = map[uint32]*testHTTP{}
	return types.OnPluginStartStatusOK
}

func (p *testPlugin) OnTick() {
	p.ticks++
	proxywasm.LogInfo("tick " + strconv.Itoa(p.ticks))
}

func (p *testPlugin) OnQueueReady(queueID uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if err != nil {
			return
		}
		p.received = append(p.received, string(item))
	}
}

func (p *testPlugin) NewHttpContext(id uint32) types.HttpContext {
	h := &testHTTP{id: id, plugin: p}
	p.streams[id] = h
	return h
}

// ReleaseHttpContext records the deletion (proxywasm.HttpContextReleaser).
func (p *testPlugin) ReleaseHttpContext(h types.HttpContext) {
	p.deleted = append(p.deleted, h.(*testHTTP).id)
}

type testHTTP struct {
	types.DefaultHttpContext
	id     uint32
	plugin *testPlugin
	mode   string
	// what the stream observed, for assertions
	got        map[string]string
	errs       map[string]error
	calloutRan bool
	doneRan    bool
}

func (h *testHTTP) note(k, v string) {
	if h.got == nil {
		h.got = map[string]string{}
	}
	h.got[k] = v
}

func (h *testHTTP) noteErr(k string, err error) {
	if h.errs == nil {
		h.errs = map[string]error{}
	}
	h.errs[k] = err
}

func (h *testHTTP) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	_ = h.plugin.requests.Increment(1)
	_ = h.plugin.inflight.Add(1)
	h.mode, _ = proxywasm.GetHttpRequestHeader("x-mode")
	h.note("numHeaders", strconv.Itoa(numHeaders))
	switch h.mode {
	case "headers":
		all, err := proxywasm.GetHttpRequestHeaders()
		h.noteErr("all", err)
		h.note("count", strconv.Itoa(len(all)))
		appended, err := proxywasm.AppendHttpRequestHeaders([][2]string{{"kept", "1"}})
		h.noteErr("append", err)
		h.note("appended", strconv.Itoa(len(appended))+" "+appended[0][0]+" "+appended[1][0])
		_, err = proxywasm.GetHttpRequestHeader("x-missing")
		h.noteErr("missing", err)
		h.noteErr("replace", proxywasm.ReplaceHttpRequestHeader(":authority", "relay.example"))
		h.noteErr("add", proxywasm.AddHttpRequestHeader("x-added", "yes"))
		h.noteErr("remove", proxywasm.RemoveHttpRequestHeader("authorization"))
	case "replace-all":
		h.noteErr("replace-all", proxywasm.ReplaceHttpRequestHeaders([][2]string{{":path", "/new"}, {"x-only", "1"}}))
	case "deny":
		h.noteErr("send", proxywasm.SendHttpResponse(429, [][2]string{{"retry-after", "1"}}, []byte("slow down"), -1))
		return types.ActionPause
	case "callout":
		_, err := proxywasm.DispatchHttpCall("sidecar",
			[][2]string{{":method", "GET"}, {":path", "/verdict"}, {":authority", "sidecar"}},
			nil, nil, 500, h.onVerdict)
		h.noteErr("dispatch", err)
		return types.ActionPause
	case "callout-bad":
		_, err := proxywasm.DispatchHttpCall("sidecar", [][2]string{{":path", "/x"}}, nil, nil, 500, h.onVerdict)
		h.noteErr("dispatch", err)
	case "grpc":
		_, err := proxywasm.DispatchGrpcCall("limiter", "shepherd.Limiter", "Check",
			[][2]string{{"x-tenant", "a"}}, []byte{0x0a, 0x01, 'k'}, 200, proxywasm.GrpcCallbacks{
				OnMessage: func(size int) {
					msg, err := proxywasm.GetGrpcCallResponseMessage(0, size)
					h.noteErr("grpc-read", err)
					h.noteErr("grpc-set", proxywasm.ReplaceHttpRequestHeader("x-limit", string(msg)))
					h.noteErr("grpc-resume", proxywasm.ResumeHttpRequest())
				},
				OnClose: func(code uint32) {
					_, msg, err := proxywasm.GetStatus()
					h.noteErr("grpc-status", err)
					h.note("grpc-close", strconv.FormatUint(uint64(code), 10)+" "+msg)
					h.noteErr("grpc-deny", proxywasm.SendHttpResponse(503, nil, nil, -1))
				},
			})
		h.noteErr("dispatch", err)
		return types.ActionPause
	case "shared":
		_, _, err := proxywasm.GetSharedData("bucket")
		h.noteErr("get-missing", err)
		h.noteErr("set-new", proxywasm.SetSharedData("bucket", []byte("10"), 0))
		v, cas, err := proxywasm.GetSharedData("bucket")
		h.noteErr("get", err)
		h.note("value", string(v))
		h.noteErr("set-cas", proxywasm.SetSharedData("bucket", []byte("9"), cas))
		h.noteErr("set-stale", proxywasm.SetSharedData("bucket", []byte("8"), cas))
	case "metrics":
		h.noteErr("zero", h.plugin.requests.Increment(0))
		h.noteErr("huge", h.plugin.requests.Increment(1<<63))
		h.noteErr("record", h.plugin.sizes.Record(42))
		h.note("value", strconv.FormatUint(h.plugin.requests.Value(), 10))
	case "queue":
		h.noteErr("enqueue", proxywasm.EnqueueSharedQueue(h.plugin.queueID, []byte("from-"+strconv.Itoa(int(h.id)))))
		h.note("before", strconv.Itoa(len(h.plugin.received)))
	case "property":
		v, err := proxywasm.GetProperty([]string{"xds", "route_name"})
		h.noteErr("get", err)
		h.note("route", string(v))
		_, err = proxywasm.GetProperty([]string{"nope"})
		h.noteErr("missing", err)
		h.noteErr("set", proxywasm.SetProperty([]string{"shepherd", "provider"}, []byte("relay")))
	}
	return types.ActionContinue
}

func (h *testHTTP) onVerdict(numHeaders, bodySize, numTrailers int) {
	h.calloutRan = true
	h.note("callout-sizes", strconv.Itoa(numHeaders)+"/"+strconv.Itoa(bodySize)+"/"+strconv.Itoa(numTrailers))
	h.note("callout-context", strconv.FormatUint(uint64(proxywasm.CurrentContextID()), 10))
	if numHeaders == 0 {
		code, msg, _ := proxywasm.GetStatus()
		h.note("callout-status", strconv.FormatUint(uint64(code), 10)+" "+msg)
		h.noteErr("fail-open", proxywasm.ResumeHttpRequest())
		return
	}
	verdict, err := proxywasm.GetHttpCallResponseHeader("x-verdict")
	h.noteErr("callout-header", err)
	body, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
	h.noteErr("callout-body", err)
	h.note("callout-body", string(body))
	// These touch the stream: they work only after the effective-context switch.
	h.noteErr("set-verdict", proxywasm.ReplaceHttpRequestHeader("x-verdict", verdict))
	h.noteErr("resume", proxywasm.ResumeHttpRequest())
}

func (h *testHTTP) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if h.mode != "body" {
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause
	}
	body, err := proxywasm.GetHttpRequestBody(0, bodySize)
	h.noteErr("get", err)
	h.note("body", string(body))
	_ = h.plugin.sizes.Record(uint64(bodySize))
	h.noteErr("replace", proxywasm.ReplaceHttpRequestBody(bytes.ToUpper(body)))
	h.noteErr("prepend", proxywasm.PrependHttpRequestBody([]byte("<")))
	h.noteErr("append", proxywasm.AppendHttpRequestBody([]byte(">")))
	part, err := proxywasm.GetHttpRequestBody(1, 3)
	h.noteErr("part", err)
	h.note("part", string(part))
	return types.ActionContinue
}

func (h *testHTTP) OnHttpResponseHeaders(int, bool) types.Action {
	status, err := proxywasm.GetHttpResponseHeader(":status")
	h.noteErr("status", err)
	if h.mode == "fallback" && status == "503" {
		h.noteErr("fallback", proxywasm.SendHttpResponse(200, [][2]string{{"content-type", "application/json"}}, []byte(`{"ok":true}`), -1))
		return types.ActionPause
	}
	h.noteErr("resp-add", proxywasm.AddHttpResponseHeader("x-shepherd", "1"))
	return types.ActionContinue
}

func (h *testHTTP) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	if h.mode == "body" {
		h.noteErr("resp-replace", proxywasm.ReplaceHttpResponseBody([]byte("rewritten")))
	}
	return types.ActionContinue
}

func (h *testHTTP) OnHttpStreamDone() {
	h.doneRan = true
	_ = h.plugin.inflight.Add(-1)
}

func start(t *testing.T, opt *proxytest.EmulatorOption) (*proxytest.HostEmulator, *testVM) {
	t.Helper()
	vm := &testVM{}
	host, reset := proxytest.NewHostEmulator(opt.WithVMContext(vm))
	t.Cleanup(reset)
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
	return host, vm
}

func TestLifecycleConfigAndMetrics(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption().WithPluginConfiguration([]byte(`{"routes":[]}`)))
	require.Equal(t, `{"routes":[]}`, vm.plugin.config)
	require.Equal(t, proxytest.RootContextID, vm.plugin.id)
	require.Equal(t, uint32(250), host.GetTickPeriod())

	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}}, true)
	n, err := host.GetCounterMetric("requests_total")
	require.NoError(t, err)
	require.Equal(t, uint64(1), n)
	g, err := host.GetGaugeMetric("inflight")
	require.NoError(t, err)
	require.Equal(t, int64(1), g)

	host.CompleteHttpContext(id)
	require.True(t, vm.plugin.streams[id].doneRan)
	g, err = host.GetGaugeMetric("inflight")
	require.NoError(t, err)
	require.Equal(t, int64(0), g)

	_, err = host.GetCounterMetric("nope")
	require.Error(t, err)
}

func TestHeaders(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	action := host.CallOnRequestHeaders(id, [][2]string{
		{":authority", "api.openai.com"}, {":path", "/v1/chat/completions"},
		{"Authorization", "Bearer client"}, {"x-mode", "headers"},
	}, false)
	require.Equal(t, types.ActionContinue, action)
	h := vm.plugin.streams[id]
	for k, err := range h.errs {
		if k == "missing" {
			require.ErrorIs(t, err, types.ErrorStatusNotFound)
			continue
		}
		require.NoError(t, err, k)
	}
	require.Equal(t, "4", h.got["count"])
	require.Equal(t, "5 kept :authority", h.got["appended"])
	require.Equal(t, "4", h.got["numHeaders"])
	require.Equal(t, [][2]string{
		{":authority", "relay.example"}, {":path", "/v1/chat/completions"},
		{"x-mode", "headers"}, {"x-added", "yes"},
	}, host.GetCurrentRequestHeaders(id))

	host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, false)
	require.Equal(t, [][2]string{{":status", "200"}, {"x-shepherd", "1"}}, host.GetCurrentResponseHeaders(id))
}

// A plugin that implements HttpContextReleaser gets each HTTP context back
// when the host deletes it, after which the binding delivers it nothing more.
func TestHttpContextReleaser(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}}, true)
	require.Empty(t, vm.plugin.deleted)
	host.CompleteHttpContext(id)
	require.Equal(t, []uint32{id}, vm.plugin.deleted)
	require.True(t, vm.plugin.streams[id].doneRan)
}

func TestReplaceAllHeaders(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":path", "/old"}, {"x-mode", "replace-all"}}, true)
	require.NoError(t, vm.plugin.streams[id].errs["replace-all"])
	require.Equal(t, [][2]string{{":path", "/new"}, {"x-only", "1"}}, host.GetCurrentRequestHeaders(id))
}

func TestBodyBufferingAndRewrite(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "body"}}, false)
	require.Equal(t, types.ActionPause, host.CallOnRequestBody(id, []byte("hello "), false))
	require.Equal(t, types.ActionContinue, host.CallOnRequestBody(id, []byte("world"), true))
	h := vm.plugin.streams[id]
	for k, err := range h.errs {
		require.NoError(t, err, k)
	}
	require.Equal(t, "hello world", h.got["body"], "paused chunks accumulate")
	require.Equal(t, "<HELLO WORLD>", string(host.GetCurrentRequestBody(id)))
	require.Equal(t, "HEL", h.got["part"])
	sizes, err := host.GetHistogramMetric("body_bytes")
	require.NoError(t, err)
	require.Equal(t, []uint64{11}, sizes)

	host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, false)
	host.CallOnResponseBody(id, []byte("original"), true)
	require.Equal(t, "rewritten", string(host.GetCurrentResponseBody(id)))
}

func TestLocalResponse(t *testing.T) {
	t.Run("deny on request", func(t *testing.T) {
		host, vm := start(t, proxytest.NewEmulatorOption())
		id := host.InitializeHttpContext()
		require.Equal(t, types.ActionPause, host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "deny"}}, true))
		require.NoError(t, vm.plugin.streams[id].errs["send"])
		resp := host.GetSentLocalResponse(id)
		require.NotNil(t, resp)
		require.Equal(t, uint32(429), resp.StatusCode)
		require.Equal(t, "slow down", string(resp.Data))
		require.Equal(t, [][2]string{{"retry-after", "1"}}, resp.Headers)
		require.Equal(t, int32(-1), resp.GrpcStatus)
	})
	t.Run("replaces upstream response", func(t *testing.T) {
		host, _ := start(t, proxytest.NewEmulatorOption())
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "fallback"}}, true)
		require.Nil(t, host.GetSentLocalResponse(id))
		require.Equal(t, types.ActionPause, host.CallOnResponseHeaders(id, [][2]string{{":status", "503"}}, false))
		resp := host.GetSentLocalResponse(id)
		require.NotNil(t, resp)
		require.Equal(t, uint32(200), resp.StatusCode)
		require.Equal(t, `{"ok":true}`, string(resp.Data))
	})
}

func TestHttpCalloutSwitchesToStream(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	require.Equal(t, types.ActionPause, host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}, {"x-mode", "callout"}}, true))
	h := vm.plugin.streams[id]
	require.NoError(t, h.errs["dispatch"])

	callouts := host.GetCalloutAttributesFromContext(id)
	require.Len(t, callouts, 1)
	require.Equal(t, "sidecar", callouts[0].Upstream)
	require.Equal(t, uint32(500), callouts[0].Timeout)
	require.Contains(t, callouts[0].Headers, [2]string{":path", "/verdict"})

	host.CallOnHttpCallResponse(callouts[0].CalloutID,
		[][2]string{{":status", "200"}, {"x-verdict", "allow"}}, nil, []byte("ok-body"))
	require.True(t, h.calloutRan)
	for k, err := range h.errs {
		require.NoError(t, err, k)
	}
	require.Equal(t, "2/7/0", h.got["callout-sizes"])
	require.Equal(t, strconv.Itoa(int(id)), h.got["callout-context"])
	require.Equal(t, "ok-body", h.got["callout-body"])
	require.Contains(t, host.GetCurrentRequestHeaders(id), [2]string{"x-verdict", "allow"})
	require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id), "callback resumed the stream")
	require.Empty(t, host.GetCalloutAttributesFromContext(id))
}

func TestHttpCalloutFailure(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "callout"}}, true)
	callouts := host.GetCalloutAttributesFromContext(id)
	require.Len(t, callouts, 1)
	host.FailHttpCall(callouts[0].CalloutID)
	h := vm.plugin.streams[id]
	require.Equal(t, "11 reset", h.got["callout-status"])
	require.NoError(t, h.errs["fail-open"])
	require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
}

func TestHttpCalloutAfterStreamEndsIsDropped(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "callout"}}, true)
	callouts := host.GetCalloutAttributesFromContext(id)
	require.Len(t, callouts, 1)
	host.CompleteHttpContext(id)
	host.CallOnHttpCallResponse(callouts[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
	require.False(t, vm.plugin.streams[id].calloutRan)
}

func TestHttpCalloutRequiresPseudoHeaders(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "callout-bad"}}, true)
	require.ErrorIs(t, vm.plugin.streams[id].errs["dispatch"], types.ErrorStatusBadArgument)
	require.Empty(t, host.GetCalloutAttributesFromContext(id))
}

func TestGrpcCallRoutesToStream(t *testing.T) {
	t.Run("message", func(t *testing.T) {
		host, vm := start(t, proxytest.NewEmulatorOption())
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "grpc"}}, true)
		h := vm.plugin.streams[id]
		require.NoError(t, h.errs["dispatch"])
		calls := host.GetGrpcCalloutAttributesFromContext(id)
		require.Len(t, calls, 1)
		c := calls[0]
		require.Equal(t, "limiter", c.Upstream)
		require.Equal(t, "shepherd.Limiter", c.Service)
		require.Equal(t, "Check", c.Method)
		require.Equal(t, [][2]string{{"x-tenant", "a"}}, c.InitialMetadata)
		require.Equal(t, [][]byte{{0x0a, 0x01, 'k'}}, c.Messages)

		host.CallOnGrpcReceive(c.ID, []byte("42"))
		for k, err := range h.errs {
			require.NoError(t, err, k)
		}
		require.Contains(t, host.GetCurrentRequestHeaders(id), [2]string{"x-limit", "42"})
		require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
		require.Empty(t, host.GetGrpcCalloutAttributesFromContext(id))
	})
	t.Run("close", func(t *testing.T) {
		host, vm := start(t, proxytest.NewEmulatorOption())
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "grpc"}}, true)
		calls := host.GetGrpcCalloutAttributesFromContext(id)
		require.Len(t, calls, 1)
		host.CallOnGrpcClose(calls[0].ID, 14, "unavailable")
		h := vm.plugin.streams[id]
		require.Equal(t, "14 unavailable", h.got["grpc-close"])
		require.NoError(t, h.errs["grpc-deny"])
		resp := host.GetSentLocalResponse(id)
		require.NotNil(t, resp)
		require.Equal(t, uint32(503), resp.StatusCode)
	})
}

func TestSharedDataCAS(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "shared"}}, true)
	h := vm.plugin.streams[id]
	require.ErrorIs(t, h.errs["get-missing"], types.ErrorStatusNotFound)
	require.NoError(t, h.errs["set-new"])
	require.NoError(t, h.errs["get"])
	require.Equal(t, "10", h.got["value"])
	require.NoError(t, h.errs["set-cas"])
	require.ErrorIs(t, h.errs["set-stale"], types.ErrorStatusCasMismatch)

	v, cas, err := host.GetSharedData("bucket")
	require.NoError(t, err)
	require.Equal(t, "9", string(v))
	require.ErrorIs(t, host.SetSharedData("bucket", []byte("x"), cas+1), types.ErrorStatusCasMismatch)
	require.NoError(t, host.SetSharedData("bucket", []byte("x"), cas))
}

func TestCountersRejectNonPositive(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "metrics"}}, true)
	h := vm.plugin.streams[id]
	require.ErrorIs(t, h.errs["zero"], types.ErrorStatusBadArgument)
	require.ErrorIs(t, h.errs["huge"], types.ErrorStatusBadArgument)
	require.NoError(t, h.errs["record"])
	require.Equal(t, "1", h.got["value"])
	n, err := host.GetCounterMetric("requests_total")
	require.NoError(t, err)
	require.Equal(t, uint64(1), n)
}

func TestTick(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption())
	host.Tick()
	host.Tick()
	require.Equal(t, 2, vm.plugin.ticks)
	require.Equal(t, []string{"tick 1", "tick 2"}, host.GetLogs(proxywasm.LogLevelInfo))
	require.Empty(t, host.GetLogs(proxywasm.LogLevelError))
}

func TestSharedQueue(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption().WithVMID("shepherd"))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "queue"}}, true)
	h := vm.plugin.streams[id]
	require.NoError(t, h.errs["enqueue"])
	require.Equal(t, "0", h.got["before"], "OnQueueReady runs after the callback, not inside it")
	require.Equal(t, []string{"from-" + strconv.Itoa(int(id))}, vm.plugin.received)

	q := host.RegisterSharedQueue("events")
	require.Equal(t, vm.plugin.queueID, q)
	require.NoError(t, host.EnqueueSharedQueue(q, []byte("external")))
	require.Equal(t, []string{"from-" + strconv.Itoa(int(id)), "external"}, vm.plugin.received)
	_, err := host.DequeueSharedQueue(q)
	require.ErrorIs(t, err, types.ErrorStatusEmpty)
}

func TestProperties(t *testing.T) {
	host, vm := start(t, proxytest.NewEmulatorOption().WithProperty([]string{"xds", "route_name"}, []byte("chat")))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-mode", "property"}}, true)
	h := vm.plugin.streams[id]
	require.NoError(t, h.errs["get"])
	require.Equal(t, "chat", h.got["route"])
	require.ErrorIs(t, h.errs["missing"], types.ErrorStatusNotFound)
	require.NoError(t, h.errs["set"])
	v, err := host.GetProperty([]string{"shepherd", "provider"})
	require.NoError(t, err)
	require.Equal(t, "relay", string(v))
}
