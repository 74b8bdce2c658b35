package abi

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// ErrMalformedPairs reports serialized header-map data that does not follow
// the spec's layout; the wrapping error says where it breaks.
var ErrMalformedPairs = errors.New("malformed serialized pairs")

// SerializedPairsSize is the number of bytes SerializePairs produces for pairs.
func SerializedPairsSize(pairs [][2]string) int {
	n := 4
	for _, p := range pairs {
		n += 8 + len(p[0]) + 1 + len(p[1]) + 1
	}
	return n
}

// SerializePairs encodes pairs in the ABI's map format: a little-endian u32
// count, then a (u32 key length, u32 value length) pair per entry, then
// "key\x00value\x00" per entry. An empty map encodes as a zero count.
func SerializePairs(pairs [][2]string) []byte {
	return AppendPairs(make([]byte, 0, SerializedPairsSize(pairs)), pairs)
}

// AppendPairs appends the encoding of pairs (see SerializePairs) to dst.
func AppendPairs(dst []byte, pairs [][2]string) []byte {
	dst = appendU32(dst, uint32(len(pairs)))
	for _, p := range pairs {
		dst = appendU32(dst, uint32(len(p[0])))
		dst = appendU32(dst, uint32(len(p[1])))
	}
	for _, p := range pairs {
		dst = append(dst, p[0]...)
		dst = append(dst, 0)
		dst = append(dst, p[1]...)
		dst = append(dst, 0)
	}
	return dst
}

// DeserializePairs decodes the ABI's map format. Empty input and the single
// byte 0x00 both mean an empty map, as the spec allows. Truncated data,
// lengths pointing past the end, missing NUL terminators and trailing bytes
// are reported as errors wrapping ErrMalformedPairs; it never panics.
func DeserializePairs(data []byte) ([][2]string, error) {
	return deserializePairs(nil, data, false)
}

// DeserializePairsOwned is DeserializePairs for data the caller owns and
// will never modify again: keys and values share data's memory instead of a
// copy of it. Data returned by this package's host functions qualifies.
func DeserializePairsOwned(data []byte) ([][2]string, error) {
	return deserializePairs(nil, data, true)
}

// AppendPairsOwned is DeserializePairsOwned appending to dst, so a caller
// that reads maps often can reuse one slice. On error it returns dst
// unchanged.
func AppendPairsOwned(dst [][2]string, data []byte) ([][2]string, error) {
	return deserializePairs(dst, data, true)
}

func deserializePairs(dst [][2]string, data []byte, owned bool) ([][2]string, error) {
	if len(data) == 0 || (len(data) == 1 && data[0] == 0) {
		return dst, nil
	}
	if len(data) < 4 {
		return dst, malformed("header shorter than 4 bytes", 0)
	}
	n := u32(data)
	if n == 0 {
		if len(data) != 4 {
			return dst, malformed("trailing bytes after empty map", 4)
		}
		return dst, nil
	}
	// Each entry needs at least 8 bytes of lengths and 2 NUL bytes.
	if uint64(n) > uint64(len(data)-4)/10 {
		return dst, malformed("count "+strconv.FormatUint(uint64(n), 10)+" exceeds data", 0)
	}
	// Keys and values are substrings of one string holding the payload.
	var s string
	if owned {
		s = unsafe.String(unsafe.SliceData(data), len(data))
	} else {
		s = string(data)
	}
	lens := 4
	pos := 4 + int(n)*8
	base := len(dst)
	out := slices.Grow(dst, int(n))
	for range n {
		kl := int(u32(data[lens:]))
		vl := int(u32(data[lens+4:]))
		lens += 8
		if kl < 0 || vl < 0 || kl > len(s)-pos {
			return dst[:base], malformed("key length past end", lens-8)
		}
		k := s[pos : pos+kl]
		pos += kl
		if pos >= len(s) || s[pos] != 0 {
			return dst[:base], malformed("key not NUL-terminated", pos)
		}
		pos++
		if vl > len(s)-pos {
			return dst[:base], malformed("value length past end", lens-4)
		}
		v := s[pos : pos+vl]
		pos += vl
		if pos >= len(s) || s[pos] != 0 {
			return dst[:base], malformed("value not NUL-terminated", pos)
		}
		pos++
		out = append(out, [2]string{k, v})
	}
	if pos != len(s) {
		return dst[:base], malformed("trailing bytes", pos)
	}
	return out, nil
}

func malformed(what string, offset int) error {
	return &pairsError{what: what, offset: offset}
}

type pairsError struct {
	what   string
	offset int
}

func (e *pairsError) Error() string {
	return ErrMalformedPairs.Error() + ": " + e.what + " at byte " + strconv.Itoa(e.offset)
}

func (e *pairsError) Unwrap() error { return ErrMalformedPairs }

// SerializePath encodes a property path: its segments joined by NUL bytes,
// with no trailing NUL (Envoy splits the path on NUL).
func SerializePath(path []string) []byte {
	n := 0
	for i, p := range path {
		if i > 0 {
			n++
		}
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range path {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// DeserializePath splits an encoded property path into its segments. A
// single trailing NUL, which some SDKs send, is ignored.
func DeserializePath(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	s := string(data)
	s = strings.TrimSuffix(s, "\x00")
	return strings.Split(s, "\x00")
}

// u32 reads a little-endian uint32 from the start of b. Two functions do not
// justify importing encoding/binary (and reflect) into every filter.
func u32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// appendU32 appends v to b in little-endian order.
func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}
