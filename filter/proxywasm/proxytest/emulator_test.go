//go:build !wasip1

package proxytest_test

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
)

// scripted is a filter whose callbacks run the test's closures.
type scripted struct {
	types.DefaultVMContext
	reqHeaders func() types.Action
	reqBody    func(size int, eos bool) types.Action
	tick       func()
	pluginDone func() bool
	tcp        bool
	downstream func(size int, eos bool) types.Action
	closed     []types.PeerType
}

func (s *scripted) NewPluginContext(uint32) types.PluginContext { return &scriptedPlugin{s: s} }

type scriptedPlugin struct {
	types.DefaultPluginContext
	s *scripted
}

func (p *scriptedPlugin) OnTick() {
	if p.s.tick != nil {
		p.s.tick()
	}
}

func (p *scriptedPlugin) OnPluginDone() bool {
	if p.s.pluginDone != nil {
		return p.s.pluginDone()
	}
	return true
}

func (p *scriptedPlugin) NewHttpContext(uint32) types.HttpContext {
	if p.s.tcp {
		return nil
	}
	return &scriptedHTTP{s: p.s}
}

func (p *scriptedPlugin) NewTcpContext(uint32) types.TcpContext {
	return &scriptedTCP{s: p.s}
}

type scriptedHTTP struct {
	types.DefaultHttpContext
	s *scripted
}

func (h *scriptedHTTP) OnHttpRequestHeaders(int, bool) types.Action {
	if h.s.reqHeaders != nil {
		return h.s.reqHeaders()
	}
	return types.ActionContinue
}

func (h *scriptedHTTP) OnHttpRequestBody(size int, eos bool) types.Action {
	if h.s.reqBody != nil {
		return h.s.reqBody(size, eos)
	}
	return types.ActionContinue
}

type scriptedTCP struct {
	types.DefaultTcpContext
	s *scripted
}

func (t *scriptedTCP) OnDownstreamData(size int, eos bool) types.Action {
	if t.s.downstream != nil {
		return t.s.downstream(size, eos)
	}
	return types.ActionContinue
}

func (t *scriptedTCP) OnDownstreamClose(p types.PeerType) { t.s.closed = append(t.s.closed, p) }

func run(t *testing.T, s *scripted, opt *proxytest.EmulatorOption) *proxytest.HostEmulator {
	t.Helper()
	if opt == nil {
		opt = proxytest.NewEmulatorOption()
	}
	host, reset := proxytest.NewHostEmulator(opt.WithVMContext(s))
	t.Cleanup(reset)
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin())
	return host
}

func TestBodyWritesFollowEnvoy(t *testing.T) {
	tests := []struct {
		name  string
		write func() error
		want  string
		err   error
	}{
		{"replace", func() error { return proxywasm.ReplaceHttpRequestBody([]byte("new")) }, "new", nil},
		{"prepend", func() error { return proxywasm.PrependHttpRequestBody([]byte(">")) }, ">abcdef", nil},
		{"append", func() error { return proxywasm.AppendHttpRequestBody([]byte("<")) }, "abcdef<", nil},
		{"replace with empty", func() error { return proxywasm.ReplaceHttpRequestBody(nil) }, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			host := run(t, &scripted{reqBody: func(int, bool) types.Action {
				err = tt.write()
				return types.ActionContinue
			}}, nil)
			id := host.InitializeHttpContext()
			host.CallOnRequestBody(id, []byte("abcdef"), true)
			require.Equal(t, tt.err, err)
			require.Equal(t, tt.want, string(host.GetCurrentRequestBody(id)))
		})
	}
}

