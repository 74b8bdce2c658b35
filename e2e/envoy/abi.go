package envoy

import (
	"encoding/binary"
	"errors"
)

// The host's ABI constants are written here, from the proxy-wasm spec and
// proxy-wasm-cpp-host, and are deliberately not imported from the guest
// binding (filter/proxywasm/internal/abi): the host is what the binding is
// tested against, and a value both took from one place could be wrong on both
// sides without any test noticing. The names agree with the binding's and the
// spec's (WasmResult SerializationFailure, not ...Failed); TestABIConstants
// checks the values against the spec's numbers written out a second time.

// Status is a proxy-wasm WasmResult as the host returns it to the guest
// (proxy-wasm spec, abi-versions/v0.2.1; proxy-wasm-cpp-host include/proxy-wasm/wasm_api_impl.h).
type Status uint32

// The WasmResult values of the proxy-wasm ABI.
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

// Header map types (WasmHeaderMapType).
const (
	mapRequestHeaders           = 0
	mapRequestTrailers          = 1
	mapResponseHeaders          = 2
	mapResponseTrailers         = 3
	mapGrpcInitialMetadata      = 4
	mapGrpcTrailingMetadata     = 5
	mapHTTPCallResponseHeaders  = 6
	mapHTTPCallResponseTrailers = 7
	mapMax                      = 7
)

// Buffer types (WasmBufferType).
const (
	bufRequestBody      = 0
	bufResponseBody     = 1
	bufDownstreamData   = 2
	bufUpstreamData     = 3
	bufHTTPCallResponse = 4
	bufGrpcReceive      = 5
	bufVMConfig         = 6
	bufPluginConfig     = 7
	bufCallData         = 8
	bufMax              = 8
)

// Stream types (WasmStreamType).
const (
	streamRequest    = 0
	streamResponse   = 1
	streamDownstream = 2
	streamUpstream   = 3
)

// Metric types and id encoding, as in proxy-wasm-cpp-host include/proxy-wasm/wasm.h:
// ids advance by 4 and the low two bits carry the type.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
	metricTypeMask  = 0x3
	metricIDStep    = 0x4
)

// Callout ids, as in proxy-wasm-cpp-host include/proxy-wasm/wasm.h: ids advance by 4
// and the low two bits tell an http call, a gRPC call and a gRPC stream apart.
const (
	calloutHTTP       = 0
	calloutGrpcCall   = 1
	calloutGrpcStream = 2
	calloutMask       = 0x3
	calloutStep       = 0x4
)

// Filter statuses as Envoy converts the guest's return values
// (proxy-wasm-cpp-host src/context.cc convertVmCallResultTo*).
const (
	actionContinue = 0
	actionPause    = 1
)

// pair is one header or metadata entry, kept in order like Envoy's header maps.
type pair struct{ k, v string }

// encodePairs serializes pairs the way proxy-wasm-cpp-host's PairsUtil::marshalPairs does:
// u32 count, count×(u32 key length, u32 value length), then key\0value\0 for each pair.
func encodePairs(ps []pair) []byte {
	if len(ps) == 0 {
		return nil
	}
	return appendPairs(nil, ps)
}

// appendPairs appends the encoding of ps (see encodePairs) to dst; an empty
// map appends nothing.
func appendPairs(dst []byte, ps []pair) []byte {
	if len(ps) == 0 {
		return dst
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ps)))
	for _, p := range ps {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.k)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.v)))
	}
	for _, p := range ps {
		dst = append(append(dst, p.k...), 0)
		dst = append(append(dst, p.v...), 0)
	}
	return dst
}

var errBadPairs = errors.New("malformed header pairs")

// decodePairs parses the serialized pairs format. Like proxy-wasm-cpp-host's toPairs,
// a buffer too short for its declared sizes yields an error (the host then sees no pairs).
func decodePairs(b []byte) ([]pair, error) {
	if len(b) < 4 {
		if len(b) == 0 {
			return nil, nil
		}
		return nil, errBadPairs
	}
	n := int(binary.LittleEndian.Uint32(b))
	if 4+uint64(n)*8 > uint64(len(b)) {
		return nil, errBadPairs
	}
	ps := make([]pair, n)
	sizes := b[4 : 4+8*n]
	data := b[4+8*n:]
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(sizes[8*i:]))
		vl := int(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if kl+1 > len(data) {
			return nil, errBadPairs
		}
		k := string(data[:kl])
		data = data[kl+1:]
		if vl+1 > len(data) {
			return nil, errBadPairs
		}
		ps[i] = pair{k, string(data[:vl])}
		data = data[vl+1:]
	}
	return ps, nil
}
