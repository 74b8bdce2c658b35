//go:build !wasip1

// Package proxytest is an in-process proxy-wasm host for native tests of
// filters built on package proxywasm. It runs the filter's contexts in the
// test binary and plays Envoy's part where filters depend on it:
//
//   - callout answers (http and gRPC) arrive on the plugin (root) context id;
//     a stream's headers are reachable from the callback only after the
//     binding switched the effective context to it;
//   - callouts need :method, :path and :authority headers;
//   - a local response replaces whatever the stream would have sent;
//     continue_stream, close_stream and local responses issued on the root
//     context do nothing, as in Envoy;
//   - request/response body chunks accumulate in the host buffer while the
//     filter returns ActionPause from the body callback, and are replaced by
//     the next chunk after ActionContinue;
//   - body writes follow Envoy: start 0 replaces the first size bytes,
//     start at or past the end appends, anything else is a bad argument;
//   - counters reject increments ≤ 0; gauges add and set; histograms record;
//   - shared data has Envoy's CAS: every write bumps a process-wide token,
//     a non-zero CAS must match the key's token;
//   - enqueuing onto a shared queue notifies the registering plugin context
//     with OnQueueReady after the current callback returns;
//   - header keys are lower-cased, as Envoy's header maps do; a map the
//     effective context does not have lists as empty, while reading or
//     writing a single entry of it is a bad argument;
//   - buffer reads are clamped to the buffer, and a start past its end
//     reads nothing (proxy-wasm-cpp-host).
//
// Where the emulation is simpler than Envoy: header maps and buffers are
// reachable in every phase (Envoy limits them to the callbacks that own
// them), and a local response does not run the filter's own response
// callbacks again (Envoy passes it through the encoder chain).
//
// The emulator installs itself as the process-wide host, so emulators run
// one at a time: NewHostEmulator waits for the previous one's release
// function. Always defer it.
package proxytest

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// RootContextID is the id of the plugin context the emulator creates.
const RootContextID uint32 = 1

// LocalHttpResponse is a response a filter sent with SendHttpResponse.
type LocalHttpResponse struct {
	StatusCode       uint32
	StatusCodeDetail string
	Data             []byte
	Headers          [][2]string
	GrpcStatus       int32
}

// HttpCalloutAttribute is an http callout a filter dispatched and the host
// has not answered yet.
type HttpCalloutAttribute struct {
	CalloutID uint32
	Upstream  string
	Headers   [][2]string
	Body      []byte
	Trailers  [][2]string
	Timeout   uint32
	// ContextID is the context that was effective when the call was made.
	ContextID uint32
}

// GrpcCalloutAttribute is a gRPC call or stream a filter opened and the
// host has not closed yet.
type GrpcCalloutAttribute struct {
	ID              uint32
	Upstream        string
	Service         string
	Method          string
	InitialMetadata [][2]string
	// Messages holds the request message of a call, or every message sent
	// on a stream.
	Messages [][]byte
	Timeout  uint32
	Stream   bool
	// LocalClosed is set once the filter closed its side of a stream.
	LocalClosed bool
	ContextID   uint32
}

type httpStream struct {
	reqHeaders, reqTrailers   [][2]string
	respHeaders, respTrailers [][2]string
	reqBody, respBody         []byte
	reqBuffering, respBuffer  bool
	action                    types.Action
	local                     *LocalHttpResponse
	requestClosed             bool
	responseClosed            bool
}

type tcpStream struct {
	downstream, upstream             []byte
	downBuffering, upBuffering       bool
	action                           types.Action
	downstreamClosed, upstreamClosed bool
}

type metric struct {
	name  string
	typ   abi.MetricType
	value uint64
	recs  []uint64
}

type sharedValue struct {
	value []byte
	cas   uint32
}

type queue struct {
	rootID uint32
	items  [][]byte
}

type callResponse struct {
	headers, trailers [][2]string
	body              []byte
}

