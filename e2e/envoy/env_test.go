package envoy

import (
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests of each host function family call its Go definitions directly, on a
// real VM (the test guest, idle between requests), with arguments placed in the
// guest's memory: the ABI's edge cases without a guest that would have to
// provoke each of them.

// envVM is a started VM and helpers to call host functions on it.
type envVM struct {
	t *testing.T
	h *Host
	v *vm
}

func newEnvVM(t *testing.T, opts ...hostOpt) *envVM {
	up := echoUpstream(t)
	h := newHost(t, "basic", up.URL, opts...)
	return &envVM{t: t, h: h, v: h.vms[0]}
}

// run holds the VM's mutex as a running callback does.
func (e *envVM) run(f func()) {
	e.v.mu.Lock()
	defer e.v.mu.Unlock()
	f()
}

// put copies b into memory the guest allocated and returns its address.
func (e *envVM) put(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	p, ok := e.v.allocate(uint32(len(b)))
	require.True(e.t, ok)
	require.True(e.t, e.v.mem.Write(p, b))
	return p
}

func (e *envVM) str(s string) (uint32, uint32) { return e.put([]byte(s)), uint32(len(s)) }

// ret allocates n u32 return slots, each holding a sentinel.
func (e *envVM) ret(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = e.put([]byte{0xEE, 0xEE, 0xEE, 0xEE})
	}
	return out
}

func (e *envVM) u32(p uint32) uint32 {
	x, ok := e.v.mem.ReadUint32Le(p)
	require.True(e.t, ok)
	return x
}

// out reads data a host function handed out through (ptrPtr, sizePtr).
func (e *envVM) out(ptrPtr, sizePtr uint32) []byte {
	n := e.u32(sizePtr)
	if n == 0 {
		return nil
	}
	b, ok := e.v.mem.Read(e.u32(ptrPtr), n)
	require.True(e.t, ok)
	return append([]byte(nil), b...)
}

// badPtr is an address past the end of the guest's memory.
func (e *envVM) badPtr() uint32 { return e.v.mem.Size() + 16 }

// onStream makes a stream context current for the host calls that follow.
func (e *envVM) onStream(id uint32) *stream {
	s := &stream{h: e.h, v: e.v, id: id, wake: make(chan struct{}, 1), filterState: map[string][]byte{}}
	e.v.streams[id] = s
	e.v.cur = id
	e.t.Cleanup(func() {
		e.v.mu.Lock()
		delete(e.v.streams, id)
		e.v.cur = 0
		e.v.mu.Unlock()
	})
	return s
}

const unsetU32 = 0xEEEEEEEE

func TestEnvFamiliesPerABI(t *testing.T) {
	only := map[string][]string{
		"proxy_get_configuration": {abi010}, "proxy_continue_request": {abi010},
		"proxy_continue_response": {abi010}, "proxy_clear_route_cache": {abi010},
		"proxy_continue_stream": {abi020, abi021}, "proxy_close_stream": {abi020, abi021},
		"proxy_get_log_level": {abi021},
	}
	seen := map[string]string{}
	for _, fam := range envFamilies() {
		require.NotEmpty(t, fam.funcs, fam.name)
		for _, f := range fam.funcs {
			require.NotContains(t, seen, f.name, "%s is in %s and %s", f.name, seen[f.name], fam.name)
			seen[f.name] = fam.name
			for _, abi := range abiExports {
				want := true
				if vs, ok := only[f.name]; ok {
					want = contains(vs, abi)
				}
				require.Equal(t, want, f.has(abi), "%s under %s", f.name, abi)
			}
			_, _, known := goModuleFunc(f.fn)
			require.True(t, known || fam.name == "compat", "%s is exported without reflection", f.name)
		}
	}
	require.Len(t, seen, 45)

	// What a running host registered is what the families say for its ABI.
	e := newEnvVM(t)
	abi := moduleABI(e.h.compiled)
	var want, got []string
	for name := range seen {
		for _, fam := range envFamilies() {
			for _, f := range fam.funcs {
				if f.name == name && f.has(abi) {
					want = append(want, name)
				}
			}
		}
	}
	for name := range e.h.rt.Module("env").ExportedFunctionDefinitions() {
		got = append(got, name)
	}
	sort.Strings(want)
	sort.Strings(got)
	require.Equal(t, want, got)
}

