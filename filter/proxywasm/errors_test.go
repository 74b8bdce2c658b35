package proxywasm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func TestStatusToError(t *testing.T) {
	tests := []struct {
		code uint32
		want error
	}{
		{0, nil},
		{1, types.ErrorStatusNotFound},
		{2, types.ErrorStatusBadArgument},
		{3, ErrSerializationFailure},
		{4, ErrParseFailure},
		{5, ErrBadExpression},
		{6, ErrInvalidMemoryAccess},
		{7, types.ErrorStatusEmpty},
		{8, types.ErrorStatusCasMismatch},
		{9, ErrResultMismatch},
		{10, types.ErrorInternalFailure},
		{11, ErrBrokenConnection},
		{12, types.ErrorUnimplemented},
	}
	seen := map[error]bool{}
	for _, tt := range tests {
		got := StatusToError(tt.code)
		require.Equal(t, tt.want, got, "code %d", tt.code)
		if got != nil {
			require.False(t, seen[got], "code %d maps to an error another code uses", tt.code)
			seen[got] = true
		}
	}
	for _, code := range []uint32{13, 42, 0xffffffff} {
		err := StatusToError(code)
		var se *StatusError
		require.True(t, errors.As(err, &se))
		require.Equal(t, code, se.Code)
		require.Contains(t, err.Error(), "unknown status")
	}
	require.Equal(t, "error status returned by host: unknown status 42", StatusToError(42).Error())
}
