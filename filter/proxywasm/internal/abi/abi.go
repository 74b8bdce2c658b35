// Package abi holds the proxy-wasm ABI v0.2.1 at the byte level: the enum
// values both sides agree on, the wire formats of header maps and property
// paths, and the host functions as Go functions over byte slices.
//
// In a wasip1 build the host functions call the `env.proxy_*` imports of the
// proxy. In any other build they forward to a Host installed with SetHost, so
// the encoding code in this package and in package proxywasm runs unchanged
// under `go test` (see package proxytest).
package abi

// Status is a proxy_status_t (WasmResult in proxy-wasm-cpp-host) returned by
// every host function.
type Status uint32

// Status values. The spec lists 0-4, 6-8, 10 and 12; proxy-wasm-cpp-host and
// Envoy also return 5, 9 and 11 (for example BrokenConnection as the status of
// a failed http callout).
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusBadExpression        Status = 5
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCasMismatch          Status = 8
	StatusResultMismatch       Status = 9
	StatusInternalFailure      Status = 10
	StatusBrokenConnection     Status = 11
	StatusUnimplemented        Status = 12
)

// MapType is a proxy_map_type_t: which header-like map a call addresses.
type MapType uint32

// Map types.
const (
	MapHTTPRequestHeaders       MapType = 0
	MapHTTPRequestTrailers      MapType = 1
	MapHTTPResponseHeaders      MapType = 2
	MapHTTPResponseTrailers     MapType = 3
	MapGrpcInitialMetadata      MapType = 4
	MapGrpcTrailingMetadata     MapType = 5
	MapHTTPCallResponseHeaders  MapType = 6
	MapHTTPCallResponseTrailers MapType = 7
)

// BufferType is a proxy_buffer_type_t: which byte buffer a call addresses.
type BufferType uint32

// Buffer types.
const (
	BufferHTTPRequestBody          BufferType = 0
	BufferHTTPResponseBody         BufferType = 1
	BufferDownstreamData           BufferType = 2
	BufferUpstreamData             BufferType = 3
	BufferHTTPCallResponseBody     BufferType = 4
	BufferGrpcReceive              BufferType = 5
	BufferVMConfiguration          BufferType = 6
	BufferPluginConfiguration      BufferType = 7
	BufferForeignFunctionArguments BufferType = 8
)

// StreamType is a proxy_stream_type_t, the argument of continue/close stream.
type StreamType uint32

// Stream types.
const (
	StreamHTTPRequest  StreamType = 0
	StreamHTTPResponse StreamType = 1
	StreamDownstream   StreamType = 2
	StreamUpstream     StreamType = 3
)

// MetricType is a proxy_metric_type_t.
type MetricType uint32

// Metric types.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

// LogLevel is a proxy_log_level_t.
type LogLevel uint32

// Log levels.
const (
	LogTrace    LogLevel = 0
	LogDebug    LogLevel = 1
	LogInfo     LogLevel = 2
	LogWarn     LogLevel = 3
	LogError    LogLevel = 4
	LogCritical LogLevel = 5
)