func TestABIConstants(t *testing.T) {
	// The proxy-wasm spec's WasmResult numbers (abi-versions/v0.2.1, and
	// proxy-wasm-cpp-host for 5, 9 and 11), written out again on purpose.
	for want, st := range []Status{StatusOK, StatusNotFound, StatusBadArgument, StatusSerializationFailure,
		StatusParseFailure, StatusBadExpression, StatusInvalidMemoryAccess, StatusEmpty, StatusCasMismatch,
		StatusResultMismatch, StatusInternalFailure, StatusBrokenConnection, StatusUnimplemented} {
		require.Equal(t, Status(want), st)
	}
	require.Equal(t, []int{7, 8, 3}, []int{mapMax, bufMax, streamUpstream})
}

func TestEnvLogging(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		msg, n := e.str("hello from the test")
		tests := []struct {
			name       string
			level, ptr uint32
			want       Status
		}{
			{"info", uint32(LogInfo), msg, StatusOK},
			{"level past critical", uint32(LogCritical) + 1, msg, StatusBadArgument},
			{"message outside memory", uint32(LogInfo), e.badPtr(), StatusInvalidMemoryAccess},
		}
		for _, tc := range tests {
			require.Equal(t, uint32(tc.want), proxyLog(e.v.ctx, tc.level, tc.ptr, n), tc.name)
		}
		r := e.ret(1)
		require.Equal(t, uint32(StatusOK), proxyGetLogLevel(e.v.ctx, r[0]))
		require.Equal(t, uint32(LogInfo), e.u32(r[0]))
		require.Equal(t, uint32(StatusInvalidMemoryAccess), proxyGetLogLevel(e.v.ctx, e.badPtr()))
	})
	var count int
	for _, m := range logMessages(e.h) {
		if m == "hello from the test" {
			count++
		}
	}
	require.Equal(t, 1, count)
}

func TestEnvTimers(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		r := e.put(make([]byte, 8))
		before := time.Now().UnixNano()
		require.Equal(t, uint32(StatusOK), proxyGetCurrentTimeNanoseconds(e.v.ctx, r))
		after := time.Now().UnixNano()
		got, ok := e.v.mem.ReadUint64Le(r)
		require.True(t, ok)
		require.GreaterOrEqual(t, int64(got), before)
		require.LessOrEqual(t, int64(got), after)
		require.Equal(t, uint32(StatusInvalidMemoryAccess), proxyGetCurrentTimeNanoseconds(e.v.ctx, e.badPtr()))

		require.Equal(t, uint32(StatusOK), proxySetTickPeriodMilliseconds(e.v.ctx, 60_000))
		root := e.v.roots[e.v.rootID]
		require.Equal(t, time.Minute, root.tickPeriod)
		require.NotNil(t, root.tickStop)
		require.Equal(t, uint32(StatusOK), proxySetTickPeriodMilliseconds(e.v.ctx, 0))
		require.Nil(t, root.tickStop, "0 stops the tick")
	})
}

