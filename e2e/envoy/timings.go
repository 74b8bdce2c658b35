package envoy

import "time"

// VMStartTimings is how long each step of one VM's start took, in the order Envoy
// runs them (proxy-wasm-cpp-host src/wasm.cc).
type VMStartTimings struct {
	Instantiate time.Duration // the compiled module instantiated: memory, data segments, imports linked
	Initialize  time.Duration // _initialize (or _start): the guest's runtime and package initialisation
	Start       time.Duration // proxy_on_context_create of the root context and proxy_on_vm_start
	Configure   time.Duration // proxy_on_configure with the plugin configuration
}

// Total is the whole start.
func (t VMStartTimings) Total() time.Duration {
	return t.Instantiate + t.Initialize + t.Start + t.Configure
}

// StartTimings reports how each current worker VM's start went; a host without a
// plugin reports zeros.
func (h *Host) StartTimings() []VMStartTimings {
	h.mu.RLock()
	vms := h.vms
	h.mu.RUnlock()
	out := make([]VMStartTimings, len(vms))
	for i, v := range vms {
		v.mu.Lock()
		out[i] = v.started
		v.mu.Unlock()
	}
	return out
}
