//go:build !wasip1

package abi

// Host is the proxy side of the ABI for native builds: one method per host
// function, with memory arguments as byte slices and strings and results as
// return values. Returned slices belong to the caller.
//
// A Host sees header maps and property paths in their serialized form, as a
// real proxy does, and decodes them with DeserializePairs/DeserializePath.
type Host interface {
	Log(level LogLevel, msg string) Status
	GetLogLevel() (LogLevel, Status)
	SetTickPeriodMilliseconds(ms uint32) Status
	SetEffectiveContext(contextID uint32) Status
	Done() Status
	GetCurrentTimeNanoseconds() (uint64, Status)

	GetBufferBytes(bt BufferType, start, maxSize uint32) ([]byte, Status)
	GetBufferStatus(bt BufferType) (size uint32, flags uint32, st Status)
	SetBufferBytes(bt BufferType, start, size uint32, value []byte) Status

	GetHeaderMapSize(mt MapType) (uint32, Status)
	GetHeaderMapPairs(mt MapType) ([]byte, Status)
	SetHeaderMapPairs(mt MapType, serialized []byte) Status
	GetHeaderMapValue(mt MapType, key string) ([]byte, Status)
	AddHeaderMapValue(mt MapType, key, value string) Status
	ReplaceHeaderMapValue(mt MapType, key, value string) Status
	RemoveHeaderMapValue(mt MapType, key string) Status

	GetProperty(path []byte) ([]byte, Status)
	SetProperty(path, value []byte) Status

	SendLocalResponse(statusCode uint32, details string, body, serializedHeaders []byte, grpcStatus int32) Status
	ContinueStream(st StreamType) Status
	CloseStream(st StreamType) Status
	GetStatus() (code uint32, msg []byte, st Status)

	HTTPCall(upstream string, headers, body, trailers []byte, timeoutMillis uint32) (uint32, Status)
	GrpcCall(upstream, service, method string, initialMetadata, message []byte, timeoutMillis uint32) (uint32, Status)
	GrpcStream(upstream, service, method string, initialMetadata []byte) (uint32, Status)
	GrpcSend(streamID uint32, message []byte, endStream bool) Status
	GrpcCancel(id uint32) Status
	GrpcClose(id uint32) Status

	GetSharedData(key string) (value []byte, cas uint32, st Status)
	SetSharedData(key string, value []byte, cas uint32) Status
	RegisterSharedQueue(name string) (uint32, Status)
	ResolveSharedQueue(vmID, name string) (uint32, Status)
	EnqueueSharedQueue(queueID uint32, value []byte) Status
	DequeueSharedQueue(queueID uint32) ([]byte, Status)

	DefineMetric(mt MetricType, name string) (uint32, Status)
	IncrementMetric(metricID uint32, offset int64) Status
	RecordMetric(metricID uint32, value uint64) Status
	GetMetric(metricID uint32) (uint64, Status)

	CallForeignFunction(name string, args []byte) ([]byte, Status)
}

var host Host

// SetHost installs h as the proxy for native builds and returns the previous
// one. Passing nil removes it; host calls then panic with a message that
// names the missing host.
func SetHost(h Host) Host {
	prev := host
	host = h
	return prev
}

func current() Host {
	if host == nil {
		panic("proxywasm: host call without a host; native tests must run under proxytest.NewHostEmulator")
	}
	return host
}

// Natively, Peek keeps the wasip1 build's contract strictly so that native
// tests catch what would read stale host data in a VM: the next call that
// returns data hands back a copy the package owns, and the call that returns
// data after it overwrites that copy with PoisonByte before asking the host.
// In a VM the scratch buffer is reused the same way, but only when the new
// data is small enough to land in it, so a stale read there shows only
// sometimes; here it shows every time.
var (
	peek   bool
	peeked []byte // what the last peeking call handed out, until invalidated
)

// PoisonByte is what native builds overwrite peeked data with once it is no
// longer valid (see Peek).
const PoisonByte = 0xDB

// Peek makes the next host call that returns data hand back bytes that are
// valid only until the host call after it that returns data (see the wasip1
// build's Peek).
func Peek() { peek = true }