func TestEnvBuffers(t *testing.T) {
	e := newEnvVM(t, func(c *Config) { c.VMConfig = []byte("vm-config") })
	e.run(func() {
		r := e.ret(2)
		reset := func() {
			require.True(t, e.v.mem.WriteUint32Le(r[0], unsetU32) && e.v.mem.WriteUint32Le(r[1], unsetU32))
		}
		tests := []struct {
			name               string
			typ, start, length uint32
			want               Status
			data               string
			untouched          bool
		}{
			{"whole vm configuration", bufVMConfig, 0, 100, StatusOK, "vm-config", false},
			{"part", bufVMConfig, 3, 3, StatusOK, "con", false},
			{"start past the end", bufVMConfig, 20, 5, StatusOK, "", true},
			{"zero length", bufVMConfig, 0, 0, StatusOK, "", true},
			{"plugin configuration outside on_configure", bufPluginConfig, 0, 5, StatusNotFound, "", true},
			{"no callout answer", bufHTTPCallResponse, 0, 5, StatusNotFound, "", true},
			{"unknown type", bufMax + 1, 0, 5, StatusBadArgument, "", true},
			{"start plus length overflows", bufVMConfig, 1, 0xffffffff, StatusBadArgument, "", true},
		}
		for _, tc := range tests {
			reset()
			require.Equal(t, uint32(tc.want), proxyGetBufferBytes(e.v.ctx, tc.typ, tc.start, tc.length, r[0], r[1]), tc.name)
			if tc.untouched {
				require.Equal(t, uint32(unsetU32), e.u32(r[1]), tc.name)
				continue
			}
			require.Equal(t, tc.data, string(e.out(r[0], r[1])), tc.name)
		}
		require.Equal(t, uint32(StatusOK), proxyGetBufferStatus(e.v.ctx, bufVMConfig, r[0], r[1]))
		require.Equal(t, []uint32{9, 0}, []uint32{e.u32(r[0]), e.u32(r[1])})
		require.Equal(t, uint32(StatusBadArgument), proxyGetBufferStatus(e.v.ctx, bufMax+1, r[0], r[1]))

		// The VM configuration is not mutable; an open request body is.
		d, n := e.str("XY")
		require.Equal(t, uint32(StatusBadArgument), proxySetBufferBytes(e.v.ctx, bufVMConfig, 0, 0, d, n))
		s := e.onStream(500)
		s.reqBody, s.reqBodyOpen = []byte("hello"), true
		for _, tc := range []struct {
			start, length uint32
			want          Status
			body          string
		}{
			{0, 1, StatusOK, "XYello"},    // start 0 drains length and prepends
			{6, 0, StatusOK, "XYelloXY"},  // at the end appends
			{3, 1, StatusBadArgument, ""}, // anything else
			{0, 100, StatusOK, "XY"},      // length past the end drains all
		} {
			require.Equal(t, uint32(tc.want), proxySetBufferBytes(e.v.ctx, bufRequestBody, tc.start, tc.length, d, n))
			if tc.want == StatusOK {
				require.Equal(t, tc.body, string(s.reqBody))
			}
		}
		require.Equal(t, uint32(StatusInvalidMemoryAccess), proxySetBufferBytes(e.v.ctx, bufRequestBody, 0, 0, e.badPtr(), 4))
		s.reqBodyOpen = false
		require.Equal(t, uint32(StatusBadArgument), proxySetBufferBytes(e.v.ctx, bufRequestBody, 0, 0, d, n))
	})
}

