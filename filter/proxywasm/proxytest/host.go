//go:build !wasip1

package proxytest

import (
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// hostImpl serves the filter's host calls. It decodes header maps and
// property paths from their wire form, as a real proxy does.
type hostImpl struct{ e *HostEmulator }

var _ abi.Host = hostImpl{}

func (h hostImpl) Log(level abi.LogLevel, msg string) abi.Status {
	if level > abi.LogCritical {
		return abi.StatusBadArgument
	}
	l := proxywasm.LogLevel(level)
	h.e.logs[l] = append(h.e.logs[l], msg)
	return abi.StatusOK
}

func (h hostImpl) GetLogLevel() (abi.LogLevel, abi.Status) {
	return abi.LogLevel(h.e.opt.logLevel), abi.StatusOK
}

func (h hostImpl) SetTickPeriodMilliseconds(ms uint32) abi.Status {
	h.e.tickPeriod = ms
	return abi.StatusOK
}

func (h hostImpl) SetEffectiveContext(id uint32) abi.Status {
	_, isHTTP := h.e.http[id]
	_, isTCP := h.e.tcp[id]
	if id != RootContextID && !isHTTP && !isTCP {
		return abi.StatusBadArgument
	}
	h.e.effective = id
	return abi.StatusOK
}

func (h hostImpl) Done() abi.Status {
	if !h.e.pendingDone[h.e.effective] {
		return abi.StatusNotFound
	}
	delete(h.e.pendingDone, h.e.effective)
	return abi.StatusOK
}

func (h hostImpl) GetCurrentTimeNanoseconds() (uint64, abi.Status) {
	return uint64(h.e.opt.now().UnixNano()), abi.StatusOK
}

// ---- buffers

// buffer returns a pointer to the buffer bt of the effective context, or
// nil when that context has none.
func (h hostImpl) buffer(bt abi.BufferType) (*[]byte, bool) {
	e := h.e
	switch bt {
	case abi.BufferVMConfiguration:
		return &e.opt.vmConfig, false
	case abi.BufferPluginConfiguration:
		return &e.opt.pluginConfig, false
	case abi.BufferHTTPCallResponseBody:
		if e.callResp == nil {
			return nil, false
		}
		return &e.callResp.body, false
	case abi.BufferGrpcReceive:
		if e.grpcMessage == nil {
			return nil, false
		}
		return &e.grpcMessage, false
	case abi.BufferHTTPRequestBody, abi.BufferHTTPResponseBody:
		s, ok := e.http[e.effective]
		if !ok {
			return nil, false
		}
		if bt == abi.BufferHTTPRequestBody {
			return &s.reqBody, true
		}
		return &s.respBody, true
	case abi.BufferDownstreamData, abi.BufferUpstreamData:
		t, ok := e.tcp[e.effective]
		if !ok {
			return nil, false
		}
		if bt == abi.BufferDownstreamData {
			return &t.downstream, true
		}
		return &t.upstream, true
	}
	return nil, false
}

func (h hostImpl) GetBufferBytes(bt abi.BufferType, start, maxSize uint32) ([]byte, abi.Status) {
	if bt > abi.BufferForeignFunctionArguments {
		return nil, abi.StatusBadArgument
	}
	b, _ := h.buffer(bt)
	if b == nil {
		return nil, abi.StatusNotFound
	}
	// proxy-wasm-cpp-host clamps reads: a start past the end reads nothing.
	buf := *b
	if uint64(start) > uint64(len(buf)) {
		return nil, abi.StatusOK
	}
	end := uint64(start) + uint64(maxSize)
	if end > uint64(len(buf)) {
		end = uint64(len(buf))
	}
	return append([]byte(nil), buf[start:end]...), abi.StatusOK
}

func (h hostImpl) GetBufferStatus(bt abi.BufferType) (uint32, uint32, abi.Status) {
	if bt > abi.BufferForeignFunctionArguments {
		return 0, 0, abi.StatusBadArgument
	}
	b, _ := h.buffer(bt)
	if b == nil {
		return 0, 0, abi.StatusNotFound
	}
	return uint32(len(*b)), 0, abi.StatusOK
}

// SetBufferBytes follows Envoy's Buffer::copyFrom: start 0 drains size bytes
// and prepends value, a start at or past the end appends, anything else is
// a bad argument. Configuration and callout buffers are read-only.
func (h hostImpl) SetBufferBytes(bt abi.BufferType, start, size uint32, value []byte) abi.Status {
	if bt > abi.BufferForeignFunctionArguments {
		return abi.StatusBadArgument
	}
	b, mutable := h.buffer(bt)
	if b == nil {
		return abi.StatusNotFound
	}
	if !mutable {
		return abi.StatusBadArgument
	}
	buf := *b
	switch {
	case start == 0:
		drain := int(size)
		if uint64(size) > uint64(len(buf)) {
			drain = len(buf)
		}
		*b = append(append([]byte(nil), value...), buf[drain:]...)
	case uint64(start) >= uint64(len(buf)):
		*b = append(buf, value...)
	default:
		return abi.StatusBadArgument
	}
	return abi.StatusOK
}

// ---- header maps

// headerMap returns a pointer to map mt of the effective context, or nil.
func (h hostImpl) headerMap(mt abi.MapType) (*[][2]string, bool) {
	e := h.e
	switch mt {
	case abi.MapHTTPCallResponseHeaders, abi.MapHTTPCallResponseTrailers:
		if e.callResp == nil {
			return nil, false
		}
		if mt == abi.MapHTTPCallResponseHeaders {
			return &e.callResp.headers, false
		}
		return &e.callResp.trailers, false
	case abi.MapGrpcInitialMetadata:
		if e.grpcInitial == nil {
			return nil, false
		}
		return &e.grpcInitial, false
	case abi.MapGrpcTrailingMetadata:
		if e.grpcTrailing == nil {
			return nil, false
		}
		return &e.grpcTrailing, false
	}
	s, ok := e.http[e.effective]
	if !ok {
		return nil, false
	}
	switch mt {
	case abi.MapHTTPRequestHeaders:
		return &s.reqHeaders, true
	case abi.MapHTTPRequestTrailers:
		return &s.reqTrailers, true
	case abi.MapHTTPResponseHeaders:
		return &s.respHeaders, true
	case abi.MapHTTPResponseTrailers:
		return &s.respTrailers, true
	}
	return nil, false
}

func (h hostImpl) GetHeaderMapSize(mt abi.MapType) (uint32, abi.Status) {
	m, _ := h.headerMap(mt)
	if m == nil {
		return 0, abi.StatusBadArgument
	}
	n := 0
	for _, p := range *m {
		n += len(p[0]) + len(p[1])
	}
	return uint32(n), abi.StatusOK
}

// GetHeaderMapPairs answers an unavailable map with an empty one, as
// Envoy's getHeaderMapPairs does; only unknown map types are bad arguments.
func (h hostImpl) GetHeaderMapPairs(mt abi.MapType) ([]byte, abi.Status) {
	if mt > abi.MapHTTPCallResponseTrailers {
		return nil, abi.StatusBadArgument
	}
	m, _ := h.headerMap(mt)
	if m == nil {
		return abi.SerializePairs(nil), abi.StatusOK
	}
	return abi.SerializePairs(*m), abi.StatusOK
}

func (h hostImpl) SetHeaderMapPairs(mt abi.MapType, serialized []byte) abi.Status {
	m, mutable := h.headerMap(mt)
	if m == nil || !mutable {
		return abi.StatusBadArgument
	}
	pairs, err := abi.DeserializePairs(serialized)
	if err != nil {
		return abi.StatusBadArgument
	}
	*m = lowerKeys(pairs)
	if *m == nil {
		*m = [][2]string{}
	}
	return abi.StatusOK
}

func (h hostImpl) GetHeaderMapValue(mt abi.MapType, key string) ([]byte, abi.Status) {
	m, _ := h.headerMap(mt)
	if m == nil {
		return nil, abi.StatusBadArgument
	}
	key = strings.ToLower(key)
	for _, p := range *m {
		if p[0] == key {
			return []byte(p[1]), abi.StatusOK
		}
	}
	return nil, abi.StatusNotFound
}

func (h hostImpl) AddHeaderMapValue(mt abi.MapType, key, value string) abi.Status {
	m, mutable := h.headerMap(mt)
	if m == nil || !mutable {
		return abi.StatusBadArgument
	}
	*m = append(*m, [2]string{strings.ToLower(key), value})
	return abi.StatusOK
}

// ReplaceHeaderMapValue sets the first entry of key to value and drops the
// others, or appends key when missing (Envoy's setCopy).
func (h hostImpl) ReplaceHeaderMapValue(mt abi.MapType, key, value string) abi.Status {
	m, mutable := h.headerMap(mt)
	if m == nil || !mutable {
		return abi.StatusBadArgument
	}
	key = strings.ToLower(key)
	out := (*m)[:0:0]
	found := false
	for _, p := range *m {
		if p[0] == key {
			if found {
				continue
			}
			found = true
			p[1] = value
		}
		out = append(out, p)
	}
	if !found {
		out = append(out, [2]string{key, value})
	}
	*m = out
	return abi.StatusOK
}

func (h hostImpl) RemoveHeaderMapValue(mt abi.MapType, key string) abi.Status {
	m, mutable := h.headerMap(mt)
	if m == nil || !mutable {
		return abi.StatusBadArgument
	}
	key = strings.ToLower(key)
	out := (*m)[:0:0]
	for _, p := range *m {
		if p[0] != key {
			out = append(out, p)
		}
	}
	*m = out
	return abi.StatusOK
}

// ---- properties

func (h hostImpl) GetProperty(path []byte) ([]byte, abi.Status) {
	v, ok := h.e.properties[pathKey(abi.DeserializePath(path))]
	if !ok {
		return nil, abi.StatusNotFound
	}
	return append([]byte(nil), v...), abi.StatusOK
}

func (h hostImpl) SetProperty(path, value []byte) abi.Status {
	segments := abi.DeserializePath(path)
	if len(segments) == 0 {
		return abi.StatusBadArgument
	}
	h.e.properties[pathKey(segments)] = append([]byte(nil), value...)
	return abi.StatusOK
}

// ---- stream control

func (h hostImpl) SendLocalResponse(statusCode uint32, details string, body, serializedHeaders []byte, grpcStatus int32) abi.Status {
	headers, err := abi.DeserializePairs(serializedHeaders)
	if err != nil {
		return abi.StatusBadArgument
	}
	s, ok := h.e.http[h.e.effective]
	if !ok {
		// Envoy accepts the call on a context without a stream and does nothing.
		return abi.StatusOK
	}
	resp := &LocalHttpResponse{
		StatusCode:       statusCode,
		StatusCodeDetail: details,
		Data:             append([]byte(nil), body...),
		Headers:          lowerKeys(headers),
		GrpcStatus:       grpcStatus,
	}
	// Envoy sends the reply after the callback returns.
	h.e.defer_(func() {
		s.local = resp
		s.action = types.ActionPause
	})
	return abi.StatusOK
}

func (h hostImpl) ContinueStream(st abi.StreamType) abi.Status {
	e := h.e
	switch st {
	case abi.StreamHTTPRequest, abi.StreamHTTPResponse:
		if s, ok := e.http[e.effective]; ok {
			e.defer_(func() { s.action = types.ActionContinue })
		}
		return abi.StatusOK
	case abi.StreamDownstream:
		if t, ok := e.tcp[e.effective]; ok {
			e.defer_(func() { t.action = types.ActionContinue })
		}
		return abi.StatusOK
	case abi.StreamUpstream:
		return abi.StatusUnimplemented
	}
	return abi.StatusBadArgument
}

func (h hostImpl) CloseStream(st abi.StreamType) abi.Status {
	e := h.e
	switch st {
	case abi.StreamHTTPRequest, abi.StreamHTTPResponse:
		if s, ok := e.http[e.effective]; ok {
			e.defer_(func() {
				if st == abi.StreamHTTPRequest {
					s.requestClosed = true
				} else {
					s.responseClosed = true
				}
			})
		}
		return abi.StatusOK
	case abi.StreamDownstream, abi.StreamUpstream:
		if t, ok := e.tcp[e.effective]; ok {
			e.defer_(func() {
				if st == abi.StreamDownstream {
					t.downstreamClosed = true
				} else {
					t.upstreamClosed = true
				}
			})
		}
		return abi.StatusOK
	}
	return abi.StatusBadArgument
}

func (h hostImpl) GetStatus() (uint32, []byte, abi.Status) {
	return h.e.statusCode, []byte(h.e.statusMsg), abi.StatusOK
}

// ---- callouts

func (h hostImpl) HTTPCall(upstream string, headers, body, trailers []byte, timeoutMillis uint32) (uint32, abi.Status) {
	e := h.e
	if upstream == "" {
		return 0, abi.StatusBadArgument
	}
	hs, err := abi.DeserializePairs(headers)
	if err != nil {
		return 0, abi.StatusBadArgument
	}
	ts, err := abi.DeserializePairs(trailers)
	if err != nil {
		return 0, abi.StatusBadArgument
	}
	hs = lowerKeys(hs)
	var method, path, authority bool
	for _, p := range hs {
		switch p[0] {
		case ":method":
			method = true
		case ":path":
			path = true
		case ":authority":
			authority = true
		}
	}
	if !method || !path || !authority {
		return 0, abi.StatusBadArgument
	}
	e.nextCallout++
	id := e.nextCallout
	e.callouts[id] = &HttpCalloutAttribute{
		CalloutID: id,
		Upstream:  upstream,
		Headers:   hs,
		Body:      append([]byte(nil), body...),
		Trailers:  lowerKeys(ts),
		Timeout:   timeoutMillis,
		ContextID: e.effective,
	}
	return id, abi.StatusOK
}

func (h hostImpl) openGrpc(upstream, service, method string, md []byte, stream bool) (*GrpcCalloutAttribute, abi.Status) {
	e := h.e
	if upstream == "" {
		// Envoy: neither a GrpcService message nor a known cluster.
		return nil, abi.StatusParseFailure
	}
	pairs, err := abi.DeserializePairs(md)
	if err != nil {
		return nil, abi.StatusBadArgument
	}
	var id uint32
	if stream {
		id = e.nextGrpcStream
		e.nextGrpcStream += 2
	} else {
		id = e.nextGrpcCall
		e.nextGrpcCall += 2
	}
	c := &GrpcCalloutAttribute{
		ID: id, Upstream: upstream, Service: service, Method: method,
		InitialMetadata: lowerKeys(pairs), Stream: stream, ContextID: e.effective,
	}
	e.grpc[id] = c
	return c, abi.StatusOK
}

func (h hostImpl) GrpcCall(upstream, service, method string, md, message []byte, timeoutMillis uint32) (uint32, abi.Status) {
	c, st := h.openGrpc(upstream, service, method, md, false)
	if st != abi.StatusOK {
		return 0, st
	}
	c.Messages = [][]byte{append([]byte(nil), message...)}
	c.Timeout = timeoutMillis
	return c.ID, abi.StatusOK
}

func (h hostImpl) GrpcStream(upstream, service, method string, md []byte) (uint32, abi.Status) {
	c, st := h.openGrpc(upstream, service, method, md, true)
	if st != abi.StatusOK {
		return 0, st
	}
	return c.ID, abi.StatusOK
}

// GrpcSend, GrpcCancel and GrpcClose follow Envoy's Context: odd ids are
// calls, even ids streams; closing a call cancels it, closing a stream
// closes the local side only.
func (h hostImpl) GrpcSend(id uint32, message []byte, endStream bool) abi.Status {
	if id%2 != 0 {
		return abi.StatusBadArgument
	}
	c, ok := h.e.grpc[id]
	if !ok {
		return abi.StatusNotFound
	}
	c.Messages = append(c.Messages, append([]byte(nil), message...))
	if endStream {
		c.LocalClosed = true
	}
	return abi.StatusOK
}

func (h hostImpl) GrpcCancel(id uint32) abi.Status {
	if id == 0 {
		return abi.StatusBadArgument
	}
	if _, ok := h.e.grpc[id]; !ok {
		return abi.StatusNotFound
	}
	delete(h.e.grpc, id)
	return abi.StatusOK
}

func (h hostImpl) GrpcClose(id uint32) abi.Status {
	if id == 0 {
		return abi.StatusBadArgument
	}
	c, ok := h.e.grpc[id]
	if !ok {
		return abi.StatusNotFound
	}
	if !c.Stream {
		delete(h.e.grpc, id)
		return abi.StatusOK
	}
	c.LocalClosed = true
	return abi.StatusOK
}

// ---- shared data

func (h hostImpl) GetSharedData(key string) ([]byte, uint32, abi.Status) {
	v, ok := h.e.shared[key]
	if !ok {
		return nil, 0, abi.StatusNotFound
	}
	return append([]byte(nil), v.value...), v.cas, abi.StatusOK
}

// SetSharedData follows Envoy's SharedData::set: for an existing key a
// non-zero cas must match; every successful write takes a new non-zero
// token.
func (h hostImpl) SetSharedData(key string, value []byte, cas uint32) abi.Status {
	e := h.e
	v, ok := e.shared[key]
	if ok && cas != 0 && cas != v.cas {
		return abi.StatusCasMismatch
	}
	e.nextCas++
	if e.nextCas == 0 {
		e.nextCas++
	}
	if ok {
		v.value, v.cas = append(v.value[:0:0], value...), e.nextCas
		return abi.StatusOK
	}
	// The key is copied, as a VM's host copies it out of the VM's memory:
	// a filter may pass a string that views a buffer it reuses.
	e.shared[strings.Clone(key)] = &sharedValue{value: append([]byte(nil), value...), cas: e.nextCas}
	return abi.StatusOK
}

// ---- shared queues

func (h hostImpl) registerQueue(rootID uint32, name string) (uint32, abi.Status) {
	e := h.e
	key := e.opt.vmID + "\x00" + name
	if id, ok := e.queueNames[key]; ok {
		if rootID != 0 {
			e.queues[id].rootID = rootID
		}
		return id, abi.StatusOK
	}
	id := uint32(len(e.queueNames) + 1)
	e.queueNames[key] = id
	e.queues[id] = &queue{rootID: rootID}
	return id, abi.StatusOK
}

func (h hostImpl) RegisterSharedQueue(name string) (uint32, abi.Status) {
	return h.registerQueue(RootContextID, name)
}

func (h hostImpl) ResolveSharedQueue(vmID, name string) (uint32, abi.Status) {
	id, ok := h.e.queueNames[vmID+"\x00"+name]
	if !ok {
		return 0, abi.StatusNotFound
	}
	return id, abi.StatusOK
}

func (h hostImpl) EnqueueSharedQueue(queueID uint32, value []byte) abi.Status {
	e := h.e
	q, ok := e.queues[queueID]
	if !ok {
		return abi.StatusNotFound
	}
	q.items = append(q.items, append([]byte(nil), value...))
	if q.rootID != 0 {
		root := q.rootID
		// Envoy posts the notification to the registering VM's dispatcher.
		e.defer_(func() {
			e.call(root, func() { e.guest.OnQueueReady(root, queueID) })
		})
	}
	return abi.StatusOK
}

func (h hostImpl) DequeueSharedQueue(queueID uint32) ([]byte, abi.Status) {
	q, ok := h.e.queues[queueID]
	if !ok {
		return nil, abi.StatusNotFound
	}
	if len(q.items) == 0 {
		return nil, abi.StatusEmpty
	}
	v := q.items[0]
	q.items = q.items[1:]
	return v, abi.StatusOK
}

// ---- metrics

func (h hostImpl) DefineMetric(mt abi.MetricType, name string) (uint32, abi.Status) {
	e := h.e
	if mt > abi.MetricHistogram {
		return 0, abi.StatusBadArgument
	}
	key := metricKey(name, mt)
	if id, ok := e.metricNames[key]; ok {
		return id, abi.StatusOK
	}
	// Like Envoy, the metric type lives in the low bits of the id.
	id := uint32(len(e.metrics)+1)<<2 | uint32(mt)
	e.metrics[id] = &metric{name: name, typ: mt}
	e.metricNames[key] = id
	return id, abi.StatusOK
}

func (h hostImpl) IncrementMetric(id uint32, offset int64) abi.Status {
	m, ok := h.e.metrics[id]
	if !ok {
		return abi.StatusNotFound
	}
	switch m.typ {
	case abi.MetricCounter:
		if offset <= 0 {
			return abi.StatusBadArgument
		}
		m.value += uint64(offset)
	case abi.MetricGauge:
		m.value = uint64(int64(m.value) + offset)
	default:
		return abi.StatusBadArgument
	}
	return abi.StatusOK
}

func (h hostImpl) RecordMetric(id uint32, value uint64) abi.Status {
	m, ok := h.e.metrics[id]
	if !ok {
		return abi.StatusNotFound
	}
	switch m.typ {
	case abi.MetricCounter:
		m.value += value
	case abi.MetricGauge:
		m.value = value
	case abi.MetricHistogram:
		m.recs = append(m.recs, value)
	}
	return abi.StatusOK
}

func (h hostImpl) GetMetric(id uint32) (uint64, abi.Status) {
	m, ok := h.e.metrics[id]
	if !ok {
		return 0, abi.StatusNotFound
	}
	if m.typ == abi.MetricHistogram {
		return 0, abi.StatusBadArgument
	}
	return m.value, abi.StatusOK
}

func (h hostImpl) CallForeignFunction(name string, args []byte) ([]byte, abi.Status) {
	return nil, abi.StatusNotFound
}