// invalidate poisons what the last peeking call handed out: every call that
// returns data runs it first, as the wasip1 build reuses its scratch buffer.
func invalidate() {
	for i := range peeked {
		peeked[i] = PoisonByte
	}
	peeked = nil
}

// returned is the result of a call that returns data: a copy of b the
// package owns when Peek asked for data in place (so invalidate can poison
// it), else b, which the caller owns.
func returned(b []byte) []byte {
	if !peek {
		return b
	}
	peek = false
	if b == nil {
		return nil
	}
	out := make([]byte, len(b))
	copy(out, b)
	peeked = out
	return out
}

// ReserveScratch is a no-op natively (see ReserveScratch there).
func ReserveScratch(int) {}

// Log calls proxy_log.
func Log(level LogLevel, msg string) Status { return current().Log(level, msg) }

// GetLogLevel calls proxy_get_log_level.
func GetLogLevel() (LogLevel, Status) { return current().GetLogLevel() }

// SetTickPeriodMilliseconds calls proxy_set_tick_period_milliseconds.
func SetTickPeriodMilliseconds(ms uint32) Status { return current().SetTickPeriodMilliseconds(ms) }

// SetEffectiveContext calls proxy_set_effective_context.
func SetEffectiveContext(contextID uint32) Status { return current().SetEffectiveContext(contextID) }

// Done calls proxy_done.
func Done() Status { return current().Done() }

// GetCurrentTimeNanoseconds calls proxy_get_current_time_nanoseconds.
func GetCurrentTimeNanoseconds() (uint64, Status) { return current().GetCurrentTimeNanoseconds() }

// GetBufferBytes calls proxy_get_buffer_bytes.
func GetBufferBytes(bt BufferType, start, maxSize uint32) ([]byte, Status) {
	invalidate()
	b, st := current().GetBufferBytes(bt, start, maxSize)
	return returned(b), st
}

// GetBufferStatus calls proxy_get_buffer_status.
func GetBufferStatus(bt BufferType) (uint32, uint32, Status) { return current().GetBufferStatus(bt) }

// SetBufferBytes calls proxy_set_buffer_bytes.
func SetBufferBytes(bt BufferType, start, size uint32, value []byte) Status {
	return current().SetBufferBytes(bt, start, size, value)
}

// GetHeaderMapSize calls proxy_get_header_map_size.
func GetHeaderMapSize(mt MapType) (uint32, Status) { return current().GetHeaderMapSize(mt) }

// GetHeaderMapPairs calls proxy_get_header_map_pairs.
func GetHeaderMapPairs(mt MapType) ([]byte, Status) {
	invalidate()
	b, st := current().GetHeaderMapPairs(mt)
	return returned(b), st
}

// SetHeaderMapPairs calls proxy_set_header_map_pairs.
func SetHeaderMapPairs(mt MapType, serialized []byte) Status {
	return current().SetHeaderMapPairs(mt, serialized)
}

// GetHeaderMapValue calls proxy_get_header_map_value.
func GetHeaderMapValue(mt MapType, key string) ([]byte, Status) {
	invalidate()
	b, st := current().GetHeaderMapValue(mt, key)
	return returned(b), st
}

// AddHeaderMapValue calls proxy_add_header_map_value.
func AddHeaderMapValue(mt MapType, key, value string) Status {
	return current().AddHeaderMapValue(mt, key, value)
}

// ReplaceHeaderMapValue calls proxy_replace_header_map_value.
func ReplaceHeaderMapValue(mt MapType, key, value string) Status {
	return current().ReplaceHeaderMapValue(mt, key, value)
}

// RemoveHeaderMapValue calls proxy_remove_header_map_value.
func RemoveHeaderMapValue(mt MapType, key string) Status {
	return current().RemoveHeaderMapValue(mt, key)
}

// GetProperty calls proxy_get_property.
func GetProperty(path []byte) ([]byte, Status) {
	invalidate()
	b, st := current().GetProperty(path)
	return returned(b), st
}

