// Command filter is shepherd's proxy-wasm filter. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o shepherd.wasm ./filter
//
// and load it in Envoy (Istio WasmPlugin) or shepherd-local. The callbacks here are
// thin: they read what the host offers, ask the pure packages (config, routing) what
// to do, and write the result back.
package main

import "github.com/shepherd-mesh/shepherd/filter/proxywasm"

func main() {}

func init() { proxywasm.SetVMContext(&vm{}) }
