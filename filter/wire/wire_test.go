package wire

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

var varintCases = []uint64{
	0, 1, 127, 128, 255, 300, 16383, 16384, 1<<21 - 1, 1 << 21, 1<<28 - 1, 1 << 28,
	1<<35 - 1, 1 << 35, 1<<42 - 1, 1 << 42, 1<<49 - 1, 1 << 49, 1<<56 - 1, 1 << 56,
	1<<63 - 1, 1 << 63, math.MaxUint64, uint64(1<<64 - 1 - 1),
}

func TestAppendVarintMatchesProtowire(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := append([]uint64(nil), varintCases...)
	for i := 0; i < 1000; i++ {
		vals = append(vals, rng.Uint64()>>rng.IntN(64))
	}
	for _, v := range vals {
		want := protowire.AppendVarint(nil, v)
		require.Equal(t, want, AppendVarint(nil, v), "v=%d", v)
		require.Equal(t, len(want), SizeVarint(v), "v=%d", v)

		r := NewReader(AppendVarintField(nil, 5, v))
		f, typ, ok := r.Next()
		require.True(t, ok)
		require.Equal(t, 5, f)
		require.Equal(t, VarintType, typ)
		require.Equal(t, v, r.Varint())
		_, _, ok = r.Next()
		require.False(t, ok)
		require.NoError(t, r.Err())
	}
}

func TestAppendFieldsMatchProtowire(t *testing.T) {
	for _, field := range []int{MinField, 15, 16, 2047, 2048, MaxField} {
		pw := func(typ protowire.Type) []byte { return protowire.AppendTag(nil, protowire.Number(field), typ) }
		require.Equal(t, pw(protowire.BytesType), AppendTag(nil, field, BytesType))

		require.Empty(t, AppendUint64(nil, field, 0))
		require.Empty(t, AppendInt64(nil, field, 0))
		require.Empty(t, AppendBool(nil, field, false))
		require.Empty(t, AppendString(nil, field, ""))
		require.Empty(t, AppendBytes(nil, field, nil))
		require.Equal(t, protowire.AppendVarint(pw(protowire.VarintType), 0), AppendVarintField(nil, field, 0))
		require.Equal(t, protowire.AppendString(pw(protowire.BytesType), ""), AppendStringField(nil, field, ""))
		require.Equal(t, protowire.AppendBytes(pw(protowire.BytesType), nil), AppendBytesField(nil, field, []byte{}))

		require.Equal(t, protowire.AppendVarint(pw(protowire.VarintType), 42), AppendUint64(nil, field, 42))
		require.Equal(t, protowire.AppendVarint(pw(protowire.VarintType), uint64(math.MaxInt64+1)), AppendInt64(nil, field, math.MinInt64))
		require.Equal(t, protowire.AppendVarint(pw(protowire.VarintType), 1), AppendBool(nil, field, true))
		require.Equal(t, protowire.AppendString(pw(protowire.BytesType), "héllo"), AppendString(nil, field, "héllo"))
		require.Equal(t, protowire.AppendBytes(pw(protowire.BytesType), []byte{0, 1}), AppendBytes(nil, field, []byte{0, 1}))
	}
}

func TestAppendValidString(t *testing.T) {
	cases := []string{
		"", "plain", "日本語", "\xff", "a\xffb", "a\xff\xfe\xfdb", "\xc3", "ok\xe2\x82", "\xed\xa0\x80x", // surrogate half
		strings.Repeat("\xff", 200), "é\xffé\xff",
	}
	for _, s := range cases {
		got := AppendValidString([]byte("prefix"), 3, s)
		want := AppendString([]byte("prefix"), 3, strings.ToValidUTF8(s, "\uFFFD"))
		require.Equal(t, want, got, "%q", s)
	}
	valid := "already valid"
	buf := make([]byte, 0, 64)
	require.Zero(t, testing.AllocsPerRun(100, func() { buf = AppendValidString(buf[:0], 1, valid) }))
}

func TestOpenCloseMessage(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 129, 16383, 16384, 1<<21 - 1, 1 << 21} {
		body := bytes.Repeat([]byte{0xab}, n)
		want := protowire.AppendBytes(protowire.AppendTag([]byte("x"), 7, protowire.BytesType), body)

		dst, m := OpenMessage([]byte("x"), 7)
		dst = append(dst, body...)
		require.Equal(t, want, CloseMessage(dst, m), "n=%d", n)
	}
}