func TestEnvHeaders(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		s := e.onStream(600)
		s.reqH = []pair{{":path", "/a"}, {"x-a", "1"}, {"x-a", "2"}}
		s.reqHOpen = true
		r := e.ret(2)
		k, kn := e.str("X-A")
		require.Equal(t, uint32(StatusOK), proxyGetHeaderMapValue(e.v.ctx, mapRequestHeaders, k, kn, r[0], r[1]))
		require.Equal(t, "1", string(e.out(r[0], r[1])), "the first value, key case ignored")
		miss, mn := e.str("x-missing")
		require.Equal(t, uint32(StatusNotFound), proxyGetHeaderMapValue(e.v.ctx, mapRequestHeaders, miss, mn, r[0], r[1]))
		require.Equal(t, uint32(StatusBadArgument), proxyGetHeaderMapValue(e.v.ctx, mapMax+1, k, kn, r[0], r[1]))
		require.Equal(t, uint32(StatusBadArgument), proxyGetHeaderMapValue(e.v.ctx, mapResponseHeaders, k, kn, r[0], r[1]),
			"response headers are not open in the request phase")

		val, vn := e.str("3")
		require.Equal(t, uint32(StatusOK), proxyReplaceHeaderMapValue(e.v.ctx, mapRequestHeaders, k, kn, val, vn))
		b, bn := e.str("x-b")
		require.Equal(t, uint32(StatusOK), proxyAddHeaderMapValue(e.v.ctx, mapRequestHeaders, b, bn, val, vn))
		require.Equal(t, []pair{{":path", "/a"}, {"x-a", "3"}, {"x-b", "3"}}, s.reqH)
		require.True(t, s.routeCleared, "a request header change clears the route cache")
		require.Equal(t, uint32(StatusOK), proxyRemoveHeaderMapValue(e.v.ctx, mapRequestHeaders, k, kn))
		require.Equal(t, uint32(StatusOK), proxyGetHeaderMapSize(e.v.ctx, mapRequestHeaders, r[0]))
		require.Equal(t, uint32(len(":path/ax-b3")), e.u32(r[0]))

		require.Equal(t, uint32(StatusOK), proxyGetHeaderMapPairs(e.v.ctx, mapRequestHeaders, r[0], r[1]))
		ps, err := decodePairs(e.out(r[0], r[1]))
		require.NoError(t, err)
		require.Equal(t, []pair{{":path", "/a"}, {"x-b", "3"}}, ps)
		enc := encodePairs([]pair{{"X-Up", "u"}, {":path", "/b"}})
		require.Equal(t, uint32(StatusOK), proxySetHeaderMapPairs(e.v.ctx, mapRequestHeaders, e.put(enc), uint32(len(enc))))
		require.Equal(t, []pair{{"x-up", "u"}, {":path", "/b"}}, s.reqH)

		// Once the headers callback continued, Envoy has cleared the map.
		s.reqHOpen = false
		require.Equal(t, uint32(StatusBadArgument), proxyGetHeaderMapValue(e.v.ctx, mapRequestHeaders, k, kn, r[0], r[1]))
		require.Equal(t, uint32(StatusBadArgument), proxyAddHeaderMapValue(e.v.ctx, mapRequestHeaders, b, bn, val, vn))
		require.Equal(t, uint32(StatusBadArgument), proxyGetHeaderMapSize(e.v.ctx, mapRequestHeaders, r[0]))
		require.True(t, e.v.mem.WriteUint32Le(r[1], unsetU32))
		require.Equal(t, uint32(StatusOK), proxyGetHeaderMapPairs(e.v.ctx, mapRequestHeaders, r[0], r[1]), "no pairs, still Ok")
		require.Zero(t, e.u32(r[1]))
		// The access-log phase reads the final maps.
		s.logPhase = true
		x, xn := e.str("x-up")
		require.Equal(t, uint32(StatusOK), proxyGetHeaderMapValue(e.v.ctx, mapRequestHeaders, x, xn, r[0], r[1]))
		require.Equal(t, "u", string(e.out(r[0], r[1])))
		require.Equal(t, uint32(StatusBadArgument), proxyRemoveHeaderMapValue(e.v.ctx, mapRequestHeaders, x, xn))
	})
}

func TestEnvProperties(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		r := e.ret(2)
		p, n := e.str("plugin_root_id")
		require.Equal(t, uint32(StatusOK), proxyGetProperty(e.v.ctx, p, n, r[0], r[1]))
		require.Equal(t, "guest_root", string(e.out(r[0], r[1])))
		u, un := e.str("no_such_property")
		require.Equal(t, uint32(StatusNotFound), proxyGetProperty(e.v.ctx, u, un, r[0], r[1]))
		require.Equal(t, uint32(StatusInvalidMemoryAccess), proxyGetProperty(e.v.ctx, e.badPtr(), 4, r[0], r[1]))

		k, kn := e.str("my.key")
		val, vn := e.str("v")
		require.Equal(t, uint32(StatusNotFound), proxySetProperty(e.v.ctx, k, kn, val, vn), "no stream info on the root context")
		s := e.onStream(700)
		require.Equal(t, uint32(StatusOK), proxySetProperty(e.v.ctx, k, kn, val, vn))
		require.Equal(t, "v", string(s.filterState["my.key"]))
		require.Equal(t, uint32(StatusOK), proxyGetProperty(e.v.ctx, k, kn, r[0], r[1]))
		require.Equal(t, "v", string(e.out(r[0], r[1])))
	})
}

