// Package wire is a small, allocation-light codec for the protobuf (proto3)
// wire format, for the filter's messages to the sidecar. It imports no
// reflection and no fmt, so it costs the wasm module little.
//
// Encoding appends to a caller's buffer: the Append* functions that take a
// field number write a whole field, and OpenMessage/CloseMessage wrap an
// embedded message whose length is known only after it is written. The
// output is byte for byte what proto.Marshal writes for the same fields in
// the same order.
//
// Decoding iterates the fields of one message with a Reader, which rejects
// malformed input with an error and never panics.
package wire

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// Type is a protobuf wire type.
type Type uint8

// The wire types. Groups (StartGroupType, EndGroupType) are deprecated and
// never used by shepherd's messages; the Reader rejects them.
const (
	VarintType     Type = 0
	Fixed64Type    Type = 1
	BytesType      Type = 2
	StartGroupType Type = 3
	EndGroupType   Type = 4
	Fixed32Type    Type = 5
)

// MinField and MaxField bound valid field numbers.
const (
	MinField = 1
	MaxField = 1<<29 - 1
)

// MaxVarintLen is the longest encoding of a varint.
const MaxVarintLen = 10

// SizeVarint returns the number of bytes AppendVarint writes for v (1..10).
func SizeVarint(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// AppendVarint appends v as a base-128 varint.
func AppendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// AppendTag appends the key of field with wire type typ. field must be in
// [MinField, MaxField].
func AppendTag(dst []byte, field int, typ Type) []byte {
	return AppendVarint(dst, uint64(field)<<3|uint64(typ&7))
}

// AppendVarintField appends field as a varint even when v is zero (explicit
// presence, as for the value of a wrapper message that is set).
func AppendVarintField(dst []byte, field int, v uint64) []byte {
	return AppendVarint(AppendTag(dst, field, VarintType), v)
}

// AppendUint64 appends a uint64 (or uint32, or enum) field, omitting it when
// v is zero as proto3 does.
func AppendUint64(dst []byte, field int, v uint64) []byte {
	if v == 0 {
		return dst
	}
	return AppendVarintField(dst, field, v)
}

// AppendInt64 appends an int64 (or int32) field, omitting it when v is zero.
// Negative values take ten bytes, as in proto (int32 is sign-extended).
func AppendInt64(dst []byte, field int, v int64) []byte {
	return AppendUint64(dst, field, uint64(v))
}

// AppendBool appends a bool field, omitting it when v is false.
func AppendBool(dst []byte, field int, v bool) []byte {
	if !v {
		return dst
	}
	return AppendVarintField(dst, field, 1)
}

// AppendBytesField appends b as a length-delimited field even when it is
// empty (explicit presence).
func AppendBytesField(dst []byte, field int, b []byte) []byte {
	dst = AppendVarint(AppendTag(dst, field, BytesType), uint64(len(b)))
	return append(dst, b...)
}

// AppendStringField appends s as a length-delimited field even when it is
// empty (explicit presence). s is written as is; see AppendString.
func AppendStringField(dst []byte, field int, s string) []byte {
	dst = AppendVarint(AppendTag(dst, field, BytesType), uint64(len(s)))
	return append(dst, s...)
}

// AppendBytes appends a bytes field, omitting it when b is empty.
func AppendBytes(dst []byte, field int, b []byte) []byte {
	if len(b) == 0 {
		return dst
	}
	return AppendBytesField(dst, field, b)
}

// AppendString appends a string field, omitting it when s is empty. proto3
// decoders reject strings that are not valid UTF-8; AppendValidString
// repairs such input instead.
func AppendString(dst []byte, field int, s string) []byte {
	if len(s) == 0 {
		return dst
	}
	return AppendStringField(dst, field, s)
}

// AppendValidString is AppendString for text that may not be valid UTF-8
// (request headers, body fields): each run of invalid bytes is written as
// one U+FFFD, as strings.ToValidUTF8 does, so a proto3 decoder accepts the
// message. Valid input is written unchanged and without allocating.
func AppendValidString(dst []byte, field int, s string) []byte {
	if utf8.ValidString(s) {
		return AppendString(dst, field, s)
	}
	n := validSize(s)
	dst = AppendVarint(AppendTag(dst, field, BytesType), uint64(n))
	return appendValid(dst, s)
}

// validSize returns the length of s with each run of invalid UTF-8 replaced
// by U+FFFD.
func validSize(s string) int {
	n := 0
	invalid := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			if !invalid {
				n += utf8.RuneLen(utf8.RuneError)
				invalid = true
			}
		} else {
			n += size
			invalid = false
		}
		i += size
	}
	return n
}