func TestNestedMessages(t *testing.T) {
	// outer{1: inner{2: 300 bytes}, 3: 5}, built both ways.
	inner := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), bytes.Repeat([]byte("z"), 300))
	outerBody := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), inner)
	outerBody = protowire.AppendVarint(protowire.AppendTag(outerBody, 3, protowire.VarintType), 5)
	want := protowire.AppendBytes(protowire.AppendTag(nil, 9, protowire.BytesType), outerBody)

	dst, outer := OpenMessage(nil, 9)
	dst, in := OpenMessage(dst, 1)
	dst = AppendString(dst, 2, strings.Repeat("z", 300))
	dst = CloseMessage(dst, in)
	dst = AppendUint64(dst, 3, 5)
	require.Equal(t, want, CloseMessage(dst, outer))
}

func TestReaderReadsEveryType(t *testing.T) {
	var b []byte
	b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), math.MaxUint64)
	b = protowire.AppendFixed64(protowire.AppendTag(b, 2, protowire.Fixed64Type), 0x0102030405060708)
	b = protowire.AppendBytes(protowire.AppendTag(b, 3, protowire.BytesType), []byte("abc"))
	b = protowire.AppendFixed32(protowire.AppendTag(b, MaxField, protowire.Fixed32Type), 0xfffffffe)
	b = protowire.AppendBytes(protowire.AppendTag(b, 4, protowire.BytesType), nil)

	r := NewReader(b)
	f, typ, ok := r.Next()
	require.True(t, ok)
	require.Equal(t, 1, f)
	require.Equal(t, VarintType, typ)
	require.Equal(t, uint64(math.MaxUint64), r.Varint())
	require.Nil(t, r.Bytes())
	require.Zero(t, r.Fixed64())

	f, typ, ok = r.Next()
	require.True(t, ok)
	require.Equal(t, 2, f)
	require.Equal(t, Fixed64Type, typ)
	require.Equal(t, uint64(0x0102030405060708), r.Fixed64())
	require.Zero(t, r.Varint())

	f, typ, ok = r.Next()
	require.True(t, ok)
	require.Equal(t, 3, f)
	require.Equal(t, BytesType, typ)
	require.Equal(t, []byte("abc"), r.Bytes())
	require.Zero(t, r.Varint())
	require.Equal(t, 3, cap(r.Bytes()), "appending to a field must not overwrite the message")

	f, typ, ok = r.Next()
	require.True(t, ok)
	require.Equal(t, MaxField, f)
	require.Equal(t, Fixed32Type, typ)
	require.Equal(t, uint32(0xfffffffe), r.Fixed32())
	r.Skip()

	f, typ, ok = r.Next()
	require.True(t, ok)
	require.Equal(t, 4, f)
	require.Equal(t, BytesType, typ)
	require.Empty(t, r.Bytes())

	_, _, ok = r.Next()
	require.False(t, ok)
	require.NoError(t, r.Err())

	var zero Reader
	_, _, ok = zero.Next()
	require.False(t, ok)
	require.NoError(t, zero.Err())

	r.Reset([]byte{0x08, 0x01})
	f, _, ok = r.Next()
	require.True(t, ok)
	require.Equal(t, 1, f)
	require.Equal(t, uint64(1), r.Varint())
}

func TestReaderAcceptsNonMinimalVarints(t *testing.T) {
	// protowire (and so proto.Unmarshal) accepts padded varints up to ten
	// bytes; so does Reader.
	b := []byte{0x88, 0x80, 0x00, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}
	r := NewReader(b)
	f, typ, ok := r.Next()
	require.True(t, ok, "%v", r.Err())
	require.Equal(t, 1, f)
	require.Equal(t, VarintType, typ)
	require.Equal(t, uint64(1), r.Varint())
	_, _, ok = r.Next()
	require.False(t, ok)
	require.NoError(t, r.Err())
}

