// Command noop is a proxy-wasm module that does nothing: the baseline the filter's
// benchmarks subtract, so they report what the filter itself adds.
package main

import (
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&types.DefaultVMContext{}) }
