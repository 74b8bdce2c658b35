//go:build wasm

package body

// The scans in assembly (scan_wasm.s); their Go counterparts are
// stringEndGo and flatMessagesGo, which give the same results.

//go:noescape
func stringEnd(body []byte, pos int) int

//go:noescape
func flatMessages(body []byte, pos int) (end int, text int64)
