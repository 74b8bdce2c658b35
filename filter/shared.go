package main

import (
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// sharedData is proxy-wasm shared data as the limiters see it: process-wide across
// the VMs of one vm_id, with compare-and-swap. Get reads the host's bytes in
// place (the limiters decode them before their next host call), which saves
// a copy per limit check.
type sharedData struct{}

func (sharedData) Get(key string) ([]byte, uint32, error) {
	v, cas, err := proxywasm.PeekSharedData(key)
	if err == types.ErrorStatusNotFound {
		return nil, 0, limits.ErrNotFound
	}
	return v, cas, err
}

func (sharedData) Set(key string, value []byte, cas uint32) error {
	err := proxywasm.SetSharedData(key, value, cas)
	if err == types.ErrorStatusCasMismatch {
		return limits.ErrCasMismatch
	}
	return err
}