// HostEmulator is the emulated host. Its methods drive the filter's
// callbacks and inspect what the filter did; they are not safe for use from
// several goroutines.
type HostEmulator struct {
	opt   *EmulatorOption
	guest abi.Guest

	nextContextID uint32
	effective     uint32
	depth         int
	after         []func()

	http map[uint32]*httpStream
	tcp  map[uint32]*tcpStream

	logs        map[proxywasm.LogLevel][]string
	tickPeriod  uint32
	pendingDone map[uint32]bool

	metrics     map[uint32]*metric
	metricNames map[string]uint32

	nextCallout uint32
	callouts    map[uint32]*HttpCalloutAttribute
	callResp    *callResponse

	nextGrpcCall, nextGrpcStream uint32
	grpc                         map[uint32]*GrpcCalloutAttribute
	grpcMessage                  []byte
	grpcInitial, grpcTrailing    [][2]string

	statusCode uint32
	statusMsg  string

	shared  map[string]*sharedValue
	nextCas uint32

	queues     map[uint32]*queue
	queueNames map[string]uint32

	properties map[string][]byte
}

var running sync.Mutex

// NewHostEmulator installs a new emulated host, registers opt's VM context
// with proxywasm.SetVMContext and returns the host with its release
// function. No callback runs until the test calls StartVM.
func NewHostEmulator(opt *EmulatorOption) (*HostEmulator, func()) {
	running.Lock()
	if opt == nil {
		opt = NewEmulatorOption()
	}
	e := &HostEmulator{
		opt:            opt,
		nextContextID:  RootContextID + 1,
		http:           map[uint32]*httpStream{},
		tcp:            map[uint32]*tcpStream{},
		logs:           map[proxywasm.LogLevel][]string{},
		pendingDone:    map[uint32]bool{},
		metrics:        map[uint32]*metric{},
		metricNames:    map[string]uint32{},
		callouts:       map[uint32]*HttpCalloutAttribute{},
		grpc:           map[uint32]*GrpcCalloutAttribute{},
		nextGrpcCall:   1,
		nextGrpcStream: 2,
		shared:         map[string]*sharedValue{},
		queues:         map[uint32]*queue{},
		queueNames:     map[string]uint32{},
		properties:     map[string][]byte{},
	}
	for k, v := range opt.properties {
		e.properties[k] = v
	}
	proxywasm.SetVMContext(opt.vmContext)
	e.guest = abi.RegisteredGuest()
	prev := abi.SetHost(hostImpl{e})
	var once sync.Once
	return e, func() {
		once.Do(func() {
			abi.SetHost(prev)
			proxywasm.SetVMContext(nil)
			running.Unlock()
		})
	}
}

// call runs fn as a callback of contextID, then, once the outermost callback
// has returned, the actions the host deferred (as Envoy does after a VM call).
func (e *HostEmulator) call(contextID uint32, fn func()) {
	prev := e.effective
	e.effective = contextID
	e.depth++
	fn()
	e.depth--
	e.effective = prev
	if e.depth == 0 {
		for len(e.after) > 0 {
			next := e.after[0]
			e.after = e.after[1:]
			next()
		}
	}
}

func (e *HostEmulator) defer_(fn func()) {
	if e.depth == 0 {
		fn()
		return
	}
	e.after = append(e.after, fn)
}

// ---- lifecycle

// StartVM creates the plugin context (RootContextID) and runs OnVMStart.
func (e *HostEmulator) StartVM() types.OnVMStartStatus {
	var ok bool
	e.call(RootContextID, func() {
		e.guest.OnContextCreate(RootContextID, 0)
		ok = e.guest.OnVMStart(RootContextID, uint32(len(e.opt.vmConfig)))
	})
	return types.OnVMStartStatus(ok)
}

