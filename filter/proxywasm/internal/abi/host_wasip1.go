//go:build wasip1

package abi

import "unsafe"

// Data the host hands back (header maps, buffers, property values) arrives in
// memory the host obtains by calling proxy_on_memory_allocate from inside the
// host call. That export avoids the Go heap where it can: a heap allocation
// may start a collection, whose stop-the-world calls WASI poll_oneoff, and
// Envoy restricts the host functions a module may call while it allocates.
// So requests up to scratchMax bytes are served from a reused scratch buffer
// (copied out by take once the host call has returned); larger ones, and a
// second request within the same host call, get their own buffer, kept in
// pending until take so the collector cannot reclaim it while the host
// writes.
const scratchMax = 64 << 10

var (
	scratch     []byte
	scratchUsed bool
	pending     [][]byte
	// peek makes the next take return data in scratch without copying it
	// (see Peek).
	peek bool
)

// Peek makes the next host call that returns data hand back the host's
// bytes in place when they arrived in the scratch buffer, instead of a copy:
// valid only until the next host call, for callers that read and forget.
func Peek() { peek = true }

// ReserveScratch grows the scratch buffer to n bytes, so that data up to n
// bytes (a request body) arrives there instead of in a buffer allocated for
// each call. Call it outside host calls; the scratch never shrinks.
func ReserveScratch(n int) {
	if n > len(scratch) {
		scratch = make([]byte, n)
	}
}

