//go:build !wasm

package body

// Outside Wasm the scans are the Go ones (see scan_wasm.s for why Wasm has
// its own).

func stringEnd(body []byte, pos int) int { return stringEndGo(body, pos) }

func flatMessages(body []byte, pos int) (end int, text int64) { return flatMessagesGo(body, pos) }