// StartPlugin runs OnPluginStart with the plugin configuration.
func (e *HostEmulator) StartPlugin() types.OnPluginStartStatus {
	var ok bool
	e.call(RootContextID, func() {
		ok = e.guest.OnConfigure(RootContextID, uint32(len(e.opt.pluginConfig)))
	})
	return types.OnPluginStartStatus(ok)
}

// FinishVM runs OnPluginDone and reports its answer. When the filter
// answered false, IsPluginDone reports whether it later called Done.
func (e *HostEmulator) FinishVM() bool {
	var done bool
	e.call(RootContextID, func() { done = e.guest.OnDone(RootContextID) })
	if !done {
		e.pendingDone[RootContextID] = true
	}
	return done
}

// IsPluginDone reports whether the plugin context finished: OnPluginDone
// returned true, or the filter called Done afterwards.
func (e *HostEmulator) IsPluginDone() bool {
	_, pending := e.pendingDone[RootContextID]
	return !pending
}

// Tick runs the plugin context's OnTick once.
func (e *HostEmulator) Tick() {
	e.call(RootContextID, func() { e.guest.OnTick(RootContextID) })
}

// GetTickPeriod returns the period the filter set, in milliseconds.
func (e *HostEmulator) GetTickPeriod() uint32 { return e.tickPeriod }

// ---- http streams

// InitializeHttpContext creates an http stream context and returns its id.
func (e *HostEmulator) InitializeHttpContext() uint32 {
	id := e.nextContextID
	e.nextContextID++
	e.http[id] = &httpStream{}
	e.call(id, func() { e.guest.OnContextCreate(id, RootContextID) })
	return id
}

func (e *HostEmulator) stream(id uint32) *httpStream {
	s, ok := e.http[id]
	if !ok {
		panic("proxytest: unknown http context " + itoa(id))
	}
	return s
}

// CallOnRequestHeaders delivers request headers to stream id.
func (e *HostEmulator) CallOnRequestHeaders(id uint32, headers [][2]string, endOfStream bool) types.Action {
	s := e.stream(id)
	s.reqHeaders = lowerKeys(headers)
	var a uint32
	e.call(id, func() { a = e.guest.OnRequestHeaders(id, uint32(len(headers)), endOfStream) })
	s.action = types.Action(a)
	return s.action
}

// CallOnRequestBody delivers a request body chunk to stream id. While the
// filter keeps returning ActionPause the chunks accumulate.
func (e *HostEmulator) CallOnRequestBody(id uint32, body []byte, endOfStream bool) types.Action {
	s := e.stream(id)
	if s.reqBuffering {
		s.reqBody = append(s.reqBody, body...)
	} else {
		s.reqBody = append([]byte(nil), body...)
	}
	var a uint32
	e.call(id, func() { a = e.guest.OnRequestBody(id, uint32(len(s.reqBody)), endOfStream) })
	s.action = types.Action(a)
	s.reqBuffering = s.action == types.ActionPause
	return s.action
}

// CallOnRequestTrailers delivers request trailers to stream id.
func (e *HostEmulator) CallOnRequestTrailers(id uint32, trailers [][2]string) types.Action {
	s := e.stream(id)
	s.reqTrailers = lowerKeys(trailers)
	var a uint32
	e.call(id, func() { a = e.guest.OnRequestTrailers(id, uint32(len(trailers))) })
	s.action = types.Action(a)
	return s.action
}

// CallOnResponseHeaders delivers response headers to stream id.
func (e *HostEmulator) CallOnResponseHeaders(id uint32, headers [][2]string, endOfStream bool) types.Action {
	s := e.stream(id)
	s.respHeaders = lowerKeys(headers)
	var a uint32
	e.call(id, func() { a = e.guest.OnResponseHeaders(id, uint32(len(headers)), endOfStream) })
	s.action = types.Action(a)
	return s.action
}

