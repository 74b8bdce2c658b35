// Command fmt is the empty reactor plus one fmt.Sprintf (docs/RATIONALE.md).
package main

import "fmt"

func main() {}

var sink string

//go:wasmexport run
func run(n int32) int32 {
	sink = fmt.Sprintf("n=%d", n)
	return int32(len(sink))
}
