//go:build !wasip1

package proxywasm_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm/proxytest"
)

// TestPeekedDataDiesAtTheNextDataCall holds native builds to the contract a
// VM keeps loosely (its scratch buffer is reused only when the next data is
// small enough): what a Peek function returned is overwritten by the next
// call that returns data, peeking or not, so a native test sees a stale read
// every time. Calls that return no data leave it intact.
func TestPeekedDataDiesAtTheNextDataCall(t *testing.T) {
	opt := proxytest.NewEmulatorOption().WithVMContext(&types.DefaultVMContext{}).
		WithPluginConfiguration([]byte(`{"a":1}`)).WithProperty([]string{"node", "id"}, []byte("node-1"))
	host, release := proxytest.NewHostEmulator(opt)
	defer release()
	require.NoError(t, host.SetSharedData("first", []byte("first value"), 0))
	require.NoError(t, host.SetSharedData("second", []byte("second"), 0))
	poisoned := bytes.Repeat([]byte{0xDB}, len("first value"))

	tests := []struct {
		name   string
		next   func() error
		intact bool
	}{
		{"GetSharedData", func() error { _, _, err := proxywasm.GetSharedData("second"); return err }, false},
		{"PeekSharedData", func() error { _, _, err := proxywasm.PeekSharedData("second"); return err }, false},
		{"a missing key", func() error {
			_, _, err := proxywasm.GetSharedData("none")
			require.ErrorIs(t, err, types.ErrorStatusNotFound)
			return nil
		}, false},
		{"GetProperty", func() error { _, err := proxywasm.GetProperty([]string{"node", "id"}); return err }, false},
		{"GetPluginConfiguration", func() error { _, err := proxywasm.GetPluginConfiguration(); return err }, false},
		{"SetSharedData", func() error { return proxywasm.SetSharedData("third", []byte("x"), 0) }, true},
		{"LogInfo", func() error { proxywasm.LogInfo("hello"); return nil }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _, err := proxywasm.PeekSharedData("first")
			require.NoError(t, err)
			require.Equal(t, "first value", string(v))
			require.NoError(t, tt.next())
			if tt.intact {
				require.Equal(t, "first value", string(v))
			} else {
				require.Equal(t, poisoned, v)
			}
		})
	}

	// A copying read is the caller's for good.
	v, _, err := proxywasm.GetSharedData("first")
	require.NoError(t, err)
	_, _, err = proxywasm.PeekSharedData("second")
	require.NoError(t, err)
	_, _, err = proxywasm.GetSharedData("second")
	require.NoError(t, err)
	require.Equal(t, "first value", string(v))
}
