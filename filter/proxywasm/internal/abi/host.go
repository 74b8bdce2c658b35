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

func Log(level LogLevel, msg string) Status       { return current().Log(level, msg) }
func GetLogLevel() (LogLevel, Status)             { return current().GetLogLevel() }
func SetTickPeriodMilliseconds(ms uint32) Status  { return current().SetTickPeriodMilliseconds(ms) }
func SetEffectiveContext(contextID uint32) Status { return current().SetEffectiveContext(contextID) }
func Done() Status                                { return current().Done() }
func GetCurrentTimeNanoseconds() (uint64, Status) { return current().GetCurrentTimeNanoseconds() }

func GetBufferBytes(bt BufferType, start, maxSize uint32) ([]byte, Status) {
	return current().GetBufferBytes(bt, start, maxSize)
}
func GetBufferStatus(bt BufferType) (uint32, uint32, Status) { return current().GetBufferStatus(bt) }
func SetBufferBytes(bt BufferType, start, size uint32, value []byte) Status {
	return current().SetBufferBytes(bt, start, size, value)
}

func GetHeaderMapSize(mt MapType) (uint32, Status)  { return current().GetHeaderMapSize(mt) }
func GetHeaderMapPairs(mt MapType) ([]byte, Status) { return current().GetHeaderMapPairs(mt) }
func SetHeaderMapPairs(mt MapType, serialized []byte) Status {
	return current().SetHeaderMapPairs(mt, serialized)
}
func GetHeaderMapValue(mt MapType, key string) ([]byte, Status) {
	return current().GetHeaderMapValue(mt, key)
}
func AddHeaderMapValue(mt MapType, key, value string) Status {
	return current().AddHeaderMapValue(mt, key, value)
}
func ReplaceHeaderMapValue(mt MapType, key, value string) Status {
	return current().ReplaceHeaderMapValue(mt, key, value)
}
func RemoveHeaderMapValue(mt MapType, key string) Status {
	return current().RemoveHeaderMapValue(mt, key)
}

func GetProperty(path []byte) ([]byte, Status) { return current().GetProperty(path) }
func SetProperty(path, value []byte) Status    { return current().SetProperty(path, value) }

func SendLocalResponse(statusCode uint32, details string, body, serializedHeaders []byte, grpcStatus int32) Status {
	return current().SendLocalResponse(statusCode, details, body, serializedHeaders, grpcStatus)
}
func ContinueStream(st StreamType) Status { return current().ContinueStream(st) }
func CloseStream(st StreamType) Status    { return current().CloseStream(st) }
func GetStatus() (uint32, []byte, Status) { return current().GetStatus() }

func HTTPCall(upstream string, headers, body, trailers []byte, timeoutMillis uint32) (uint32, Status) {
	return current().HTTPCall(upstream, headers, body, trailers, timeoutMillis)
}
func GrpcCall(upstream, service, method string, initialMetadata, message []byte, timeoutMillis uint32) (uint32, Status) {
	return current().GrpcCall(upstream, service, method, initialMetadata, message, timeoutMillis)
}
func GrpcStream(upstream, service, method string, initialMetadata []byte) (uint32, Status) {
	return current().GrpcStream(upstream, service, method, initialMetadata)
}
func GrpcSend(streamID uint32, message []byte, endStream bool) Status {
	return current().GrpcSend(streamID, message, endStream)
}
func GrpcCancel(id uint32) Status { return current().GrpcCancel(id) }
func GrpcClose(id uint32) Status  { return current().GrpcClose(id) }

func GetSharedData(key string) ([]byte, uint32, Status) { return current().GetSharedData(key) }
func SetSharedData(key string, value []byte, cas uint32) Status {
	return current().SetSharedData(key, value, cas)
}
func RegisterSharedQueue(name string) (uint32, Status) { return current().RegisterSharedQueue(name) }
func ResolveSharedQueue(vmID, name string) (uint32, Status) {
	return current().ResolveSharedQueue(vmID, name)
}
func EnqueueSharedQueue(queueID uint32, value []byte) Status {
	return current().EnqueueSharedQueue(queueID, value)
}
func DequeueSharedQueue(queueID uint32) ([]byte, Status) {
	return current().DequeueSharedQueue(queueID)
}

func DefineMetric(mt MetricType, name string) (uint32, Status) {
	return current().DefineMetric(mt, name)
}
func IncrementMetric(metricID uint32, offset int64) Status {
	return current().IncrementMetric(metricID, offset)
}
func RecordMetric(metricID uint32, value uint64) Status {
	return current().RecordMetric(metricID, value)
}
func GetMetric(metricID uint32) (uint64, Status) { return current().GetMetric(metricID) }

func CallForeignFunction(name string, args []byte) ([]byte, Status) {
	return current().CallForeignFunction(name, args)
}
