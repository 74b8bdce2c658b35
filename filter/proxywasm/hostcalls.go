package proxywasm

import (
	"unsafe"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// All functions in this file call the host and are valid only inside a
// proxy-wasm callback (see the package documentation).

// ---- configuration

// GetVMConfiguration returns the VM configuration. Valid in OnVMStart.
func GetVMConfiguration() ([]byte, error) {
	return getWholeBuffer(abi.BufferVMConfiguration)
}

// GetPluginConfiguration returns the plugin configuration. Valid in
// OnPluginStart.
func GetPluginConfiguration() ([]byte, error) {
	return getWholeBuffer(abi.BufferPluginConfiguration)
}

// ---- logging

// LogLevel is a proxy-wasm log level.
type LogLevel uint32

// Log levels, in the ABI's order.
const (
	LogLevelTrace    = LogLevel(abi.LogTrace)
	LogLevelDebug    = LogLevel(abi.LogDebug)
	LogLevelInfo     = LogLevel(abi.LogInfo)
	LogLevelWarn     = LogLevel(abi.LogWarn)
	LogLevelError    = LogLevel(abi.LogError)
	LogLevelCritical = LogLevel(abi.LogCritical)
)

// String returns the level's lowercase name.
func (l LogLevel) String() string {
	switch l {
	case LogLevelTrace:
		return "trace"
	case LogLevelDebug:
		return "debug"
	case LogLevelInfo:
		return "info"
	case LogLevelWarn:
		return "warn"
	case LogLevelError:
		return "error"
	case LogLevelCritical:
		return "critical"
	}
	return "unknown"
}

// LogTrace logs msg at trace level.
func LogTrace(msg string) { abi.Log(abi.LogTrace, msg) }

// LogDebug logs msg at debug level.
func LogDebug(msg string) { abi.Log(abi.LogDebug, msg) }

// LogInfo logs msg at info level.
func LogInfo(msg string) { abi.Log(abi.LogInfo, msg) }

// LogWarn logs msg at warn level.
func LogWarn(msg string) { abi.Log(abi.LogWarn, msg) }

// LogError logs msg at error level.
func LogError(msg string) { abi.Log(abi.LogError, msg) }

// LogCritical logs msg at critical level.
func LogCritical(msg string) { abi.Log(abi.LogCritical, msg) }

// GetLogLevel returns the host's current log level, so a filter can skip
// building messages the host would drop.
func GetLogLevel() (LogLevel, error) {
	l, st := abi.GetLogLevel()
	return LogLevel(l), toErr(st)
}

// ---- timers and contexts

// SetTickPeriodMilliSeconds makes the host call the plugin context's OnTick
// every period milliseconds; 0 stops the timer. Valid in plugin callbacks.
func SetTickPeriodMilliSeconds(period uint32) error {
	return toErr(abi.SetTickPeriodMilliseconds(period))
}

// SetEffectiveContext makes contextID the context later host calls in this
// callback apply to. Callout callbacks need not call it: the binding
// switches to the stream that made the callout before running them.
func SetEffectiveContext(contextID uint32) error {
	if err := toErr(abi.SetEffectiveContext(contextID)); err != nil {
		return err
	}
	vm.active = contextID
	return nil
}

// Done tells the host that the context whose OnPluginDone returned false has
// finished its work and may be deleted.
func Done() error { return toErr(abi.Done()) }

// GetCurrentTimeNanoseconds returns the host's clock. The ABI deprecates it
// in favour of the WASI clock that time.Now reads.
func GetCurrentTimeNanoseconds() (uint64, error) {
	t, st := abi.GetCurrentTimeNanoseconds()
	return t, toErr(st)
}

// ---- header maps

// Host functions return slices the caller owns, so map data and values are
// turned into strings without a further copy.

func getMap(mt abi.MapType) ([][2]string, error) {
	b, st := abi.GetHeaderMapPairs(mt)
	if st != abi.StatusOK {
		return nil, toErr(st)
	}
	return abi.DeserializePairsOwned(b)
}

func setMap(mt abi.MapType, pairs [][2]string) error {
	return toErr(abi.SetHeaderMapPairs(mt, encodePairs(pairs)))
}

// getMapInto appends the map's pairs to dst; with peek, keys and values
// alias the host's bytes in place (see PeekHttpResponseHeaders).
func getMapInto(dst [][2]string, mt abi.MapType, peek bool) ([][2]string, error) {
	if peek {
		abi.Peek()
	}
	b, st := abi.GetHeaderMapPairs(mt)
	if st != abi.StatusOK {
		return dst, toErr(st)
	}
	return abi.AppendPairsOwned(dst, b)
}

func getMapValue(mt abi.MapType, key string) (string, error) {
	b, st := abi.GetHeaderMapValue(mt, key)
	if st != abi.StatusOK {
		return "", toErr(st)
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// pairsBuf holds the encoding of a map being passed to the host. The host
// copies what it needs before the call returns, and the only guest code
// that can run during a host call is the allocator export, so one buffer
// serves every call. Buffers grown past pairsBufMax are not kept.
var pairsBuf []byte

const pairsBufMax = 16 << 10

// encodePairs encodes pairs into pairsBuf. The result is valid until the
// next encodePairs call.
func encodePairs(pairs [][2]string) []byte {
	b := abi.AppendPairs(pairsBuf[:0], pairs)
	if cap(b) <= pairsBufMax {
		pairsBuf = b
	}
	return b
}

// GetHttpRequestHeaders returns all request headers. Valid in
// OnHttpRequestHeaders, while the request is paused from it, and in
// OnHttpStreamDone.
func GetHttpRequestHeaders() ([][2]string, error) { return getMap(abi.MapHTTPRequestHeaders) }

// AppendHttpRequestHeaders is GetHttpRequestHeaders appending to dst, so a
// plugin can reuse one slice for every request.
func AppendHttpRequestHeaders(dst [][2]string) ([][2]string, error) {
	return getMapInto(dst, abi.MapHTTPRequestHeaders, false)
}

// PeekHttpRequestHeaders is AppendHttpRequestHeaders without the copy: the
// keys and values share the guest's buffer for host data, valid until the
// next call that returns data (see "Reading host data in place" in the package documentation).
func PeekHttpRequestHeaders(dst [][2]string) ([][2]string, error) {
	return getMapInto(dst, abi.MapHTTPRequestHeaders, true)
}

// ReplaceHttpRequestHeaders replaces all request headers with headers.
func ReplaceHttpRequestHeaders(headers [][2]string) error {
	return setMap(abi.MapHTTPRequestHeaders, headers)
}

// GetHttpRequestHeader returns the value of the request header key, or
// types.ErrorStatusNotFound.
func GetHttpRequestHeader(key string) (string, error) {
	return getMapValue(abi.MapHTTPRequestHeaders, key)
}

// ReplaceHttpRequestHeaderBytes is ReplaceHttpRequestHeader with the value in
// bytes, for a value built in a reused buffer: the host copies it during the
// call.
func ReplaceHttpRequestHeaderBytes(key string, value []byte) error {
	return toErr(abi.ReplaceHeaderMapValue(abi.MapHTTPRequestHeaders, key, unsafe.String(unsafe.SliceData(value), len(value))))
}

// RemoveHttpRequestHeader removes the request header key; a missing key is
// not an error.
func RemoveHttpRequestHeader(key string) error {
	return toErr(abi.RemoveHeaderMapValue(abi.MapHTTPRequestHeaders, key))
}

// ReplaceHttpRequestHeader sets the request header key to value, adding it
// when missing. Changing :authority or :path clears Envoy's route cache.
func ReplaceHttpRequestHeader(key, value string) error {
	return toErr(abi.ReplaceHeaderMapValue(abi.MapHTTPRequestHeaders, key, value))
}

// AddHttpRequestHeader adds a value to the request header key.
func AddHttpRequestHeader(key, value string) error {
	return toErr(abi.AddHeaderMapValue(abi.MapHTTPRequestHeaders, key, value))
}

// GetHttpRequestTrailers returns all request trailers.
func GetHttpRequestTrailers() ([][2]string, error) { return getMap(abi.MapHTTPRequestTrailers) }

// ReplaceHttpRequestTrailers replaces all request trailers.
func ReplaceHttpRequestTrailers(trailers [][2]string) error {
	return setMap(abi.MapHTTPRequestTrailers, trailers)
}

// GetHttpRequestTrailer returns the value of the request trailer key.
func GetHttpRequestTrailer(key string) (string, error) {
	return getMapValue(abi.MapHTTPRequestTrailers, key)
}

// RemoveHttpRequestTrailer removes the request trailer key.
func RemoveHttpRequestTrailer(key string) error {
	return toErr(abi.RemoveHeaderMapValue(abi.MapHTTPRequestTrailers, key))
}

// ReplaceHttpRequestTrailer sets the request trailer key to value.
func ReplaceHttpRequestTrailer(key, value string) error {
	return toErr(abi.ReplaceHeaderMapValue(abi.MapHTTPRequestTrailers, key, value))
}

// AddHttpRequestTrailer adds a value to the request trailer key.
func AddHttpRequestTrailer(key, value string) error {
	return toErr(abi.AddHeaderMapValue(abi.MapHTTPRequestTrailers, key, value))
}

// GetHttpResponseHeaders returns all response headers. Valid in
// OnHttpResponseHeaders, while the response is paused from it, and in
// OnHttpStreamDone.
func GetHttpResponseHeaders() ([][2]string, error) { return getMap(abi.MapHTTPResponseHeaders) }

// PeekHttpResponseHeaders appends the response headers to dst without
// copying them: the keys and values share the guest's buffer for host data,
// valid until the next call that returns data (see "Reading host data in place" in the package documentation).
func PeekHttpResponseHeaders(dst [][2]string) ([][2]string, error) {
	return getMapInto(dst, abi.MapHTTPResponseHeaders, true)
}

// ReplaceHttpResponseHeaders replaces all response headers.
func ReplaceHttpResponseHeaders(headers [][2]string) error {
	return setMap(abi.MapHTTPResponseHeaders, headers)
}

// GetHttpResponseHeader returns the value of the response header key.
func GetHttpResponseHeader(key string) (string, error) {
	return getMapValue(abi.MapHTTPResponseHeaders, key)
}

// PeekHttpResponseHeader is GetHttpResponseHeader without the copy: the value
// is valid until the next call that returns data (see "Reading host data in
// place" in the package documentation).
func PeekHttpResponseHeader(key string) (string, error) {
	abi.Peek()
	return getMapValue(abi.MapHTTPResponseHeaders, key)
}

// RemoveHttpResponseHeader removes the response header key.
func RemoveHttpResponseHeader(key string) error {
	return toErr(abi.RemoveHeaderMapValue(abi.MapHTTPResponseHeaders, key))
}

// ReplaceHttpResponseHeader sets the response header key to value.
func ReplaceHttpResponseHeader(key, value string) error {
	return toErr(abi.ReplaceHeaderMapValue(abi.MapHTTPResponseHeaders, key, value))
}

// AddHttpResponseHeader adds a value to the response header key.
func AddHttpResponseHeader(key, value string) error {
	return toErr(abi.AddHeaderMapValue(abi.MapHTTPResponseHeaders, key, value))
}

// GetHttpResponseTrailers returns all response trailers.
func GetHttpResponseTrailers() ([][2]string, error) { return getMap(abi.MapHTTPResponseTrailers) }

// ReplaceHttpResponseTrailers replaces all response trailers.
func ReplaceHttpResponseTrailers(trailers [][2]string) error {
	return setMap(abi.MapHTTPResponseTrailers, trailers)
}

// GetHttpResponseTrailer returns the value of the response trailer key.
func GetHttpResponseTrailer(key string) (string, error) {
	return getMapValue(abi.MapHTTPResponseTrailers, key)
}

// RemoveHttpResponseTrailer removes the response trailer key.
func RemoveHttpResponseTrailer(key string) error {
	return toErr(abi.RemoveHeaderMapValue(abi.MapHTTPResponseTrailers, key))
}

// ReplaceHttpResponseTrailer sets the response trailer key to value.
func ReplaceHttpResponseTrailer(key, value string) error {
	return toErr(abi.ReplaceHeaderMapValue(abi.MapHTTPResponseTrailers, key, value))
}

// AddHttpResponseTrailer adds a value to the response trailer key.
func AddHttpResponseTrailer(key, value string) error {
	return toErr(abi.AddHeaderMapValue(abi.MapHTTPResponseTrailers, key, value))
}

// GetHttpCallResponseHeaders returns the headers of the callout response
// being delivered. Valid in a DispatchHttpCall callback.
func GetHttpCallResponseHeaders() ([][2]string, error) {
	return getMap(abi.MapHTTPCallResponseHeaders)
}

// GetHttpCallResponseHeader returns one header of the callout response.
func GetHttpCallResponseHeader(key string) (string, error) {
	return getMapValue(abi.MapHTTPCallResponseHeaders, key)
}

// GetHttpCallResponseTrailers returns the trailers of the callout response.
func GetHttpCallResponseTrailers() ([][2]string, error) {
	return getMap(abi.MapHTTPCallResponseTrailers)
}

// GetHttpCallResponseBody returns up to maxSize bytes from start of the
// callout response body (buffer HTTP_CALL_RESPONSE_BODY). Valid in a
// DispatchHttpCall callback.
func GetHttpCallResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(abi.BufferHTTPCallResponseBody, start, maxSize)
}

// ---- bodies and buffers

func getBuffer(bt abi.BufferType, start, maxSize int) ([]byte, error) {
	if start < 0 || maxSize < 0 || uint64(start) > 0xffffffff || uint64(maxSize) > 0xffffffff {
		return nil, types.ErrorStatusBadArgument
	}
	b, st := abi.GetBufferBytes(bt, uint32(start), uint32(maxSize))
	return b, toErr(st)
}

func peekBuffer(bt abi.BufferType, start, maxSize int) ([]byte, error) {
	if start < 0 || maxSize < 0 || uint64(start) > 0xffffffff || uint64(maxSize) > 0xffffffff {
		return nil, types.ErrorStatusBadArgument
	}
	abi.Peek()
	b, st := abi.GetBufferBytes(bt, uint32(start), uint32(maxSize))
	return b, toErr(st)
}

func getWholeBuffer(bt abi.BufferType) ([]byte, error) {
	size, _, st := abi.GetBufferStatus(bt)
	if st != abi.StatusOK {
		return nil, toErr(st)
	}
	if size == 0 {
		return nil, nil
	}
	b, st := abi.GetBufferBytes(bt, 0, size)
	return b, toErr(st)
}

func appendBuffer(bt abi.BufferType, data []byte) error {
	// Any start at or past the end appends (Envoy and the spec agree).
	return toErr(abi.SetBufferBytes(bt, 0xffffffff, 0, data))
}

func prependBuffer(bt abi.BufferType, data []byte) error {
	return toErr(abi.SetBufferBytes(bt, 0, 0, data))
}

func replaceBuffer(bt abi.BufferType, data []byte) error {
	// Replace exactly the current contents: start 0, size = current size.
	size, _, st := abi.GetBufferStatus(bt)
	if st != abi.StatusOK {
		return toErr(st)
	}
	return toErr(abi.SetBufferBytes(bt, 0, size, data))
}

// GetBufferStatus returns the size of a buffer (a proxy_buffer_type_t value)
// and the host's flags word.
func GetBufferStatus(bufferType uint32) (size int, flags uint32, err error) {
	s, f, st := abi.GetBufferStatus(abi.BufferType(bufferType))
	return int(s), f, toErr(st)
}

// Buffer types for GetBufferStatus.
const (
	BufferTypeHttpRequestBody      = uint32(abi.BufferHTTPRequestBody)
	BufferTypeHttpResponseBody     = uint32(abi.BufferHTTPResponseBody)
	BufferTypeDownstreamData       = uint32(abi.BufferDownstreamData)
	BufferTypeUpstreamData         = uint32(abi.BufferUpstreamData)
	BufferTypeHttpCallResponseBody = uint32(abi.BufferHTTPCallResponseBody)
	BufferTypeGrpcReceiveBuffer    = uint32(abi.BufferGrpcReceive)
	BufferTypeVMConfiguration      = uint32(abi.BufferVMConfiguration)
	BufferTypePluginConfiguration  = uint32(abi.BufferPluginConfiguration)
)

// GetHttpRequestBody returns up to maxSize bytes of the request body from
// start. Valid in OnHttpRequestBody; the body seen there is the host's
// buffer, which grows while the filter keeps returning ActionPause.
func GetHttpRequestBody(start, maxSize int) ([]byte, error) {
	return getBuffer(abi.BufferHTTPRequestBody, start, maxSize)
}

// PeekHttpRequestBody is GetHttpRequestBody without the copy: the bytes are
// valid until the next call that returns data (see "Reading host data in place" in the package documentation).
func PeekHttpRequestBody(start, maxSize int) ([]byte, error) {
	return peekBuffer(abi.BufferHTTPRequestBody, start, maxSize)
}

// ReserveScratch makes the data of one host call up to n bytes (a request
// body of that size read with PeekHttpRequestBody) arrive in a buffer the
// binding keeps, instead of one allocated for the call: the buffer grows to
// n once and stays, so a VM that reads large bodies allocates nothing per
// request for them. Larger data still gets a buffer of its own.
func ReserveScratch(n int) { abi.ReserveScratch(n) }

// AppendHttpRequestBody appends data to the request body buffer.
func AppendHttpRequestBody(data []byte) error {
	return appendBuffer(abi.BufferHTTPRequestBody, data)
}

// PrependHttpRequestBody prepends data to the request body buffer.
func PrependHttpRequestBody(data []byte) error {
	return prependBuffer(abi.BufferHTTPRequestBody, data)
}

// ReplaceHttpRequestBodyPrefix replaces the first n bytes of the request body
// buffer with data and keeps the rest, so an edit near the start of a long body
// does not copy the whole body out of the VM. Envoy drains n bytes and
// prepends data (source/extensions/common/wasm/context.cc, Buffer::copyFrom,
// start 0); n beyond the buffer's size drains it all.
func ReplaceHttpRequestBodyPrefix(n int, data []byte) error {
	return toErr(abi.SetBufferBytes(abi.BufferHTTPRequestBody, 0, uint32(n), data))
}

// ReplaceHttpRequestBody replaces the request body buffer with data.
func ReplaceHttpRequestBody(data []byte) error {
	return replaceBuffer(abi.BufferHTTPRequestBody, data)
}

// GetHttpResponseBody returns up to maxSize bytes of the response body from
// start. Valid in OnHttpResponseBody.
func GetHttpResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(abi.BufferHTTPResponseBody, start, maxSize)
}

// PeekHttpResponseBody is GetHttpResponseBody without the copy: the bytes
// are valid until the next call that returns data (see "Reading host data in place" in the package documentation). For scanning a
// chunk as it passes. They are the guest's to write over, for example to
// edit the chunk where it lies before ReplaceHttpResponseBodyChunk.
func PeekHttpResponseBody(start, maxSize int) ([]byte, error) {
	return peekBuffer(abi.BufferHTTPResponseBody, start, maxSize)
}

// AppendHttpResponseBody appends data to the response body buffer.
func AppendHttpResponseBody(data []byte) error {
	return appendBuffer(abi.BufferHTTPResponseBody, data)
}

// PrependHttpResponseBody prepends data to the response body buffer.
func PrependHttpResponseBody(data []byte) error {
	return prependBuffer(abi.BufferHTTPResponseBody, data)
}

// ReplaceHttpResponseBody replaces the response body buffer with data.
func ReplaceHttpResponseBody(data []byte) error {
	return replaceBuffer(abi.BufferHTTPResponseBody, data)
}

// ReplaceHttpResponseBodyChunk replaces the size bytes of the response body
// that OnHttpResponseBody was given (its size argument) with data:
// ReplaceHttpResponseBody without the host call that asks for the buffer's
// size. Valid in OnHttpResponseBody. Envoy's Buffer::copyFrom
// (source/extensions/common/wasm/context.cc) drains the first size bytes
// and prepends data when start is 0.
func ReplaceHttpResponseBodyChunk(size int, data []byte) error {
	if size < 0 || uint64(size) > 0xffffffff {
		return types.ErrorStatusBadArgument
	}
	return toErr(abi.SetBufferBytes(abi.BufferHTTPResponseBody, 0, uint32(size), data))
}

// GetDownstreamData returns up to maxSize bytes of downstream data from
// start. Valid in OnDownstreamData.
func GetDownstreamData(start, maxSize int) ([]byte, error) {
	return getBuffer(abi.BufferDownstreamData, start, maxSize)
}

// AppendDownstreamData appends data to the downstream buffer.
func AppendDownstreamData(data []byte) error { return appendBuffer(abi.BufferDownstreamData, data) }

// PrependDownstreamData prepends data to the downstream buffer.
func PrependDownstreamData(data []byte) error {
	return prependBuffer(abi.BufferDownstreamData, data)
}

// ReplaceDownstreamData replaces the downstream buffer.
func ReplaceDownstreamData(data []byte) error {
	return replaceBuffer(abi.BufferDownstreamData, data)
}

// GetUpstreamData returns up to maxSize bytes of upstream data from start.
// Valid in OnUpstreamData.
func GetUpstreamData(start, maxSize int) ([]byte, error) {
	return getBuffer(abi.BufferUpstreamData, start, maxSize)
}

// AppendUpstreamData appends data to the upstream buffer.
func AppendUpstreamData(data []byte) error { return appendBuffer(abi.BufferUpstreamData, data) }

// PrependUpstreamData prepends data to the upstream buffer.
func PrependUpstreamData(data []byte) error { return prependBuffer(abi.BufferUpstreamData, data) }

// ReplaceUpstreamData replaces the upstream buffer.
func ReplaceUpstreamData(data []byte) error { return replaceBuffer(abi.BufferUpstreamData, data) }

// ---- stream control

// SendHttpResponse answers the stream locally with statusCode, headers and
// body; grpcStatus -1 sends no grpc-status. Valid until response headers
// have gone downstream; from OnHttpResponseHeaders it replaces the upstream
// response. Envoy acts on it after the current callback returns, so the
// callback should then return ActionPause.
func SendHttpResponse(statusCode uint32, headers [][2]string, body []byte, grpcStatus int32) error {
	return toErr(abi.SendLocalResponse(statusCode, "", body, encodePairs(headers), grpcStatus))
}

// ResumeHttpRequest continues a request paused by the filter.
func ResumeHttpRequest() error { return toErr(abi.ContinueStream(abi.StreamHTTPRequest)) }

// ResumeHttpResponse continues a response paused by the filter.
func ResumeHttpResponse() error { return toErr(abi.ContinueStream(abi.StreamHTTPResponse)) }

// CloseHttpRequest resets the request stream (proxy_close_stream).
func CloseHttpRequest() error { return toErr(abi.CloseStream(abi.StreamHTTPRequest)) }

// CloseHttpResponse resets the response stream.
func CloseHttpResponse() error { return toErr(abi.CloseStream(abi.StreamHTTPResponse)) }

// ContinueDownstream resumes reading downstream data on a TCP stream.
func ContinueDownstream() error { return toErr(abi.ContinueStream(abi.StreamDownstream)) }

// ContinueUpstream resumes upstream data on a TCP stream. Envoy answers
// types.ErrorUnimplemented.
func ContinueUpstream() error { return toErr(abi.ContinueStream(abi.StreamUpstream)) }

// CloseDownstream closes the downstream connection of a TCP stream.
func CloseDownstream() error { return toErr(abi.CloseStream(abi.StreamDownstream)) }

// CloseUpstream closes the upstream connection of a TCP stream.
func CloseUpstream() error { return toErr(abi.CloseStream(abi.StreamUpstream)) }

// StreamType names a side of a stream for ContinueStream and CloseStream.
type StreamType uint32

// Stream types.
const (
	StreamTypeRequest    = StreamType(abi.StreamHTTPRequest)
	StreamTypeResponse   = StreamType(abi.StreamHTTPResponse)
	StreamTypeDownstream = StreamType(abi.StreamDownstream)
	StreamTypeUpstream   = StreamType(abi.StreamUpstream)
)

// ContinueStream resumes the paused side st of the current stream
// (proxy_continue_stream). It takes effect after the callback returns.
func ContinueStream(st StreamType) error { return toErr(abi.ContinueStream(abi.StreamType(st))) }

// CloseStream resets or closes side st of the current stream
// (proxy_close_stream). It takes effect after the callback returns.
func CloseStream(st StreamType) error { return toErr(abi.CloseStream(abi.StreamType(st))) }

// GetStatus returns the status of the callout whose callback is running:
// for http callouts Envoy reports BrokenConnection (11) with "reset" on
// failure; for gRPC, in OnClose, the gRPC status and message.
func GetStatus() (code uint32, message string, err error) {
	c, m, st := abi.GetStatus()
	return c, string(m), toErr(st)
}

// ---- properties

// GetProperty returns the host property at path, e.g.
// []string{"request", "path"}. The path travels NUL-separated. The value is
// in the host's encoding: Envoy sends strings and bytes raw, integers as 8
// little-endian bytes, booleans as one byte and maps as serialized pairs.
// A missing property is types.ErrorStatusNotFound.
func GetProperty(path []string) ([]byte, error) {
	b, st := abi.GetProperty(abi.SerializePath(path))
	if st != abi.StatusOK {
		return nil, toErr(st)
	}
	return b, nil
}

// SetProperty sets the host property at path to value (in Envoy, a filter
// state entry of the stream).
func SetProperty(path []string, value []byte) error {
	return toErr(abi.SetProperty(abi.SerializePath(path), value))
}

// ---- http callouts

// DispatchHttpCall sends an http request to the upstream cluster and returns
// its callout id. headers must hold :method, :path and :authority. When the
// answer arrives (or on failure, with numHeaders 0) callBack runs in the
// context that made the call, after the binding has switched the host to it;
// read the answer there with GetHttpCallResponseHeaders/Body/Trailers. A
// timeout of 0 means the host default.
func DispatchHttpCall(cluster string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMillisecond uint32, callBack func(numHeaders, bodySize, numTrailers int)) (uint32, error) {
	var tr []byte
	if len(trailers) > 0 {
		tr = abi.SerializePairs(trailers)
	}
	id, st := abi.HTTPCall(cluster, encodePairs(headers), body, tr, timeoutMillisecond)
	if st != abi.StatusOK {
		return 0, toErr(st)
	}
	vm.callouts[id] = httpCallout{callback: callBack, contextID: vm.active}
	return id, nil
}

// ---- shared data

// GetSharedData returns the value stored under key across all VMs of this
// vm_id, and its CAS token for SetSharedData.
func GetSharedData(key string) (value []byte, cas uint32, err error) {
	v, c, st := abi.GetSharedData(key)
	if st != abi.StatusOK {
		return nil, 0, toErr(st)
	}
	return v, c, nil
}

// PeekSharedData is GetSharedData without the copy: the value is valid
// until the next call that returns data (see "Reading host data in place" in the package documentation). For decoding a value at
// once, as a compare-and-swap loop does.
func PeekSharedData(key string) (value []byte, cas uint32, err error) {
	abi.Peek()
	return GetSharedData(key)
}

// SetSharedData stores value under key. A non-zero cas must equal the
// token returned by the last GetSharedData for the key, or the call fails
// with types.ErrorStatusCasMismatch; 0 writes unconditionally.
func SetSharedData(key string, value []byte, cas uint32) error {
	return toErr(abi.SetSharedData(key, value, cas))
}

// ---- shared queues

// RegisterSharedQueue creates (or opens) the queue name of this vm_id and
// returns its id. OnQueueReady of the registering plugin context runs when
// items are enqueued.
func RegisterSharedQueue(name string) (uint32, error) {
	id, st := abi.RegisterSharedQueue(name)
	return id, toErr(st)
}

// ResolveSharedQueue returns the id of the queue name registered by vmID.
func ResolveSharedQueue(vmID, name string) (uint32, error) {
	id, st := abi.ResolveSharedQueue(vmID, name)
	return id, toErr(st)
}

// EnqueueSharedQueue adds data to the end of queue queueID.
func EnqueueSharedQueue(queueID uint32, data []byte) error {
	return toErr(abi.EnqueueSharedQueue(queueID, data))
}

// DequeueSharedQueue removes and returns the first item of queue queueID,
// or types.ErrorStatusEmpty.
func DequeueSharedQueue(queueID uint32) ([]byte, error) {
	b, st := abi.DequeueSharedQueue(queueID)
	if st != abi.StatusOK {
		return nil, toErr(st)
	}
	return b, nil
}

// ---- foreign functions

// CallForeignFunction calls a function the host registered under name.
func CallForeignFunction(name string, args []byte) ([]byte, error) {
	b, st := abi.CallForeignFunction(name, args)
	if st != abi.StatusOK {
		return nil, toErr(st)
	}
	return b, nil
}