func TestReaderRejectsMalformedInput(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		err    error
		offset int
	}{
		{"truncated key", []byte{0x80}, ErrTruncated, 0},
		{"truncated varint value", []byte{0x08, 0xff, 0xff}, ErrTruncated, 1},
		{"varint value missing", []byte{0x08}, ErrTruncated, 1},
		{"eleven-byte varint", append([]byte{0x08}, bytes.Repeat([]byte{0x80}, 10)...), ErrOverflow, 1},
		{"tenth byte above 1", append(append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 9)...), 0x02), ErrOverflow, 1},
		{"overlong key", bytes.Repeat([]byte{0xff}, 11), ErrOverflow, 0},
		{"field zero", []byte{0x00, 0x01}, ErrFieldNumber, 0},
		{"field zero bytes", []byte{0x02, 0x00}, ErrFieldNumber, 0},
		{"field number too big", protowire.AppendVarint(nil, uint64(MaxField+1)<<3), ErrFieldNumber, 0},
		{"field number far too big", protowire.AppendVarint(nil, math.MaxUint64), ErrFieldNumber, 0},
		{"start group", []byte{0x08, 0x01, 0x0b, 0x0c}, ErrGroup, 2},
		{"end group", []byte{0x0c}, ErrGroup, 0},
		{"wire type 6", []byte{0x0e, 0x00}, ErrWireType, 0},
		{"wire type 7", []byte{0x0f, 0x00}, ErrWireType, 0},
		{"length past the end", []byte{0x0a, 0x05, 'a', 'b'}, ErrLength, 1},
		{"length missing", []byte{0x0a}, ErrTruncated, 1},
		{"huge length", append([]byte{0x0a}, protowire.AppendVarint(nil, math.MaxUint64)...), ErrLength, 1},
		{"length above int32", append([]byte{0x0a}, protowire.AppendVarint(nil, 1<<40)...), ErrLength, 1},
		{"truncated fixed64", []byte{0x09, 1, 2, 3, 4, 5, 6, 7}, ErrTruncated, 1},
		{"truncated fixed32", []byte{0x0d, 1, 2, 3}, ErrTruncated, 1},
		{"good then bad", []byte{0x08, 0x01, 0x12, 0x01, 'x', 0x1a, 0x02, 'y'}, ErrLength, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.in)
			for {
				if _, _, ok := r.Next(); !ok {
					break
				}
			}
			err := r.Err()
			require.ErrorIs(t, err, tt.err)
			var werr *Error
			require.True(t, errors.As(err, &werr))
			require.Equal(t, tt.offset, werr.Offset)
			require.Contains(t, err.Error(), "wire: "+tt.err.Error()+" at offset ")

			// Once failed, it stays failed.
			_, _, ok := r.Next()
			require.False(t, ok)
			require.Equal(t, err, r.Err())

			// protowire rejects the same input.
			require.False(t, protowireAccepts(tt.in), "protowire accepts %x", tt.in)
		})
	}
}

func TestReaderTruncationsOfValidMessage(t *testing.T) {
	var b []byte
	b = AppendUint64(b, 1, 1<<40)
	b = AppendString(b, 2, "hello, world")
	b = protowire.AppendFixed64(protowire.AppendTag(b, 3, protowire.Fixed64Type), 7)
	b = protowire.AppendFixed32(protowire.AppendTag(b, 4, protowire.Fixed32Type), 7)
	b = AppendUint64(b, 100000, 5)
	for i := 0; i <= len(b); i++ {
		prefix := b[:i]
		n := readAll(prefix)
		if protowireAccepts(prefix) {
			require.Equal(t, len(prefix), n.consumed, "prefix %d", i)
			require.NoError(t, n.err, "prefix %d", i)
		} else {
			require.Error(t, n.err, "prefix %d", i)
		}
	}
}

type readResult struct {
	fields   []protoField
	consumed int
	err      error
}

type protoField struct {
	num   int
	typ   Type
	val   uint64
	bytes []byte
}

func readAll(b []byte) readResult {
	var res readResult
	r := NewReader(b)
	for {
		f, typ, ok := r.Next()
		if !ok {
			break
		}
		pf := protoField{num: f, typ: typ}
		switch typ {
		case VarintType:
			pf.val = r.Varint()
		case Fixed64Type:
			pf.val = r.Fixed64()
		case Fixed32Type:
			pf.val = uint64(r.Fixed32())
		case BytesType:
			pf.bytes = r.Bytes()
		}
		res.fields = append(res.fields, pf)
		res.consumed = r.off
	}
	res.err = r.Err()
	return res
}

// protowireFields parses b with protowire, rejecting groups as Reader does.
// It reports whether b is a well-formed message without groups.
func protowireFields(b []byte) ([]protoField, bool) {
	var out []protoField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return nil, false
		}
		b = b[n:]
		pf := protoField{num: int(num), typ: Type(typ)}
		switch typ {
		case protowire.VarintType:
			pf.val, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			pf.val, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			pf.val = uint64(v)
		case protowire.BytesType:
			pf.bytes, n = protowire.ConsumeBytes(b)
		default:
			return nil, false
		}
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		out = append(out, pf)
	}
	return out, true
}

