package body

import (
	"math/bits"
	"unsafe"
)

// Word-at-a-time searches. Inside a Wasm VM, upstream Go's byte loops and the
// calls to its IndexByte are slow; these test eight bytes per step from one
// 8-byte load with the classic zero-byte test (a byte of x equal to c makes
// x^c*lo have a zero byte; the lowest flagged byte is always a true match, as
// a borrow only flags bytes above a zero byte).

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// le64 reads eight bytes little-endian, written so that the compiler makes it
// one load.
func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// load64 reads the eight bytes at b[i:i+8] (the caller checked they exist) in
// the machine's byte order with one load: upstream Go's Wasm backend does not
// merge le64's byte loads, so a word assembled from bytes costs eight loads. For
// tests that do not depend on the byte order, or with littleEndian.
func load64(b []byte, i int) uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i))
}

// load32 is load64 for four bytes.
func load32(b []byte, i int) uint32 {
	return *(*uint32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i))
}

// plainWord reports whether none of the eight bytes of x is a quote, a
// backslash, a control character or has its high bit (as jsonlite's).
func plainWord(x uint64) bool {
	q := x ^ ('"' * lo8)
	e := x ^ ('\\' * lo8)
	return (x|(x-0x20*lo8)&^x|(q-lo8)&^q|(e-lo8)&^e)&hi8 == 0
}

func zeroBytes(x uint64) uint64 { return (x - lo8) &^ x & hi8 }

// littleEndian reports the machine's byte order (Wasm is little-endian):
// there the lowest flagged byte of a word loaded with load64 is the first
// match; elsewhere the word's bytes are searched one by one.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// lineEnd returns the index of the first CR or LF in b, or len(b).
func lineEnd(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := load64(b, i)
		if m := zeroBytes(x^('\n'*lo8)) | zeroBytes(x^('\r'*lo8)); m != 0 {
			if littleEndian {
				return i + bits.TrailingZeros64(m)/8
			}
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] == '\n' || b[i] == '\r' {
			return i
		}
	}
	return len(b)
}

// indexByte returns the index of the first c in b, or -1.
func indexByte(b []byte, c byte) int {
	i := 0
	cc := uint64(c) * lo8
	for ; i+8 <= len(b); i += 8 {
		if m := zeroBytes(load64(b, i) ^ cc); m != 0 {
			if littleEndian {
				return i + bits.TrailingZeros64(m)/8
			}
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}
