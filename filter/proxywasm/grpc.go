package proxywasm

import (
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
)

// GrpcCallbacks receive the events of a gRPC call or stream. Each runs in
// the context that opened the call, after the binding switched the host to
// it. Nil callbacks are skipped.
type GrpcCallbacks struct {
	// OnInitialMetadata runs when response headers arrive; read them with
	// GetGrpcCallInitialMetadata.
	OnInitialMetadata func(numElements int)
	// OnMessage runs per response message; read it with
	// GetGrpcCallResponseMessage. For a unary call it is the successful
	// end: Envoy then sends no close, and the call id is released.
	OnMessage func(messageSize int)
	// OnTrailingMetadata runs when trailers arrive; read them with
	// GetGrpcCallTrailingMetadata.
	OnTrailingMetadata func(numElements int)
	// OnClose runs once when a stream ends or a unary call fails, with
	// the gRPC status code; the message is available from GetStatus. The
	// call id is then released.
	OnClose func(statusCode uint32)
}

// The upstream argument of DispatchGrpcCall and OpenGrpcStream is passed to
// the host unchanged. Envoy first tries to parse it as a serialized
// envoy.config.core.v3.GrpcService message; when that fails it takes it as
// a cluster name (an unknown cluster gives ErrParseFailure). A plain cluster
// name is what shepherd uses; a name whose bytes happen to parse as a
// protobuf message would be misread, which Envoy cluster names in practice
// (starting with a letter such as 'o' of "outbound|...") do not.

// DispatchGrpcCall sends one unary request message to service/method on
// upstream and returns the call id.
func DispatchGrpcCall(upstream, service, method string, initialMetadata [][2]string, message []byte,
	timeoutMillisecond uint32, callbacks GrpcCallbacks) (uint32, error) {
	id, st := abi.GrpcCall(upstream, service, method, serializeOptional(initialMetadata), message, timeoutMillisecond)
	if st != abi.StatusOK {
		return 0, toErr(st)
	}
	vm.grpc[id] = grpcCall{callbacks: callbacks, contextID: vm.active}
	return id, nil
}

// OpenGrpcStream opens a gRPC stream to service/method on upstream and
// returns the stream id for SendGrpcStreamMessage.
func OpenGrpcStream(upstream, service, method string, initialMetadata [][2]string,
	callbacks GrpcCallbacks) (uint32, error) {
	id, st := abi.GrpcStream(upstream, service, method, serializeOptional(initialMetadata))
	if st != abi.StatusOK {
		return 0, toErr(st)
	}
	vm.grpc[id] = grpcCall{callbacks: callbacks, contextID: vm.active, stream: true}
	return id, nil
}

// SendGrpcStreamMessage sends message on stream streamID; endStream
// half-closes the stream after it.
func SendGrpcStreamMessage(streamID uint32, message []byte, endStream bool) error {
	return toErr(abi.GrpcSend(streamID, message, endStream))
}

// CancelGrpcCall cancels a call or resets a stream. No further callbacks
// run for it.
func CancelGrpcCall(id uint32) error {
	err := toErr(abi.GrpcCancel(id))
	delete(vm.grpc, id)
	return err
}

// CloseGrpcCall closes a call or the local side of a stream. A unary call
// is cancelled and released (Envoy delivers nothing more); a stream keeps
// its callbacks until the host reports OnClose.
func CloseGrpcCall(id uint32) error {
	err := toErr(abi.GrpcClose(id))
	if c, ok := vm.grpc[id]; ok && !c.stream {
		delete(vm.grpc, id)
	}
	return err
}

// GetGrpcCallInitialMetadata returns the initial metadata being delivered.
// Valid in OnInitialMetadata.
func GetGrpcCallInitialMetadata() ([][2]string, error) { return getMap(abi.MapGrpcInitialMetadata) }

// GetGrpcCallTrailingMetadata returns the trailing metadata being
// delivered. Valid in OnTrailingMetadata.
func GetGrpcCallTrailingMetadata() ([][2]string, error) {
	return getMap(abi.MapGrpcTrailingMetadata)
}

// GetGrpcCallResponseMessage returns up to maxSize bytes from start of the
// message being delivered (buffer GRPC_CALL_MESSAGE). Valid in OnMessage.
func GetGrpcCallResponseMessage(start, maxSize int) ([]byte, error) {
	return getBuffer(abi.BufferGrpcReceive, start, maxSize)
}

func serializeOptional(pairs [][2]string) []byte {
	if len(pairs) == 0 {
		return nil
	}
	return encodePairs(pairs)
}