func TestEnvStreamControl(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		require.Equal(t, uint32(StatusBadArgument), proxySetEffectiveContext(e.v.ctx, 9999))
		require.Equal(t, uint32(StatusOK), proxySetEffectiveContext(e.v.ctx, e.v.rootID))
		require.Equal(t, e.v.rootID, e.v.effective)
		e.v.effective = 0
		require.Equal(t, uint32(StatusNotFound), proxyDone(e.v.ctx))
		for _, tc := range []struct {
			typ        uint32
			cont, clos Status
		}{
			{streamRequest, StatusOK, StatusOK},
			{streamResponse, StatusOK, StatusOK},
			{streamDownstream, StatusOK, StatusOK},
			{streamUpstream, StatusUnimplemented, StatusOK},
			{streamUpstream + 1, StatusBadArgument, StatusBadArgument},
		} {
			require.Equal(t, uint32(tc.cont), proxyContinueStream(e.v.ctx, tc.typ), "continue %d", tc.typ)
			require.Equal(t, uint32(tc.clos), proxyCloseStream(e.v.ctx, tc.typ), "close %d", tc.typ)
		}

		s := e.onStream(800)
		s.reqHOpen = true
		e.v.after = nil
		require.Equal(t, uint32(StatusOK), proxyContinueRequest(e.v.ctx))
		require.False(t, s.reqHOpen, "continuing the request ends access to its headers at once")
		require.False(t, s.continueReq, "the continue acts after the callback")
		require.Len(t, e.v.after, 1)
		e.v.after[0]()
		require.True(t, s.continueReq)

		body, bn := e.str("no")
		det, dn := e.str("my  details")
		hdr := encodePairs([]pair{{"x-l", "1"}})
		e.v.after, e.v.stopNext = nil, false
		require.Equal(t, uint32(StatusOK), proxySendLocalResponse(e.v.ctx, 403, det, dn, body, bn, e.put(hdr), uint32(len(hdr)), -1))
		require.True(t, e.v.stopNext, "the callback's result becomes a stop")
		require.Nil(t, s.local)
		e.v.after[0]()
		require.Equal(t, &localReply{code: 403, body: []byte("no"), headers: []pair{{"x-l", "1"}}, details: "my_details", grpcStatus: -1}, s.local)
		e.v.after, e.v.stopNext = nil, false

		require.Equal(t, uint32(StatusOK), proxyClearRouteCache(e.v.ctx))
		require.True(t, s.routeCleared)

		r := e.ret(3)
		e.v.statusCode, e.v.statusMsg = 14, "unavailable"
		require.Equal(t, uint32(StatusOK), proxyGetStatus(e.v.ctx, r[0], r[1], r[2]))
		require.Equal(t, uint32(14), e.u32(r[0]))
		require.Equal(t, "unavailable", string(e.out(r[1], r[2])))
		e.v.statusCode, e.v.statusMsg = 0, ""
	})
}

func TestEnvSharedData(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		r := e.ret(3)
		k, kn := e.str("env-test-key")
		require.Equal(t, uint32(StatusNotFound), proxyGetSharedData(e.v.ctx, k, kn, r[0], r[1], r[2]))
		v1, n1 := e.str("one")
		require.Equal(t, uint32(StatusOK), proxySetSharedData(e.v.ctx, k, kn, v1, n1, 0))
		require.Equal(t, uint32(StatusOK), proxyGetSharedData(e.v.ctx, k, kn, r[0], r[1], r[2]))
		require.Equal(t, "one", string(e.out(r[0], r[1])))
		cas := e.u32(r[2])
		require.NotZero(t, cas)
		v2, n2 := e.str("two")
		require.Equal(t, uint32(StatusCasMismatch), proxySetSharedData(e.v.ctx, k, kn, v2, n2, cas+1))
		require.Equal(t, uint32(StatusOK), proxySetSharedData(e.v.ctx, k, kn, v2, n2, cas))
		require.Equal(t, uint32(StatusOK), proxyGetSharedData(e.v.ctx, k, kn, r[0], r[1], r[2]))
		require.Equal(t, "two", string(e.out(r[0], r[1])))
		require.NotEqual(t, cas, e.u32(r[2]))
		require.Equal(t, uint32(StatusInvalidMemoryAccess), proxySetSharedData(e.v.ctx, k, kn, e.badPtr(), 3, 0))
	})
}

