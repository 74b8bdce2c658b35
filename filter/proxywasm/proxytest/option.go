//go:build !wasip1

package proxytest

import (
	"time"

	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// EmulatorOption configures a HostEmulator. Build it with NewEmulatorOption
// and the With* methods, which return the option for chaining.
type EmulatorOption struct {
	vmContext    types.VMContext
	vmConfig     []byte
	pluginConfig []byte
	vmID         string
	logLevel     proxywasm.LogLevel
	properties   map[string][]byte
	now          func() time.Time
}

// NewEmulatorOption returns the defaults: no configuration, vm_id "",
// log level trace (every message is kept), the wall clock.
func NewEmulatorOption() *EmulatorOption {
	return &EmulatorOption{logLevel: proxywasm.LogLevelTrace, properties: map[string][]byte{}, now: time.Now}
}

// WithVMContext sets the filter's VM context; NewHostEmulator registers it
// with proxywasm.SetVMContext.
func (o *EmulatorOption) WithVMContext(ctx types.VMContext) *EmulatorOption {
	o.vmContext = ctx
	return o
}

// WithVMConfiguration sets the bytes GetVMConfiguration returns.
func (o *EmulatorOption) WithVMConfiguration(b []byte) *EmulatorOption {
	o.vmConfig = b
	return o
}

// WithPluginConfiguration sets the bytes GetPluginConfiguration returns.
func (o *EmulatorOption) WithPluginConfiguration(b []byte) *EmulatorOption {
	o.pluginConfig = b
	return o
}

// WithVMID sets the vm_id that names this VM's shared queues.
func (o *EmulatorOption) WithVMID(id string) *EmulatorOption {
	o.vmID = id
	return o
}

// WithLogLevel sets the level GetLogLevel reports. Messages below it are
// still recorded, as the filter decides whether to log.
func (o *EmulatorOption) WithLogLevel(l proxywasm.LogLevel) *EmulatorOption {
	o.logLevel = l
	return o
}

// WithProperty sets a host property the filter can read with GetProperty.
func (o *EmulatorOption) WithProperty(path []string, value []byte) *EmulatorOption {
	o.properties[pathKey(path)] = append([]byte(nil), value...)
	return o
}

// WithClock sets the clock behind proxy_get_current_time_nanoseconds.
func (o *EmulatorOption) WithClock(now func() time.Time) *EmulatorOption {
	o.now = now
	return o
}
