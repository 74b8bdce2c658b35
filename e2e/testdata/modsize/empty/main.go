// Command empty is the baseline of docs/RATIONALE.md's module sizes: a
// wasip1 reactor that exports one function and imports nothing.
package main

func main() {}

//go:wasmexport run
func run(n int32) int32 { return n + 1 }