// SetProperty calls proxy_set_property.
func SetProperty(path, value []byte) Status { return current().SetProperty(path, value) }

// SendLocalResponse calls proxy_send_local_response.
func SendLocalResponse(statusCode uint32, details string, body, serializedHeaders []byte, grpcStatus int32) Status {
	return current().SendLocalResponse(statusCode, details, body, serializedHeaders, grpcStatus)
}

// ContinueStream calls proxy_continue_stream.
func ContinueStream(st StreamType) Status { return current().ContinueStream(st) }

// CloseStream calls proxy_close_stream.
func CloseStream(st StreamType) Status { return current().CloseStream(st) }

// GetStatus calls proxy_get_status.
func GetStatus() (uint32, []byte, Status) {
	invalidate()
	code, msg, st := current().GetStatus()
	return code, returned(msg), st
}

// HTTPCall calls proxy_http_call.
func HTTPCall(upstream string, headers, body, trailers []byte, timeoutMillis uint32) (uint32, Status) {
	return current().HTTPCall(upstream, headers, body, trailers, timeoutMillis)
}

// GrpcCall calls proxy_grpc_call.
func GrpcCall(upstream, service, method string, initialMetadata, message []byte, timeoutMillis uint32) (uint32, Status) {
	return current().GrpcCall(upstream, service, method, initialMetadata, message, timeoutMillis)
}

// GrpcStream calls proxy_grpc_stream.
func GrpcStream(upstream, service, method string, initialMetadata []byte) (uint32, Status) {
	return current().GrpcStream(upstream, service, method, initialMetadata)
}

// GrpcSend calls proxy_grpc_send.
func GrpcSend(streamID uint32, message []byte, endStream bool) Status {
	return current().GrpcSend(streamID, message, endStream)
}

// GrpcCancel calls proxy_grpc_cancel.
func GrpcCancel(id uint32) Status { return current().GrpcCancel(id) }

// GrpcClose calls proxy_grpc_close.
func GrpcClose(id uint32) Status { return current().GrpcClose(id) }

// GetSharedData calls proxy_get_shared_data.
func GetSharedData(key string) ([]byte, uint32, Status) {
	invalidate()
	b, cas, st := current().GetSharedData(key)
	return returned(b), cas, st
}

// SetSharedData calls proxy_set_shared_data.
func SetSharedData(key string, value []byte, cas uint32) Status {
	return current().SetSharedData(key, value, cas)
}

// RegisterSharedQueue calls proxy_register_shared_queue.
func RegisterSharedQueue(name string) (uint32, Status) { return current().RegisterSharedQueue(name) }

// ResolveSharedQueue calls proxy_resolve_shared_queue.
func ResolveSharedQueue(vmID, name string) (uint32, Status) {
	return current().ResolveSharedQueue(vmID, name)
}

// EnqueueSharedQueue calls proxy_enqueue_shared_queue.
func EnqueueSharedQueue(queueID uint32, value []byte) Status {
	return current().EnqueueSharedQueue(queueID, value)
}

// DequeueSharedQueue calls proxy_dequeue_shared_queue.
func DequeueSharedQueue(queueID uint32) ([]byte, Status) {
	invalidate()
	b, st := current().DequeueSharedQueue(queueID)
	return returned(b), st
}

// DefineMetric calls proxy_define_metric.
func DefineMetric(mt MetricType, name string) (uint32, Status) {
	return current().DefineMetric(mt, name)
}

// IncrementMetric calls proxy_increment_metric.
func IncrementMetric(metricID uint32, offset int64) Status {
	return current().IncrementMetric(metricID, offset)
}

// RecordMetric calls proxy_record_metric.
func RecordMetric(metricID uint32, value uint64) Status {
	return current().RecordMetric(metricID, value)
}

// GetMetric calls proxy_get_metric.
func GetMetric(metricID uint32) (uint64, Status) { return current().GetMetric(metricID) }

// CallForeignFunction calls proxy_call_foreign_function.
func CallForeignFunction(name string, args []byte) ([]byte, Status) {
	invalidate()
	b, st := current().CallForeignFunction(name, args)
	return returned(b), st
}
