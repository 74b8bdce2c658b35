package body

import (
	"math/bits"
	"unsafe"
)

// Finding the end of a string without visiting each byte in a loop. Under a
// Wasm runtime a byte loop costs several nanoseconds a byte, ten times the
// copy of the body into the VM; these look for quotes only, a 64-bit word at
// a time, 64 bytes a step while the bytes are ASCII. Backslashes are not
// looked for: a quote ends its string unless an odd run of backslashes stands
// right before it (a run of backslashes pairs off from its first byte, so the
// run's parity alone says whether the last one escapes the quote).

const quotes8 = '"' * lo8

// quoteMask flags the bytes of x that are quotes with their high bit; the
// lowest flagged byte is exact (see swar.go), a byte above it may be flagged
// by the borrow.
func quoteMask(x uint64) uint64 {
	q := x ^ quotes8
	return (q - lo8) &^ q & hi8
}

// stringEnd returns the offset just past the closing quote of the string
// whose opening quote is body[pos] (the caller checked it), or -1 when the
// body ends inside the string. It does not validate what the string holds:
// escapes, control characters and UTF-8 are the reader's of that string.
// Under GOARCH=wasm it is written in assembly (scan_wasm.s); elsewhere it is
// stringEndGo.
//
// stringEndGo is stringEnd in Go.
func stringEndGo(body []byte, pos int) int {
	n := len(body)
	i := pos + 1
	base := unsafe.Pointer(unsafe.SliceData(body))
	for {
		j := -1
		// 64 bytes a step while none is a quote nor has its high bit: with
		// no high bit, (b^'"')-1 has its high bit only for a quote, and no
		// borrow crosses bytes without a zero byte below. Then the block's
		// words one by one, exactly.
		for j < 0 && i+64 <= n {
			p := unsafe.Add(base, i)
			x0, x1, x2, x3 := *(*uint64)(p), *(*uint64)(unsafe.Add(p, 8)), *(*uint64)(unsafe.Add(p, 16)), *(*uint64)(unsafe.Add(p, 24))
			x4, x5, x6, x7 := *(*uint64)(unsafe.Add(p, 32)), *(*uint64)(unsafe.Add(p, 40)), *(*uint64)(unsafe.Add(p, 48)), *(*uint64)(unsafe.Add(p, 56))
			// (Parenthesised: Go gives - and | the same precedence.)
			if (((x0^quotes8)-lo8)|((x1^quotes8)-lo8)|((x2^quotes8)-lo8)|((x3^quotes8)-lo8)|
				((x4^quotes8)-lo8)|((x5^quotes8)-lo8)|((x6^quotes8)-lo8)|((x7^quotes8)-lo8)|
				x0|x1|x2|x3|x4|x5|x6|x7)&hi8 == 0 {
				i += 64
				continue
			}
			for k := 0; k < 64; k += 8 {
				if m := quoteMask(*(*uint64)(unsafe.Add(p, k))); m != 0 {
					j = i + k + bits.TrailingZeros64(m)>>3
					break
				}
			}
			if j < 0 {
				i += 64
			}
		}
		for j < 0 && i+8 <= n {
			if m := quoteMask(*(*uint64)(unsafe.Add(base, i))); m != 0 {
				j = i + bits.TrailingZeros64(m)>>3
				break
			}
			i += 8
		}
		for j < 0 && i < n {
			if body[i] == '"' {
				j = i
				break
			}
			i++
		}
		if j < 0 {
			return -1
		}
		k := j
		for body[k-1] == '\\' { // body[pos] is the opening quote: the run stops there
			k--
		}
		if (j-k)&1 == 0 {
			return j + 1
		}
		i = j + 1
	}
}