// CallOnResponseBody delivers a response body chunk to stream id, with the
// same accumulation rule as CallOnRequestBody.
func (e *HostEmulator) CallOnResponseBody(id uint32, body []byte, endOfStream bool) types.Action {
	s := e.stream(id)
	if s.respBuffer {
		s.respBody = append(s.respBody, body...)
	} else {
		s.respBody = append([]byte(nil), body...)
	}
	var a uint32
	e.call(id, func() { a = e.guest.OnResponseBody(id, uint32(len(s.respBody)), endOfStream) })
	s.action = types.Action(a)
	s.respBuffer = s.action == types.ActionPause
	return s.action
}

// CallOnResponseTrailers delivers response trailers to stream id.
func (e *HostEmulator) CallOnResponseTrailers(id uint32, trailers [][2]string) types.Action {
	s := e.stream(id)
	s.respTrailers = lowerKeys(trailers)
	var a uint32
	e.call(id, func() { a = e.guest.OnResponseTrailers(id, uint32(len(trailers))) })
	s.action = types.Action(a)
	return s.action
}

// CompleteHttpContext ends stream id: proxy_on_done, proxy_on_log (the
// filter's OnHttpStreamDone) and proxy_on_delete, in Envoy's order. The
// stream's recorded state stays readable.
func (e *HostEmulator) CompleteHttpContext(id uint32) {
	e.stream(id)
	e.call(id, func() {
		e.guest.OnDone(id)
		e.guest.OnLog(id)
		e.guest.OnDelete(id)
	})
}

// GetCurrentRequestHeaders returns stream id's request headers as the
// filter left them.
func (e *HostEmulator) GetCurrentRequestHeaders(id uint32) [][2]string {
	return clonePairs(e.stream(id).reqHeaders)
}

// GetCurrentRequestTrailers returns stream id's request trailers.
func (e *HostEmulator) GetCurrentRequestTrailers(id uint32) [][2]string {
	return clonePairs(e.stream(id).reqTrailers)
}

// GetCurrentResponseHeaders returns stream id's response headers.
func (e *HostEmulator) GetCurrentResponseHeaders(id uint32) [][2]string {
	return clonePairs(e.stream(id).respHeaders)
}

// GetCurrentResponseTrailers returns stream id's response trailers.
func (e *HostEmulator) GetCurrentResponseTrailers(id uint32) [][2]string {
	return clonePairs(e.stream(id).respTrailers)
}

// GetCurrentRequestBody returns stream id's request body buffer.
func (e *HostEmulator) GetCurrentRequestBody(id uint32) []byte {
	return append([]byte(nil), e.stream(id).reqBody...)
}

// GetCurrentResponseBody returns stream id's response body buffer.
func (e *HostEmulator) GetCurrentResponseBody(id uint32) []byte {
	return append([]byte(nil), e.stream(id).respBody...)
}

// GetSentLocalResponse returns the local response stream id sent, or nil.
func (e *HostEmulator) GetSentLocalResponse(id uint32) *LocalHttpResponse {
	return e.stream(id).local
}

// GetCurrentHttpStreamAction returns the action of stream id's last
// callback, or ActionContinue once the filter resumed the stream.
func (e *HostEmulator) GetCurrentHttpStreamAction(id uint32) types.Action {
	return e.stream(id).action
}

// IsHttpStreamClosed reports whether the filter reset the request or the
// response side of stream id with proxy_close_stream.
func (e *HostEmulator) IsHttpStreamClosed(id uint32) (request, response bool) {
	s := e.stream(id)
	return s.requestClosed, s.responseClosed
}

// ---- tcp streams

// InitializeTcpContext creates a TCP stream context, runs OnNewConnection
// and returns the id and the filter's action.
func (e *HostEmulator) InitializeTcpContext() (uint32, types.Action) {
	id := e.nextContextID
	e.nextContextID++
	t := &tcpStream{}
	e.tcp[id] = t
	var a uint32
	e.call(id, func() {
		e.guest.OnContextCreate(id, RootContextID)
		a = e.guest.OnNewConnection(id)
	})
	t.action = types.Action(a)
	return id, t.action
}