func TestEnvSharedQueues(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		r := e.ret(2)
		q, qn := e.str("env-test-queue")
		vmid, vn := e.str("guestvm")
		other, on := e.str("othervm")
		require.Equal(t, uint32(StatusNotFound), proxyResolveSharedQueue(e.v.ctx, vmid, vn, q, qn, r[0]))
		require.Equal(t, uint32(StatusOK), proxyRegisterSharedQueue(e.v.ctx, q, qn, r[0]))
		tok := e.u32(r[0])
		require.Equal(t, uint32(StatusOK), proxyResolveSharedQueue(e.v.ctx, vmid, vn, q, qn, r[1]))
		require.Equal(t, tok, e.u32(r[1]))
		require.Equal(t, uint32(StatusNotFound), proxyResolveSharedQueue(e.v.ctx, other, on, q, qn, r[1]), "queues belong to a vm_id")
		require.Equal(t, uint32(StatusOK), proxyRegisterSharedQueue(e.v.ctx, q, qn, r[1]))
		require.Equal(t, tok, e.u32(r[1]), "registering again keeps the token")

		require.Equal(t, uint32(StatusEmpty), proxyDequeueSharedQueue(e.v.ctx, tok, r[0], r[1]))
		item, in := e.str("item")
		require.Equal(t, uint32(StatusOK), proxyEnqueueSharedQueue(e.v.ctx, tok, item, in))
		require.Equal(t, uint32(StatusOK), proxyDequeueSharedQueue(e.v.ctx, tok, r[0], r[1]))
		require.Equal(t, "item", string(e.out(r[0], r[1])))
		require.Equal(t, uint32(StatusNotFound), proxyEnqueueSharedQueue(e.v.ctx, tok+1000, item, in))
		require.Equal(t, uint32(StatusNotFound), proxyDequeueSharedQueue(e.v.ctx, tok+1000, r[0], r[1]))
	})
}

func TestEnvMetrics(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		r := e.ret(1)
		define := func(typ uint32, name string) uint32 {
			p, n := e.str(name)
			require.Equal(t, uint32(StatusOK), proxyDefineMetric(e.v.ctx, typ, p, n, r[0]))
			return e.u32(r[0])
		}
		c, g, hst := define(metricCounter, "env_c"), define(metricGauge, "env_g"), define(metricHistogram, "env_h")
		require.Equal(t, []uint32{metricCounter, metricGauge, metricHistogram}, []uint32{c & metricTypeMask, g & metricTypeMask, hst & metricTypeMask})
		p, n := e.str("x")
		require.Equal(t, uint32(StatusBadArgument), proxyDefineMetric(e.v.ctx, metricHistogram+1, p, n, r[0]))

		for _, tc := range []struct {
			name  string
			id    uint32
			delta int64
			want  Status
		}{
			{"counter up", c, 3, StatusOK},
			{"counter by 0", c, 0, StatusBadArgument},
			{"counter down", c, -1, StatusBadArgument},
			{"gauge down", g, -2, StatusOK},
			{"histogram", hst, 1, StatusBadArgument},
			{"unknown counter", c + 4*metricIDStep, 1, StatusNotFound},
		} {
			require.Equal(t, uint32(tc.want), proxyIncrementMetric(e.v.ctx, tc.id, tc.delta), tc.name)
		}
		require.Equal(t, uint32(StatusOK), proxyRecordMetric(e.v.ctx, hst, 7))
		require.Equal(t, uint32(StatusOK), proxyRecordMetric(e.v.ctx, c, 2))
		get := e.put(make([]byte, 8))
		for _, tc := range []struct {
			id   uint32
			want Status
			val  uint64
		}{{c, StatusOK, 5}, {g, StatusOK, uint64(0xFFFFFFFFFFFFFFFE)}, {hst, StatusBadArgument, 0}} {
			require.Equal(t, uint32(tc.want), proxyGetMetric(e.v.ctx, tc.id, get))
			if tc.want == StatusOK {
				x, _ := e.v.mem.ReadUint64Le(get)
				require.Equal(t, tc.val, x)
			}
		}
	})
}