func appendValid(dst []byte, s string) []byte {
	invalid := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			if !invalid {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				invalid = true
			}
		} else {
			dst = append(dst, s[i:i+size]...)
			invalid = false
		}
		i += size
	}
	return dst
}

// Mark is where an embedded message opened by OpenMessage begins.
type Mark int

// OpenMessage appends the key of embedded message field and room for its
// length, and returns the mark to pass to CloseMessage once the message's
// fields have been appended after it. Opens and closes nest like
// parentheses; between them only appending to the returned slice is valid.
func OpenMessage(dst []byte, field int) ([]byte, Mark) {
	dst = append(AppendTag(dst, field, BytesType), 0)
	return dst, Mark(len(dst))
}

// CloseMessage writes the length of the message opened at m, moving its
// bytes when the length needs more than the one byte reserved. The message
// is written even when empty, as proto does for a set message field.
func CloseMessage(dst []byte, m Mark) []byte {
	start := int(m) // first byte after the reserved length byte
	n := len(dst) - start
	if n < 0x80 {
		dst[start-1] = byte(n)
		return dst
	}
	extra := SizeVarint(uint64(n)) - 1
	dst = append(dst, make([]byte, extra)...)
	copy(dst[start+extra:], dst[start:start+n])
	AppendVarint(dst[start-1:start-1], uint64(n))
	return dst
}

// Errors a Reader reports, wrapped in an *Error that says where.
var (
	ErrTruncated   = errors.New("truncated")
	ErrOverflow    = errors.New("varint overflows 64 bits")
	ErrFieldNumber = errors.New("invalid field number")
	ErrGroup       = errors.New("groups are not supported")
	ErrWireType    = errors.New("invalid wire type")
	ErrLength      = errors.New("length past the end")
	// ErrUTF8 is for the codecs built on Reader: proto3 string fields must
	// hold valid UTF-8, and proto decoders reject a message whose do not.
	ErrUTF8 = errors.New("string field is not valid utf-8")
)

// Error is a malformed-input error at a byte offset of the message the
// Reader was given.
type Error struct {
	Offset int
	Err    error
}

func (e *Error) Error() string {
	return "wire: " + e.Err.Error() + " at offset " + strconv.Itoa(e.Offset)
}

func (e *Error) Unwrap() error { return e.Err }

// Reader iterates the fields of one encoded message. The zero Reader holds
// an empty message; NewReader or Reset gives it one. Next reads a whole
// field (key and value) and the accessors return the value of the field Next
// last returned. Byte slices alias the message.
type Reader struct {
	b     []byte
	off   int
	typ   Type
	val   uint64
	bytes []byte
	err   error
}

// NewReader returns a Reader over the encoded message b.
func NewReader(b []byte) Reader {
	return Reader{b: b}
}

// Reset makes r read the encoded message b from its start.
func (r *Reader) Reset(b []byte) {
	*r = Reader{b: b}
}

// Next reads the next field and returns its number and wire type. ok is
// false at the end of the message and on malformed input; Err then tells
// which. Fields may come in any order and repeat, as the format allows.
func (r *Reader) Next() (field int, typ Type, ok bool) {
	if r.err != nil || r.off >= len(r.b) {
		return 0, 0, false
	}
	start := r.off
	key, ok := r.varint()
	if !ok {
		return 0, 0, false
	}
	if key>>3 < MinField || key>>3 > MaxField {
		return 0, 0, r.fail(start, ErrFieldNumber)
	}
	field, typ = int(key>>3), Type(key&7)
	r.typ, r.val, r.bytes = typ, 0, nil
	switch typ {
	case VarintType:
		if r.val, ok = r.varint(); !ok {
			return 0, 0, false
		}
	case Fixed64Type:
		if len(r.b)-r.off < 8 {
			return 0, 0, r.fail(r.off, ErrTruncated)
		}
		p := r.b[r.off : r.off+8]
		r.val = uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
			uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
		r.off += 8
	case Fixed32Type:
		if len(r.b)-r.off < 4 {
			return 0, 0, r.fail(r.off, ErrTruncated)
		}
		p := r.b[r.off : r.off+4]
		r.val = uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24
		r.off += 4
	case BytesType:
		at := r.off
		n, ok := r.varint()
		if !ok {
			return 0, 0, false
		}
		if n > uint64(len(r.b)-r.off) {
			return 0, 0, r.fail(at, ErrLength)
		}
		r.bytes = r.b[r.off : r.off+int(n) : r.off+int(n)]
		r.off += int(n)
	case StartGroupType, EndGroupType:
		return 0, 0, r.fail(start, ErrGroup)
	default:
		return 0, 0, r.fail(start, ErrWireType)
	}
	return field, typ, true
}