func init() {
	// Pre-size the bookkeeping so the allocator export normally makes no
	// heap allocation at all. init runs in _initialize and calls no host.
	scratch = make([]byte, 4<<10)
	pending = make([][]byte, 0, 4)
}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) uint32 {
	if size == 0 {
		size = 1
	}
	if !scratchUsed && size <= max(scratchMax, uint32(len(scratch))) {
		if uint32(len(scratch)) < size {
			scratch = make([]byte, size)
		}
		scratchUsed = true
		return uint32(uintptr(unsafe.Pointer(&scratch[0])))
	}
	b := make([]byte, size)
	pending = append(pending, b)
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

// take returns the data of size bytes the host placed at ptr and releases
// every allocation made during the host call. Scratch contents are copied,
// so the result stays valid after the next host call, unless Peek asked
// for them in place. A pointer the guest
// did not hand out yields nil.
func take(ptr, size uint32) []byte {
	var out []byte
	if ptr != 0 {
		if scratchUsed && uint32(uintptr(unsafe.Pointer(&scratch[0]))) == ptr && int(size) <= len(scratch) {
			if peek {
				out = scratch[:size:size]
			} else {
				out = make([]byte, size)
				copy(out, scratch[:size])
			}
		} else {
			for _, b := range pending {
				if uint32(uintptr(unsafe.Pointer(&b[0]))) == ptr && int(size) <= len(b) {
					out = b[:size:size]
					break
				}
			}
		}
	}
	scratchUsed, peek = false, false
	clear(pending)
	pending = pending[:0]
	return out
}

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(ret unsafe.Pointer) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(ms uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(id uint32) uint32

//go:wasmimport env proxy_done
func proxyDone() uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(ret unsafe.Pointer) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bt, start, maxSize uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_get_buffer_status
func proxyGetBufferStatus(bt uint32, retSize, retFlags unsafe.Pointer) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(bt, start, size uint32, data unsafe.Pointer, dataSize uint32) uint32

//go:wasmimport env proxy_get_header_map_size
func proxyGetHeaderMapSize(mt uint32, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mt uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxySetHeaderMapPairs(mt uint32, data unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mt uint32, key unsafe.Pointer, keySize uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mt uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(mt uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(mt uint32, key unsafe.Pointer, keySize uint32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(path unsafe.Pointer, pathSize uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_set_property
func proxySetProperty(path unsafe.Pointer, pathSize uint32, value unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(statusCode uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpcStatus int32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(st uint32) uint32

//go:wasmimport env proxy_close_stream
func proxyCloseStream(st uint32) uint32

//go:wasmimport env proxy_get_status
func proxyGetStatus(retCode, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_http_call
func proxyHTTPCall(upstream unsafe.Pointer, upstreamSize uint32, headers unsafe.Pointer, headersSize uint32, body unsafe.Pointer, bodySize uint32, trailers unsafe.Pointer, trailersSize uint32, timeout uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_grpc_call
func proxyGrpcCall(upstream unsafe.Pointer, upstreamSize uint32, service unsafe.Pointer, serviceSize uint32, method unsafe.Pointer, methodSize uint32, md unsafe.Pointer, mdSize uint32, msg unsafe.Pointer, msgSize uint32, timeout uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_grpc_stream
func proxyGrpcStream(upstream unsafe.Pointer, upstreamSize uint32, service unsafe.Pointer, serviceSize uint32, method unsafe.Pointer, methodSize uint32, md unsafe.Pointer, mdSize uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_grpc_send
func proxyGrpcSend(id uint32, msg unsafe.Pointer, msgSize uint32, endStream uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxyGrpcCancel(id uint32) uint32

//go:wasmimport env proxy_grpc_close
func proxyGrpcClose(id uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(key unsafe.Pointer, keySize uint32, retData, retSize, retCas unsafe.Pointer) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(name unsafe.Pointer, nameSize uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxyResolveSharedQueue(vmID unsafe.Pointer, vmIDSize uint32, name unsafe.Pointer, nameSize uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(id uint32, value unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(id uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(mt uint32, name unsafe.Pointer, nameSize uint32, retID unsafe.Pointer) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, offset int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(id uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(id uint32, ret unsafe.Pointer) uint32

//go:wasmimport env proxy_call_foreign_function
func proxyCallForeignFunction(name unsafe.Pointer, nameSize uint32, args unsafe.Pointer, argsSize uint32, retData, retSize unsafe.Pointer) uint32

// Log calls proxy_log.
func Log(level LogLevel, msg string) Status {
	return Status(proxyLog(uint32(level), strPtr(msg), uint32(len(msg))))
}

// ret receives the values host calls return through pointers. Go's escape
// analysis moves a local whose address goes to a wasmimport function to the
// heap, an allocation per host call; a VM runs one callback at a time, so one
// package-level set of slots serves every call. Each wrapper reads its slots
// before it returns.
var ret struct {
	p, n, cas, id, l, size, flags, code uint32
	t, v                                uint64
}

// GetLogLevel calls proxy_get_log_level.
func GetLogLevel() (LogLevel, Status) {
	st := Status(proxyGetLogLevel(unsafe.Pointer(&ret.l)))
	return LogLevel(ret.l), st
}

// SetTickPeriodMilliseconds calls proxy_set_tick_period_milliseconds.
func SetTickPeriodMilliseconds(ms uint32) Status { return Status(proxySetTickPeriodMilliseconds(ms)) }

// SetEffectiveContext calls proxy_set_effective_context.
func SetEffectiveContext(contextID uint32) Status {
	return Status(proxySetEffectiveContext(contextID))
}

// Done calls proxy_done.
func Done() Status { return Status(proxyDone()) }

// GetCurrentTimeNanoseconds calls proxy_get_current_time_nanoseconds.
func GetCurrentTimeNanoseconds() (uint64, Status) {
	st := Status(proxyGetCurrentTimeNanoseconds(unsafe.Pointer(&ret.t)))
	return ret.t, st
}

// GetBufferBytes calls proxy_get_buffer_bytes.
func GetBufferBytes(bt BufferType, start, maxSize uint32) ([]byte, Status) {
	st := Status(proxyGetBufferBytes(uint32(bt), start, maxSize, unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n)))
	b := take(ret.p, ret.n)
	if st != StatusOK {
		return nil, st
	}
	return b, st
}

// GetBufferStatus calls proxy_get_buffer_status.
func GetBufferStatus(bt BufferType) (uint32, uint32, Status) {
	st := Status(proxyGetBufferStatus(uint32(bt), unsafe.Pointer(&ret.size), unsafe.Pointer(&ret.flags)))
	return ret.size, ret.flags, st
}

// SetBufferBytes calls proxy_set_buffer_bytes.
func SetBufferBytes(bt BufferType, start, size uint32, value []byte) Status {
	return Status(proxySetBufferBytes(uint32(bt), start, size, bytesPtr(value), uint32(len(value))))
}

// GetHeaderMapSize calls proxy_get_header_map_size.
func GetHeaderMapSize(mt MapType) (uint32, Status) {
	st := Status(proxyGetHeaderMapSize(uint32(mt), unsafe.Pointer(&ret.n)))
	return ret.n, st
}

// GetHeaderMapPairs calls proxy_get_header_map_pairs.
func GetHeaderMapPairs(mt MapType) ([]byte, Status) {
	st := Status(proxyGetHeaderMapPairs(uint32(mt), unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n)))
	b := take(ret.p, ret.n)
	if st != StatusOK {
		return nil, st
	}
	return b, st
}

// SetHeaderMapPairs calls proxy_set_header_map_pairs.
func SetHeaderMapPairs(mt MapType, serialized []byte) Status {
	return Status(proxySetHeaderMapPairs(uint32(mt), bytesPtr(serialized), uint32(len(serialized))))
}

// GetHeaderMapValue calls proxy_get_header_map_value.
func GetHeaderMapValue(mt MapType, key string) ([]byte, Status) {
	st := Status(proxyGetHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n)))
	b := take(ret.p, ret.n)
	if st != StatusOK {
		return nil, st
	}
	return b, st
}

// AddHeaderMapValue calls proxy_add_header_map_value.
func AddHeaderMapValue(mt MapType, key, value string) Status {
	return Status(proxyAddHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), strPtr(value), uint32(len(value))))
}

// ReplaceHeaderMapValue calls proxy_replace_header_map_value.
func ReplaceHeaderMapValue(mt MapType, key, value string) Status {
	return Status(proxyReplaceHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), strPtr(value), uint32(len(value))))
}

// RemoveHeaderMapValue calls proxy_remove_header_map_value.
func RemoveHeaderMapValue(mt MapType, key string) Status {
	return Status(proxyRemoveHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key))))
}

// GetProperty calls proxy_get_property.
func GetProperty(path []byte) ([]byte, Status) {
	st := Status(proxyGetProperty(bytesPtr(path), uint32(len(path)), unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n)))
	b := take(ret.p, ret.n)
	if st != StatusOK {
		return nil, st
	}
	return b, st
}

// SetProperty calls proxy_set_property.
func SetProperty(path, value []byte) Status {
	return Status(proxySetProperty(bytesPtr(path), uint32(len(path)), bytesPtr(value), uint32(len(value))))
}

// SendLocalResponse calls proxy_send_local_response.
func SendLocalResponse(statusCode uint32, details string, body, serializedHeaders []byte, grpcStatus int32) Status {
	return Status(proxySendLocalResponse(statusCode, strPtr(details), uint32(len(details)),
		bytesPtr(body), uint32(len(body)), bytesPtr(serializedHeaders), uint32(len(serializedHeaders)), grpcStatus))
}

// ContinueStream calls proxy_continue_stream.
func ContinueStream(st StreamType) Status { return Status(proxyContinueStream(uint32(st))) }

// CloseStream calls proxy_close_stream.
func CloseStream(st StreamType) Status { return Status(proxyCloseStream(uint32(st))) }

// GetStatus calls proxy_get_status.
func GetStatus() (uint32, []byte, Status) {
	st := Status(proxyGetStatus(unsafe.Pointer(&ret.code), unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n)))
	b := take(ret.p, ret.n)
	return ret.code, b, st
}

// HTTPCall calls proxy_http_call.
func HTTPCall(upstream string, headers, body, trailers []byte, timeoutMillis uint32) (uint32, Status) {
	st := Status(proxyHTTPCall(strPtr(upstream), uint32(len(upstream)), bytesPtr(headers), uint32(len(headers)),
		bytesPtr(body), uint32(len(body)), bytesPtr(trailers), uint32(len(trailers)), timeoutMillis, unsafe.Pointer(&ret.id)))
	return ret.id, st
}

// GrpcCall calls proxy_grpc_call.
func GrpcCall(upstream, service, method string, initialMetadata, message []byte, timeoutMillis uint32) (uint32, Status) {
	st := Status(proxyGrpcCall(strPtr(upstream), uint32(len(upstream)), strPtr(service), uint32(len(service)),
		strPtr(method), uint32(len(method)), bytesPtr(initialMetadata), uint32(len(initialMetadata)),
		bytesPtr(message), uint32(len(message)), timeoutMillis, unsafe.Pointer(&ret.id)))
	return ret.id, st
}

// GrpcStream calls proxy_grpc_stream.
func GrpcStream(upstream, service, method string, initialMetadata []byte) (uint32, Status) {
	st := Status(proxyGrpcStream(strPtr(upstream), uint32(len(upstream)), strPtr(service), uint32(len(service)),
		strPtr(method), uint32(len(method)), bytesPtr(initialMetadata), uint32(len(initialMetadata)), unsafe.Pointer(&ret.id)))
	return ret.id, st
}

// GrpcSend calls proxy_grpc_send.
func GrpcSend(streamID uint32, message []byte, endStream bool) Status {
	var eos uint32
	if endStream {
		eos = 1
	}
	return Status(proxyGrpcSend(streamID, bytesPtr(message), uint32(len(message)), eos))
}

// GrpcCancel calls proxy_grpc_cancel.
func GrpcCancel(id uint32) Status { return Status(proxyGrpcCancel(id)) }

// GrpcClose calls proxy_grpc_close.
func GrpcClose(id uint32) Status { return Status(proxyGrpcClose(id)) }

// GetSharedData calls proxy_get_shared_data.
func GetSharedData(key string) ([]byte, uint32, Status) {
	st := Status(proxyGetSharedData(strPtr(key), uint32(len(key)), unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n), unsafe.Pointer(&ret.cas)))
	b := take(ret.p, ret.n)
	if st != StatusOK {
		return nil, 0, st
	}
	return b, ret.cas, st
}

// SetSharedData calls proxy_set_shared_data.
func SetSharedData(key string, value []byte, cas uint32) Status {
	return Status(proxySetSharedData(strPtr(key), uint32(len(key)), bytesPtr(value), uint32(len(value)), cas))
}

// RegisterSharedQueue calls proxy_register_shared_queue.
func RegisterSharedQueue(name string) (uint32, Status) {
	st := Status(proxyRegisterSharedQueue(strPtr(name), uint32(len(name)), unsafe.Pointer(&ret.id)))
	return ret.id, st
}

// ResolveSharedQueue calls proxy_resolve_shared_queue.
func ResolveSharedQueue(vmID, name string) (uint32, Status) {
	st := Status(proxyResolveSharedQueue(strPtr(vmID), uint32(len(vmID)), strPtr(name), uint32(len(name)), unsafe.Pointer(&ret.id)))
	return ret.id, st
}

// EnqueueSharedQueue calls proxy_enqueue_shared_queue.
func EnqueueSharedQueue(queueID uint32, value []byte) Status {
	return Status(proxyEnqueueSharedQueue(queueID, bytesPtr(value), uint32(len(value))))
}

// DequeueSharedQueue calls proxy_dequeue_shared_queue.
func DequeueSharedQueue(queueID uint32) ([]byte, Status) {
	st := Status(proxyDequeueSharedQueue(queueID, unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n)))
	b := take(ret.p, ret.n)
	if st != StatusOK {
		return nil, st
	}
	return b, st
}

// DefineMetric calls proxy_define_metric.
func DefineMetric(mt MetricType, name string) (uint32, Status) {
	st := Status(proxyDefineMetric(uint32(mt), strPtr(name), uint32(len(name)), unsafe.Pointer(&ret.id)))
	return ret.id, st
}

// IncrementMetric calls proxy_increment_metric.
func IncrementMetric(metricID uint32, offset int64) Status {
	return Status(proxyIncrementMetric(metricID, offset))
}

// RecordMetric calls proxy_record_metric.
func RecordMetric(metricID uint32, value uint64) Status {
	return Status(proxyRecordMetric(metricID, value))
}

// GetMetric calls proxy_get_metric.
func GetMetric(metricID uint32) (uint64, Status) {
	st := Status(proxyGetMetric(metricID, unsafe.Pointer(&ret.v)))
	return ret.v, st
}

// CallForeignFunction calls proxy_call_foreign_function.
func CallForeignFunction(name string, args []byte) ([]byte, Status) {
	st := Status(proxyCallForeignFunction(strPtr(name), uint32(len(name)), bytesPtr(args), uint32(len(args)), unsafe.Pointer(&ret.p), unsafe.Pointer(&ret.n)))
	b := take(ret.p, ret.n)
	if st != StatusOK {
		return nil, st
	}
	return b, st
}
