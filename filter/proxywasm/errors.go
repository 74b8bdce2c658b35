package proxywasm

import (
	"errors"
	"strconv"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm/internal/abi"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// Host statuses that have no sentinel in the types package.
var (
	ErrSerializationFailure = errors.New("error status returned by host: serialization failure")
	ErrParseFailure         = errors.New("error status returned by host: parse failure")
	ErrBadExpression        = errors.New("error status returned by host: bad expression")
	ErrInvalidMemoryAccess  = errors.New("error status returned by host: invalid memory access")
	ErrResultMismatch       = errors.New("error status returned by host: result mismatch")
	ErrBrokenConnection     = errors.New("error status returned by host: broken connection")
)

// StatusError is a host status this package does not know.
type StatusError struct {
	Code uint32
}

func (e *StatusError) Error() string {
	return "error status returned by host: unknown status " + strconv.FormatUint(uint64(e.Code), 10)
}

// StatusToError maps a proxy_status_t to nil (OK), to a types.ErrorStatus*
// sentinel, to one of this package's Err* sentinels, or to a *StatusError
// for a code outside the ABI.
func StatusToError(code uint32) error {
	switch abi.Status(code) {
	case abi.StatusOK:
		return nil
	case abi.StatusNotFound:
		return types.ErrorStatusNotFound
	case abi.StatusBadArgument:
		return types.ErrorStatusBadArgument
	case abi.StatusSerializationFailure:
		return ErrSerializationFailure
	case abi.StatusParseFailure:
		return ErrParseFailure
	case abi.StatusBadExpression:
		return ErrBadExpression
	case abi.StatusInvalidMemoryAccess:
		return ErrInvalidMemoryAccess
	case abi.StatusEmpty:
		return types.ErrorStatusEmpty
	case abi.StatusCasMismatch:
		return types.ErrorStatusCasMismatch
	case abi.StatusResultMismatch:
		return ErrResultMismatch
	case abi.StatusInternalFailure:
		return types.ErrorInternalFailure
	case abi.StatusBrokenConnection:
		return ErrBrokenConnection
	case abi.StatusUnimplemented:
		return types.ErrorUnimplemented
	}
	return &StatusError{Code: code}
}

func toErr(st abi.Status) error {
	if st == abi.StatusOK {
		return nil
	}
	return StatusToError(uint32(st))
}