func TestEnvCallouts(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		r := e.ret(1)
		hdrs := func(ps ...pair) (uint32, uint32) { b := encodePairs(ps); return e.put(b), uint32(len(b)) }
		full := []pair{{":method", "GET"}, {":path", "/"}, {":authority", "up"}}
		for _, tc := range []struct {
			name    string
			cluster string
			hdrs    []pair
			timeout uint32
			want    Status
		}{
			{"unknown cluster", "nope", full, 1000, StatusBadArgument},
			{"no :authority", "up", full[:2], 1000, StatusBadArgument},
			{"negative timeout", "up", full, 0xffffffff, StatusBadArgument},
		} {
			c, cn := e.str(tc.cluster)
			hp, hn := hdrs(tc.hdrs...)
			require.Equal(t, uint32(tc.want), proxyHttpCall(e.v.ctx, c, cn, hp, hn, 0, 0, 0, 0, tc.timeout, r[0]), tc.name)
		}
		c, cn := e.str("up")
		require.Equal(t, uint32(StatusInvalidMemoryAccess), proxyHttpCall(e.v.ctx, c, cn, 0, 0, 0, 0, 0, 0, 1000, e.badPtr()))

		svc, sn := e.str("no-such-cluster")
		m, mn := e.str("M")
		require.Equal(t, uint32(StatusParseFailure), proxyGrpcCall(e.v.ctx, svc, sn, m, mn, m, mn, 0, 0, 0, 0, 1000, r[0]))
		require.Equal(t, uint32(StatusParseFailure), proxyGrpcStream(e.v.ctx, svc, sn, m, mn, m, mn, 0, 0, r[0]))
		for _, tok := range []uint32{calloutGrpcCall + 400, calloutGrpcStream + 400} {
			require.Equal(t, uint32(StatusNotFound), proxyGrpcCancel(e.v.ctx, tok))
			require.Equal(t, uint32(StatusNotFound), proxyGrpcClose(e.v.ctx, tok))
		}
		require.Equal(t, uint32(StatusBadArgument), proxyGrpcCancel(e.v.ctx, calloutHTTP+400), "an http call id is no gRPC call")
		require.Equal(t, uint32(StatusNotFound), proxyGrpcSend(e.v.ctx, calloutGrpcStream+400, m, mn, 0))
	})
}

func TestEnvForeign(t *testing.T) {
	e := newEnvVM(t)
	e.run(func() {
		r := e.ret(2)
		u, un := e.str("no_such_function")
		require.Equal(t, uint32(StatusNotFound), proxyCallForeignFunction(e.v.ctx, u, un, 0, 0, r[0], r[1]))
		z, zn := e.str("uncompress")
		junk, jn := e.str("not zlib")
		require.Equal(t, uint32(StatusSerializationFailure), proxyCallForeignFunction(e.v.ctx, z, zn, junk, jn, r[0], r[1]))
		c, cn := e.str("compress")
		data, dn := e.str("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
		require.Equal(t, uint32(StatusOK), proxyCallForeignFunction(e.v.ctx, c, cn, data, dn, r[0], r[1]))
		packed := e.out(r[0], r[1])
		require.Less(t, len(packed), int(dn))
		require.Equal(t, uint32(StatusOK), proxyCallForeignFunction(e.v.ctx, z, zn, e.put(packed), uint32(len(packed)), r[0], r[1]))
		require.Equal(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", string(e.out(r[0], r[1])))
		require.Equal(t, uint32(StatusInvalidMemoryAccess), proxyCallForeignFunction(e.v.ctx, e.badPtr(), 4, 0, 0, r[0], r[1]))
	})
}

func TestEnvCompat(t *testing.T) {
	require.Equal(t, uint32(1), pthreadEqual(3, 3))
	require.Equal(t, uint32(0), pthreadEqual(3, 4))
	emscriptenNotifyMemoryGrowth(1) // a no-op, as in proxy-wasm-cpp-host
}