func protowireAccepts(b []byte) bool {
	_, ok := protowireFields(b)
	return ok
}

func TestReaderAgreesWithProtowireOnRandomInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(24))
		for j := range b {
			// Bias towards small keys and lengths so that some inputs parse.
			if rng.IntN(2) == 0 {
				b[j] = byte(rng.IntN(32))
			} else {
				b[j] = byte(rng.Uint32())
			}
		}
		checkAgainstProtowire(t, b)
	}
}

func checkAgainstProtowire(t *testing.T, b []byte) {
	t.Helper()
	got := readAll(b)
	want, ok := protowireFields(b)
	if !ok {
		require.Error(t, got.err, "%x", b)
		return
	}
	require.NoError(t, got.err, "%x", b)
	require.Equal(t, len(want), len(got.fields), "%x", b)
	for i := range want {
		require.Equal(t, want[i].num, got.fields[i].num)
		require.Equal(t, want[i].typ, got.fields[i].typ)
		require.Equal(t, want[i].val, got.fields[i].val)
		require.Equal(t, want[i].bytes, got.fields[i].bytes)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x96, 0x01})
	f.Add([]byte{0x0a, 0x03, 'a', 'b', 'c', 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1d, 1, 2, 3, 4})
	f.Add([]byte{0x0b, 0x0c})
	f.Add(append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstProtowire(t, b)
	})
}

func BenchmarkAppendVarint(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendVarint(buf[:0], uint64(i)<<20)
	}
}

func BenchmarkReader(b *testing.B) {
	var msg []byte
	for i := 1; i <= 20; i++ {
		msg = AppendUint64(msg, i, uint64(i)<<30)
		msg = AppendString(msg, i+20, "some string value")
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := NewReader(msg)
		for {
			if _, _, ok := r.Next(); !ok {
				break
			}
		}
		if r.Err() != nil {
			b.Fatal(r.Err())
		}
	}
}

func TestBytesOffset(t *testing.T) {
	var b []byte
	b = AppendUint64(b, 1, 300)
	b = AppendString(b, 2, "abc")
	b = AppendString(b, 3, strings.Repeat("x", 200))
	r := NewReader(b)
	var offsets []int
	for {
		_, typ, ok := r.Next()
		if !ok {
			break
		}
		if typ == BytesType {
			off := r.BytesOffset()
			require.Equal(t, r.Bytes(), b[off:off+len(r.Bytes())])
			offsets = append(offsets, off)
		}
	}
	require.NoError(t, r.Err())
	require.Equal(t, []int{3 + 2, 3 + 2 + 3 + 3}, offsets) // a two-byte length before the 200 bytes
}

// TestDuration: a google.protobuf.Duration as proto.Marshal writes it reads
// back as nanoseconds, saturating where seconds overflow the int64 range.
func TestDuration(t *testing.T) {
	enc := func(secs int64, nanos int32) []byte {
		var b []byte
		if secs != 0 {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(secs))
		}
		if nanos != 0 {
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(int64(nanos)))
		}
		return b
	}
	for _, tc := range []struct {
		secs  int64
		nanos int32
		want  int64
	}{
		{0, 0, 0},
		{1, 500, 1_000_000_500},
		{-2, -5, -2_000_000_005},
		{math.MaxInt64 / 1_000_000_000, 999_999_999, math.MaxInt64},
		{math.MaxInt64, 0, math.MaxInt64},
		{math.MinInt64, 0, math.MinInt64},
		{-(math.MaxInt64 / 1_000_000_000), -999_999_999, math.MinInt64},
	} {
		got, err := Duration(enc(tc.secs, tc.nanos))
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%d s %d ns", tc.secs, tc.nanos)
	}
	_, err := Duration([]byte{0x08})
	require.Error(t, err, "a varint cut short")

	// Two occurrences of one message field merge: seconds from the first,
	// nanos from the second.
	var secs, nanos int64
	require.NoError(t, MergeDuration(enc(3, 0), &secs, &nanos))
	require.NoError(t, MergeDuration(enc(0, 7), &secs, &nanos))
	require.Equal(t, int64(3_000_000_007), DurationNanos(secs, nanos))
}