func (e *HostEmulator) tcpStream(id uint32) *tcpStream {
	t, ok := e.tcp[id]
	if !ok {
		panic("proxytest: unknown tcp context " + itoa(id))
	}
	return t
}

// CallOnDownstreamData delivers downstream bytes to TCP stream id.
func (e *HostEmulator) CallOnDownstreamData(id uint32, data []byte, endOfStream bool) types.Action {
	t := e.tcpStream(id)
	if t.downBuffering {
		t.downstream = append(t.downstream, data...)
	} else {
		t.downstream = append([]byte(nil), data...)
	}
	var a uint32
	e.call(id, func() { a = e.guest.OnDownstreamData(id, uint32(len(t.downstream)), endOfStream) })
	t.action = types.Action(a)
	t.downBuffering = t.action == types.ActionPause
	return t.action
}

// CallOnUpstreamData delivers upstream bytes to TCP stream id.
func (e *HostEmulator) CallOnUpstreamData(id uint32, data []byte, endOfStream bool) types.Action {
	t := e.tcpStream(id)
	if t.upBuffering {
		t.upstream = append(t.upstream, data...)
	} else {
		t.upstream = append([]byte(nil), data...)
	}
	var a uint32
	e.call(id, func() { a = e.guest.OnUpstreamData(id, uint32(len(t.upstream)), endOfStream) })
	t.action = types.Action(a)
	t.upBuffering = t.action == types.ActionPause
	return t.action
}

// GetCurrentDownstreamData returns TCP stream id's downstream buffer.
func (e *HostEmulator) GetCurrentDownstreamData(id uint32) []byte {
	return append([]byte(nil), e.tcpStream(id).downstream...)
}

// GetCurrentUpstreamData returns TCP stream id's upstream buffer.
func (e *HostEmulator) GetCurrentUpstreamData(id uint32) []byte {
	return append([]byte(nil), e.tcpStream(id).upstream...)
}

// CloseDownstreamConnection reports a downstream close to TCP stream id.
func (e *HostEmulator) CloseDownstreamConnection(id uint32, peer types.PeerType) {
	e.tcpStream(id)
	e.call(id, func() { e.guest.OnDownstreamConnectionClose(id, uint32(peer)) })
}

// CloseUpstreamConnection reports an upstream close to TCP stream id.
func (e *HostEmulator) CloseUpstreamConnection(id uint32, peer types.PeerType) {
	e.tcpStream(id)
	e.call(id, func() { e.guest.OnUpstreamConnectionClose(id, uint32(peer)) })
}

// CompleteTcpContext ends TCP stream id (done, log, delete).
func (e *HostEmulator) CompleteTcpContext(id uint32) {
	e.tcpStream(id)
	e.call(id, func() {
		e.guest.OnDone(id)
		e.guest.OnLog(id)
		e.guest.OnDelete(id)
	})
}

// ---- http callouts

// GetCalloutAttributesFromContext returns the unanswered http callouts that
// context contextID made, oldest first.
func (e *HostEmulator) GetCalloutAttributesFromContext(contextID uint32) []HttpCalloutAttribute {
	var out []HttpCalloutAttribute
	for _, c := range e.callouts {
		if c.ContextID == contextID {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CalloutID < out[j].CalloutID })
	return out
}

// CallOnHttpCallResponse answers http callout calloutID the way Envoy does:
// proxy_on_http_call_response on the plugin context id, with the response
// readable through the HTTP_CALL_RESPONSE_* maps and buffer 4.
func (e *HostEmulator) CallOnHttpCallResponse(calloutID uint32, headers, trailers [][2]string, body []byte) {
	if _, ok := e.callouts[calloutID]; !ok {
		panic("proxytest: unknown callout " + itoa(calloutID))
	}
	delete(e.callouts, calloutID)
	e.callResp = &callResponse{headers: lowerKeys(headers), trailers: lowerKeys(trailers), body: body}
	e.statusCode, e.statusMsg = 0, ""
	e.call(RootContextID, func() {
		e.guest.OnHTTPCallResponse(RootContextID, calloutID, uint32(len(headers)), uint32(len(body)), uint32(len(trailers)))
	})
	e.callResp = nil
}