// varint reads a varint at r.off, as protowire does: at most ten bytes, the
// tenth at most 1; longer, non-minimal encodings within ten bytes are valid.
func (r *Reader) varint() (uint64, bool) {
	var v uint64
	for i := 0; i < MaxVarintLen; i++ {
		if r.off+i >= len(r.b) {
			return 0, r.fail(r.off, ErrTruncated)
		}
		c := r.b[r.off+i]
		if i == MaxVarintLen-1 && c > 1 {
			return 0, r.fail(r.off, ErrOverflow)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			r.off += i + 1
			return v, true
		}
	}
	return 0, r.fail(r.off, ErrOverflow) // unreachable: the tenth byte is < 0x80 here
}

func (r *Reader) fail(off int, err error) bool {
	r.err = &Error{Offset: off, Err: err}
	return false
}

// Err returns the malformed-input error that stopped Next, or nil.
func (r *Reader) Err() error { return r.err }

// Varint returns the value of the current field when it is a varint, else 0.
// int64 and int32 fields convert it with int64(v) and int32(v), bool ones
// compare it with 0, as proto does.
func (r *Reader) Varint() uint64 {
	if r.typ != VarintType {
		return 0
	}
	return r.val
}

// Fixed64 returns the value of the current field when it is a fixed64
// (fixed64, sfixed64, double), else 0.
func (r *Reader) Fixed64() uint64 {
	if r.typ != Fixed64Type {
		return 0
	}
	return r.val
}

// Fixed32 returns the value of the current field when it is a fixed32
// (fixed32, sfixed32, float), else 0.
func (r *Reader) Fixed32() uint32 {
	if r.typ != Fixed32Type {
		return 0
	}
	return uint32(r.val)
}

// Bytes returns the payload of the current field when it is length-delimited
// (bytes, string, embedded message), else nil. It aliases the message; the
// caller must not append to it.
func (r *Reader) Bytes() []byte {
	return r.bytes
}

// BytesOffset returns where the payload Bytes returns starts in the message
// the Reader was given. Valid after Next returned a BytesType field.
func (r *Reader) BytesOffset() int {
	return r.off - len(r.bytes)
}

// Skip discards the current field. Next has already checked and stepped
// over the value, so Skip only marks a field the caller ignores on purpose
// (unknown fields, for forward compatibility).
func (r *Reader) Skip() {}

// MessageError says which part of a message a codec found malformed. It never
// holds field contents, which may be secrets.
type MessageError struct {
	Codec, Where string
	Err          error
}

func (e *MessageError) Error() string { return e.Codec + ": " + e.Where + ": " + e.Err.Error() }

func (e *MessageError) Unwrap() error { return e.Err }

// Wrap returns err as a MessageError of codec at where; nil stays nil, and an
// error already wrapped keeps its innermost place.
func Wrap(codec, where string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*MessageError); ok {
		return err
	}
	return &MessageError{Codec: codec, Where: where, Err: err}
}

// Duration decodes a google.protobuf.Duration message into nanoseconds,
// saturating at the int64 range (a peer's seconds can be any int64).
func Duration(b []byte) (int64, error) {
	var secs, nanos int64
	if err := MergeDuration(b, &secs, &nanos); err != nil {
		return 0, err
	}
	return DurationNanos(secs, nanos), nil
}

// MergeDuration reads a google.protobuf.Duration's fields into secs and
// nanos, keeping what an earlier occurrence of the same message field set
// and this one does not (protobuf merges repeated message fields).
func MergeDuration(b []byte, secs, nanos *int64) error {
	r := NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == VarintType:
			*secs = int64(r.Varint())
		case f == 2 && t == VarintType:
			*nanos = int64(int32(r.Varint()))
		default:
			r.Skip()
		}
	}
	return r.Err()
}

// DurationNanos combines a Duration's seconds and nanos into nanoseconds,
// saturating at the int64 range.
func DurationNanos(secs, nanos int64) int64 {
	const max = math.MaxInt64 / 1_000_000_000
	switch {
	case secs > max:
		return math.MaxInt64
	case secs < -max:
		return math.MinInt64
	}
	ns := secs * 1_000_000_000
	if nanos > 0 && ns > math.MaxInt64-nanos {
		return math.MaxInt64
	}
	if nanos < 0 && ns < math.MinInt64-nanos {
		return math.MinInt64
	}
	return ns + nanos
}