func TestGetBodyBounds(t *testing.T) {
	var got, past []byte
	var errs []error
	host := run(t, &scripted{reqBody: func(size int, _ bool) types.Action {
		b, err := proxywasm.GetHttpRequestBody(2, 100)
		got, errs = b, append(errs, err)
		past, err = proxywasm.GetHttpRequestBody(size+1, 1)
		errs = append(errs, err)
		_, err = proxywasm.GetHttpRequestBody(-1, 1)
		errs = append(errs, err)
		return types.ActionContinue
	}}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestBody(id, []byte("abcdef"), true)
	require.Equal(t, "cdef", string(got), "reads are clamped to the buffer")
	require.NoError(t, errs[0])
	require.NoError(t, errs[1], "a start past the end reads nothing, as in proxy-wasm-cpp-host")
	require.Empty(t, past)
	require.ErrorIs(t, errs[2], types.ErrorStatusBadArgument, "the binding rejects negative offsets")
}

func TestHeaderReplaceCollapsesDuplicates(t *testing.T) {
	host := run(t, &scripted{reqHeaders: func() types.Action {
		_ = proxywasm.ReplaceHttpRequestHeader("X-Dup", "one")
		return types.ActionContinue
	}}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-dup", "a"}, {"x-keep", "k"}, {"x-dup", "b"}}, true)
	require.Equal(t, [][2]string{{"x-dup", "one"}, {"x-keep", "k"}}, host.GetCurrentRequestHeaders(id))
}

func TestRootContextHasNoStream(t *testing.T) {
	var errs []error
	var all [][2]string
	host := run(t, &scripted{tick: func() {
		var err error
		all, err = proxywasm.GetHttpRequestHeaders()
		errs = append(errs, err)
		_, err = proxywasm.GetHttpRequestHeader(":path")
		errs = append(errs, err)
		errs = append(errs, proxywasm.ReplaceHttpRequestHeader("x", "y"))
		errs = append(errs, proxywasm.ResumeHttpRequest())
		errs = append(errs, proxywasm.SetEffectiveContext(999))
	}}, nil)
	host.Tick()
	require.NoError(t, errs[0], "Envoy lists an unavailable map as empty")
	require.Empty(t, all)
	require.ErrorIs(t, errs[1], types.ErrorStatusBadArgument, "the root context has no header maps")
	require.ErrorIs(t, errs[2], types.ErrorStatusBadArgument)
	require.NoError(t, errs[3], "Envoy accepts continue on the root context and does nothing")
	require.ErrorIs(t, errs[4], types.ErrorStatusBadArgument)
}

func TestLogLevelAndLogs(t *testing.T) {
	var level proxywasm.LogLevel
	host := run(t, &scripted{tick: func() {
		level, _ = proxywasm.GetLogLevel()
		proxywasm.LogTrace("t")
		proxywasm.LogDebug("d")
		proxywasm.LogWarn("w")
		proxywasm.LogError("e")
		proxywasm.LogCritical("c")
	}}, proxytest.NewEmulatorOption().WithLogLevel(proxywasm.LogLevelWarn))
	host.Tick()
	require.Equal(t, proxywasm.LogLevelWarn, level)
	require.Equal(t, "warn", level.String())
	for l, want := range map[proxywasm.LogLevel]string{
		proxywasm.LogLevelTrace: "t", proxywasm.LogLevelDebug: "d", proxywasm.LogLevelWarn: "w",
		proxywasm.LogLevelError: "e", proxywasm.LogLevelCritical: "c",
	} {
		require.Equal(t, []string{want}, host.GetLogs(l))
	}
	require.Empty(t, host.GetLogs(proxywasm.LogLevelInfo))
}

func TestPluginDoneLater(t *testing.T) {
	var doneErr error
	s := &scripted{pluginDone: func() bool { return false }}
	s.tick = func() { doneErr = proxywasm.Done() }
	host := run(t, s, nil)
	require.False(t, host.FinishVM())
	require.False(t, host.IsPluginDone())
	host.Tick()
	require.NoError(t, doneErr)
	require.True(t, host.IsPluginDone())
	host.Tick()
	require.ErrorIs(t, doneErr, types.ErrorStatusNotFound, "nothing pending any more")
}

func TestGrpcStream(t *testing.T) {
	var (
		streamID uint32
		events   []string
		errs     []error
	)
	host := run(t, &scripted{reqHeaders: func() types.Action {
		var err error
		streamID, err = proxywasm.OpenGrpcStream("policy", "shepherd.Policy", "Watch", nil, proxywasm.GrpcCallbacks{
			OnInitialMetadata: func(n int) {
				md, err := proxywasm.GetGrpcCallInitialMetadata()
				errs = append(errs, err)
				events = append(events, "initial:"+md[0][1])
			},
			OnMessage: func(size int) {
				m, err := proxywasm.GetGrpcCallResponseMessage(0, size)
				errs = append(errs, err)
				events = append(events, "message:"+string(m))
			},
			OnTrailingMetadata: func(n int) {
				md, err := proxywasm.GetGrpcCallTrailingMetadata()
				errs = append(errs, err)
				events = append(events, "trailing:"+md[0][0])
			},
			OnClose: func(code uint32) {
				_, msg, err := proxywasm.GetStatus()
				errs = append(errs, err)
				events = append(events, "close:"+msg)
			},
		})
		errs = append(errs, err)
		errs = append(errs, proxywasm.SendGrpcStreamMessage(streamID, []byte("hello"), false))
		errs = append(errs, proxywasm.CloseGrpcCall(streamID))
		return types.ActionContinue
	}}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, true)
	calls := host.GetGrpcCalloutAttributesFromContext(id)
	require.Len(t, calls, 1)
	require.True(t, calls[0].Stream)
	require.True(t, calls[0].LocalClosed)
	require.Equal(t, [][]byte{[]byte("hello")}, calls[0].Messages)
	require.Zero(t, streamID%2, "Envoy gives streams even ids")

	host.CallOnGrpcReceiveInitialMetadata(streamID, [][2]string{{"x-v", "7"}})
	host.CallOnGrpcReceive(streamID, []byte("w1"))
	host.CallOnGrpcReceive(streamID, []byte("w2"))
	host.CallOnGrpcReceiveTrailingMetadata(streamID, [][2]string{{"grpc-status", "0"}})
	host.CallOnGrpcClose(streamID, 0, "done")
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, []string{"initial:7", "message:w1", "message:w2", "trailing:grpc-status", "close:done"}, events)
	require.Empty(t, host.GetGrpcCalloutAttributesFromContext(id))
}

func TestGrpcCancelStopsCallbacks(t *testing.T) {
	var callID uint32
	var cancelErr, sendErr error
	ran := false
	host := run(t, &scripted{reqHeaders: func() types.Action {
		callID, _ = proxywasm.DispatchGrpcCall("limiter", "s", "m", nil, []byte("x"), 100,
			proxywasm.GrpcCallbacks{OnMessage: func(int) { ran = true }})
		sendErr = proxywasm.SendGrpcStreamMessage(callID, nil, false)
		cancelErr = proxywasm.CancelGrpcCall(callID)
		return types.ActionContinue
	}}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, true)
	require.ErrorIs(t, sendErr, types.ErrorStatusBadArgument, "calls are not streams")
	require.NoError(t, cancelErr)
	require.Equal(t, uint32(1), callID%2, "Envoy gives calls odd ids")
	require.Empty(t, host.GetGrpcCalloutAttributesFromContext(id))
	require.False(t, ran)
}

func TestGrpcUnknownUpstream(t *testing.T) {
	var err error
	host := run(t, &scripted{reqHeaders: func() types.Action {
		_, err = proxywasm.DispatchGrpcCall("", "s", "m", nil, nil, 100, proxywasm.GrpcCallbacks{})
		return types.ActionContinue
	}}, nil)
	host.CallOnRequestHeaders(host.InitializeHttpContext(), nil, true)
	require.ErrorIs(t, err, proxywasm.ErrParseFailure)
}

func TestTCP(t *testing.T) {
	var seen string
	s := &scripted{tcp: true}
	s.downstream = func(size int, eos bool) types.Action {
		b, _ := proxywasm.GetDownstreamData(0, size)
		seen = string(b)
		if !eos {
			return types.ActionPause
		}
		_ = proxywasm.ReplaceDownstreamData([]byte("PING"))
		return types.ActionContinue
	}
	host := run(t, s, nil)
	id, action := host.InitializeTcpContext()
	require.Equal(t, types.ActionContinue, action)
	require.Equal(t, types.ActionPause, host.CallOnDownstreamData(id, []byte("pi"), false))
	require.Equal(t, types.ActionContinue, host.CallOnDownstreamData(id, []byte("ng"), true))
	require.Equal(t, "ping", seen)
	require.Equal(t, "PING", string(host.GetCurrentDownstreamData(id)))
	host.CloseDownstreamConnection(id, types.PeerTypeRemote)
	require.Equal(t, []types.PeerType{types.PeerTypeRemote}, s.closed)
	host.CompleteTcpContext(id)
}

func TestMetricsGaugeAndUndefined(t *testing.T) {
	var gaugeErr error
	var g proxywasm.MetricGauge
	host := run(t, &scripted{tick: func() {
		g = proxywasm.DefineGaugeMetric("queue_depth")
		_ = g.Add(5)
		_ = g.Add(-2)
		gaugeErr = g.Set(10)
		_ = g.Add(-4)
	}}, nil)
	host.Tick()
	require.NoError(t, gaugeErr)
	v, err := host.GetGaugeMetric("queue_depth")
	require.NoError(t, err)
	require.Equal(t, int64(6), v)
	_, err = host.GetHistogramMetric("queue_depth")
	require.Error(t, err, "a gauge is not a histogram")
}

func TestEncodedMapsAreNotAliased(t *testing.T) {
	// The binding reuses one buffer to encode maps; what the host keeps
	// from one call must survive the next.
	host := run(t, &scripted{reqHeaders: func() types.Action {
		_ = proxywasm.SendHttpResponse(403, [][2]string{{"x-reason", "denied"}}, nil, -1)
		_ = proxywasm.ReplaceHttpRequestHeaders([][2]string{{"x-other", "zzzzzzzzzzzz"}})
		_, _ = proxywasm.DispatchHttpCall("c", [][2]string{{":method", "GET"}, {":path", "/p"}, {":authority", "a"}}, nil, nil, 1, nil)
		_ = proxywasm.ReplaceHttpRequestHeaders([][2]string{{"x-last", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"}})
		return types.ActionPause
	}}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, true)
	require.Equal(t, [][2]string{{"x-reason", "denied"}}, host.GetSentLocalResponse(id).Headers)
	callouts := host.GetCalloutAttributesFromContext(id)
	require.Len(t, callouts, 1)
	require.Equal(t, [][2]string{{":method", "GET"}, {":path", "/p"}, {":authority", "a"}}, callouts[0].Headers)
	require.Equal(t, [][2]string{{"x-last", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"}}, host.GetCurrentRequestHeaders(id))
}

func TestCalloutFromRootContext(t *testing.T) {
	var ranIn uint32
	var body string
	headers := [][2]string{{":method", "GET"}, {":path", "/weights"}, {":authority", "sidecar"}}
	host := run(t, &scripted{tick: func() {
		_, _ = proxywasm.DispatchHttpCall("sidecar", headers, nil, nil, 100, func(_, size, _ int) {
			ranIn = proxywasm.CurrentContextID()
			b, _ := proxywasm.GetHttpCallResponseBody(0, size)
			body = string(b)
		})
	}}, nil)
	host.Tick()
	callouts := host.GetCalloutAttributesFromContext(proxytest.RootContextID)
	require.Len(t, callouts, 1)
	host.CallOnHttpCallResponse(callouts[0].CalloutID, [][2]string{{":status", "200"}}, nil, []byte(`{"a":1}`))
	require.Equal(t, proxytest.RootContextID, ranIn)
	require.Equal(t, `{"a":1}`, body)
}

func TestChainedCalloutsStayOnStream(t *testing.T) {
	headers := [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "a"}}
	var second func(int, int, int)
	var secondErr error
	second = func(int, int, int) {
		secondErr = proxywasm.ReplaceHttpRequestHeader("x-second", "done")
		_ = proxywasm.ResumeHttpRequest()
	}
	host := run(t, &scripted{reqHeaders: func() types.Action {
		_, _ = proxywasm.DispatchHttpCall("first", headers, nil, nil, 100, func(int, int, int) {
			_, _ = proxywasm.DispatchHttpCall("second", headers, nil, nil, 100, second)
		})
		return types.ActionPause
	}}, nil)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, true)
	first := host.GetCalloutAttributesFromContext(id)
	require.Len(t, first, 1)
	host.CallOnHttpCallResponse(first[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
	next := host.GetCalloutAttributesFromContext(id)
	require.Len(t, next, 1, "the callout made inside the callback belongs to the stream")
	require.Equal(t, "second", next[0].Upstream)
	require.Equal(t, types.ActionPause, host.GetCurrentHttpStreamAction(id))
	host.CallOnHttpCallResponse(next[0].CalloutID, [][2]string{{":status", "200"}}, nil, nil)
	require.NoError(t, secondErr)
	require.Contains(t, host.GetCurrentRequestHeaders(id), [2]string{"x-second", "done"})
	require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
}

// TestSharedDataKeysAreCopied: a VM's host copies a key out of the VM's
// memory, so a filter may name a key with a string that views a buffer it
// reuses (as the quota buckets do); the emulator must not keep that view.
func TestSharedDataKeysAreCopied(t *testing.T) {
	host, release := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(&types.DefaultVMContext{}))
	defer release()
	buf := []byte("bucket/team-a")
	key := unsafe.String(unsafe.SliceData(buf), len(buf))
	for _, value := range []string{"first", "second"} { // a new key, then an existing one
		require.NoError(t, proxywasm.SetSharedData(key, []byte(value), 0))
		copy(buf, "bucket/team-b")
		v, _, err := host.GetSharedData("bucket/team-a")
		require.NoError(t, err)
		require.Equal(t, value, string(v))
		_, _, err = host.GetSharedData("bucket/team-b")
		require.ErrorIs(t, err, types.ErrorStatusNotFound)
		copy(buf, "bucket/team-a")
	}
}