// FailHttpCall fails http callout calloutID as Envoy reports a reset or
// timeout: zero headers, and GetStatus answers 11 (BrokenConnection) "reset".
func (e *HostEmulator) FailHttpCall(calloutID uint32) {
	if _, ok := e.callouts[calloutID]; !ok {
		panic("proxytest: unknown callout " + itoa(calloutID))
	}
	delete(e.callouts, calloutID)
	e.statusCode, e.statusMsg = uint32(abi.StatusBrokenConnection), "reset"
	e.call(RootContextID, func() { e.guest.OnHTTPCallResponse(RootContextID, calloutID, 0, 0, 0) })
	e.statusCode, e.statusMsg = 0, ""
}

// ---- gRPC

// GetGrpcCalloutAttributesFromContext returns the open gRPC calls and
// streams of context contextID, oldest first.
func (e *HostEmulator) GetGrpcCalloutAttributesFromContext(contextID uint32) []GrpcCalloutAttribute {
	var out []GrpcCalloutAttribute
	for _, c := range e.grpc {
		if c.ContextID == contextID {
			cp := *c
			cp.Messages = append([][]byte(nil), c.Messages...)
			out = append(out, cp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (e *HostEmulator) grpcCall(id uint32) *GrpcCalloutAttribute {
	c, ok := e.grpc[id]
	if !ok {
		panic("proxytest: unknown grpc call " + itoa(id))
	}
	return c
}

// CallOnGrpcReceiveInitialMetadata delivers initial metadata of call id.
func (e *HostEmulator) CallOnGrpcReceiveInitialMetadata(id uint32, md [][2]string) {
	e.grpcCall(id)
	e.grpcInitial = lowerKeys(md)
	e.call(RootContextID, func() { e.guest.OnGrpcReceiveInitialMetadata(RootContextID, id, uint32(len(md))) })
	e.grpcInitial = nil
}

// CallOnGrpcReceive delivers a response message of call id. For a unary
// call this is its successful end, as in Envoy: the call is released and no
// close follows.
func (e *HostEmulator) CallOnGrpcReceive(id uint32, message []byte) {
	c := e.grpcCall(id)
	e.grpcMessage = message
	e.call(RootContextID, func() { e.guest.OnGrpcReceive(RootContextID, id, uint32(len(message))) })
	e.grpcMessage = nil
	if !c.Stream {
		delete(e.grpc, id)
	}
}

// CallOnGrpcReceiveTrailingMetadata delivers trailing metadata of call id.
func (e *HostEmulator) CallOnGrpcReceiveTrailingMetadata(id uint32, md [][2]string) {
	e.grpcCall(id)
	e.grpcTrailing = lowerKeys(md)
	e.call(RootContextID, func() { e.guest.OnGrpcReceiveTrailingMetadata(RootContextID, id, uint32(len(md))) })
	e.grpcTrailing = nil
}

// CallOnGrpcClose ends call id with a gRPC status and message.
func (e *HostEmulator) CallOnGrpcClose(id uint32, statusCode uint32, message string) {
	e.grpcCall(id)
	delete(e.grpc, id)
	e.statusCode, e.statusMsg = statusCode, message
	e.call(RootContextID, func() { e.guest.OnGrpcClose(RootContextID, id, statusCode) })
	e.statusCode, e.statusMsg = 0, ""
}

// ---- metrics

var errNoMetric = errors.New("metric not defined")

func (e *HostEmulator) metric(name string, typ abi.MetricType) (*metric, error) {
	id, ok := e.metricNames[metricKey(name, typ)]
	if !ok {
		return nil, errors.New(name + ": " + errNoMetric.Error())
	}
	return e.metrics[id], nil
}

// GetCounterMetric returns the value of counter name.
func (e *HostEmulator) GetCounterMetric(name string) (uint64, error) {
	m, err := e.metric(name, abi.MetricCounter)
	if err != nil {
		return 0, err
	}
	return m.value, nil
}

// GetGaugeMetric returns the value of gauge name.
func (e *HostEmulator) GetGaugeMetric(name string) (int64, error) {
	m, err := e.metric(name, abi.MetricGauge)
	if err != nil {
		return 0, err
	}
	return int64(m.value), nil
}

// GetHistogramMetric returns every value recorded into histogram name.
func (e *HostEmulator) GetHistogramMetric(name string) ([]uint64, error) {
	m, err := e.metric(name, abi.MetricHistogram)
	if err != nil {
		return nil, err
	}
	return append([]uint64(nil), m.recs...), nil
}

// ---- logs

// GetLogs returns the messages logged at level, oldest first.
func (e *HostEmulator) GetLogs(level proxywasm.LogLevel) []string {
	return append([]string(nil), e.logs[level]...)
}

// ---- shared data and queues

// GetSharedData returns the value and CAS token stored under key, or
// types.ErrorStatusNotFound.
func (e *HostEmulator) GetSharedData(key string) ([]byte, uint32, error) {
	v, ok := e.shared[key]
	if !ok {
		return nil, 0, types.ErrorStatusNotFound
	}
	return append([]byte(nil), v.value...), v.cas, nil
}

// SetSharedData stores value under key as another VM of the same vm_id
// would, with the same CAS rule as the filter sees.
func (e *HostEmulator) SetSharedData(key string, value []byte, cas uint32) error {
	return proxywasm.StatusToError(uint32(hostImpl{e}.SetSharedData(key, value, cas)))
}

// RegisterSharedQueue registers queue name of this VM's vm_id from outside
// the filter and returns its id. OnQueueReady is not delivered for queues
// the test registered.
func (e *HostEmulator) RegisterSharedQueue(name string) uint32 {
	id, _ := hostImpl{e}.registerQueue(0, name)
	return id
}

// EnqueueSharedQueue adds data to queue queueID as another VM would and
// delivers OnQueueReady to the plugin context that registered it.
func (e *HostEmulator) EnqueueSharedQueue(queueID uint32, data []byte) error {
	return proxywasm.StatusToError(uint32(hostImpl{e}.EnqueueSharedQueue(queueID, data)))
}

// DequeueSharedQueue removes the first item of queue queueID.
func (e *HostEmulator) DequeueSharedQueue(queueID uint32) ([]byte, error) {
	b, st := hostImpl{e}.DequeueSharedQueue(queueID)
	return b, proxywasm.StatusToError(uint32(st))
}

// ---- properties

// SetProperty sets a host property.
func (e *HostEmulator) SetProperty(path []string, value []byte) {
	e.properties[pathKey(path)] = append([]byte(nil), value...)
}

// GetProperty returns a host property, or types.ErrorStatusNotFound.
func (e *HostEmulator) GetProperty(path []string) ([]byte, error) {
	v, ok := e.properties[pathKey(path)]
	if !ok {
		return nil, types.ErrorStatusNotFound
	}
	return append([]byte(nil), v...), nil
}

// ---- encoding of paths, metric keys and pairs

func pathKey(path []string) string { return string(abi.SerializePath(path)) }

func metricKey(name string, typ abi.MetricType) string {
	return string(rune('0'+typ)) + name
}

func lowerKeys(pairs [][2]string) [][2]string {
	if pairs == nil {
		return nil
	}
	out := make([][2]string, len(pairs))
	for i, p := range pairs {
		out[i] = [2]string{strings.ToLower(p[0]), p[1]}
	}
	return out
}

func clonePairs(pairs [][2]string) [][2]string {
	if pairs == nil {
		return nil
	}
	return append([][2]string(nil), pairs...)
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
