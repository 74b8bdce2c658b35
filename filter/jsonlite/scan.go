package jsonlite

import (
	"unicode/utf8"
	"unsafe"
)

// Scanning primitives: they validate and step over JSON in a byte slice without
// building values and without allocating (only a returned error allocates). They
// let a caller read a few members of a large document, such as a request body, and
// know the byte offsets of what it read so that it can edit the document in place.
//
// Offsets are indexes into data. A value "token" is the bytes of one value with no
// surrounding space: the quotes of a string, the brackets of an object or array.

// SkipSpace returns the offset of the first byte at or after pos that is not JSON
// white space (space, tab, line feed, carriage return), or len(data).
func SkipSpace(data []byte, pos int) int {
	return skipSpace(data, pos)
}

// ScanString validates the string token whose opening quote is at data[pos] and
// returns the offset just past its closing quote, and whether it holds escapes.
// The caller must have checked that data[pos] is '"'. It accepts and rejects
// exactly what Parse does, with the same errors, and steps over plain ASCII a
// table lookup per byte, which matters in the Wasm filter.
func ScanString(data []byte, pos int) (end int, escaped bool, err error) {
	i := pos + 1
	for {
		// Sixteen bytes a step while both words are plain (half the loop's
		// branches), then eight.
		for i+16 <= len(data) && plainWord(load64(data, i)) && plainWord(load64(data, i+8)) {
			i += 16
		}
		for i+8 <= len(data) && plainWord(load64(data, i)) {
			i += 8
		}
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i >= len(data) {
			return 0, false, &SyntaxError{Offset: pos, Msg: "unterminated string"}
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(data) {
				return 0, false, &SyntaxError{Offset: i, Msg: "unterminated escape"}
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex4(data[i+2:i+6]) {
					return 0, false, &SyntaxError{Offset: i, Msg: "malformed \\u escape"}
				}
				i += 6
			default:
				return 0, false, &SyntaxError{Offset: i, Msg: "unknown escape"}
			}
		case c < 0x20:
			return 0, false, &SyntaxError{Offset: i, Msg: "control character in string"}
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, false, &SyntaxError{Offset: i, Msg: "invalid utf-8 in string"}
			}
			i += size
		}
	}
}

// load64 reads the eight bytes at b[i:i+8] (the caller checked they exist) in
// the machine's byte order with one load: upstream Go's Wasm backend does not
// merge eight byte loads into one (as the amd64 and arm64 backends do), so a
// word assembled from bytes cost eight loads there. plainWord does not depend
// on the byte order.
func load64(b []byte, i int) uint64 {
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i))
}

// plainWord reports whether the eight bytes of x are all plain. It tests them
// as one word, inlined, from one 8-byte load (upstream Go compiles byte loops
// and calls to slow Wasm; this takes an eighth of the branches): no byte has
// its high bit, and none is below 0x20, '"' or '\\' (each found with the
// classic zero-byte test, exact once high bits are ruled out, in either byte
// order).
func plainWord(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := x ^ ('"' * lo)
	e := x ^ ('\\' * lo)
	return (x|(x-0x20*lo)&^x|(q-lo)&^q|(e-lo)&^e)&hi == 0
}

// plain marks the bytes that stand for themselves in a string: ASCII from 0x20,
// except '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// ScanNumber validates the number token starting at data[pos] and returns the
// offset just past it.
func ScanNumber(data []byte, pos int) (end int, err error) {
	end, ok := scanNumber(data, pos)
	if !ok {
		return 0, &SyntaxError{Offset: pos, Msg: "malformed number"}
	}
	return end, nil
}

// Unquote decodes a string token (quotes included) that ScanString accepted.
func Unquote(token []byte) (string, error) {
	if len(token) < 2 || token[0] != '"' {
		return "", &SyntaxError{Offset: 0, Msg: "not a string"}
	}
	end, escaped, err := ScanString(token, 0)
	if err != nil {
		return "", err
	}
	if end != len(token) {
		return "", &SyntaxError{Offset: end, Msg: "unexpected data after the string"}
	}
	raw := token[1 : end-1]
	if !escaped {
		return string(raw), nil
	}
	return unescape(raw), nil
}

// SkipValue validates the value starting at data[pos] (which must not be white
// space) and returns the offset just past it. Objects and arrays are walked
// iteratively, at most MaxDepth deep counted from pos, so SkipValue neither
// recurses nor allocates on success.
func SkipValue(data []byte, pos int) (end int, err error) {
	// stack holds one bit per open container: 1 for an object, 0 for an array.
	var stack uint64
	depth := 0
	for {
		// A value starts at pos.
		if pos >= len(data) {
			return 0, &SyntaxError{Offset: pos, Msg: "unexpected end of input"}
		}
		switch c := data[pos]; {
		case c == '{' || c == '[':
			if depth >= MaxDepth {
				return 0, &SyntaxError{Offset: pos, Msg: ErrTooDeep.Error()}
			}
			stack <<= 1
			if c == '{' {
				stack |= 1
			}
			depth++
			pos = skipSpace(data, pos+1)
			if pos < len(data) && (data[pos] == '}' && c == '{' || data[pos] == ']' && c == '[') {
				pos++
				depth--
				stack >>= 1
				break
			}
			if c == '{' {
				if pos, err = memberName(data, pos); err != nil {
					return 0, err
				}
			}
			continue
		case c == '"':
			if pos, _, err = ScanString(data, pos); err != nil {
				return 0, err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if pos, err = ScanNumber(data, pos); err != nil {
				return 0, err
			}
		case c == 't':
			if pos, err = literal(data, pos, "true"); err != nil {
				return 0, err
			}
		case c == 'f':
			if pos, err = literal(data, pos, "false"); err != nil {
				return 0, err
			}
		case c == 'n':
			if pos, err = literal(data, pos, "null"); err != nil {
				return 0, err
			}
		default:
			return 0, &SyntaxError{Offset: pos, Msg: "unexpected character"}
		}
		// A value ended at pos: close containers until one continues.
		for {
			if depth == 0 {
				return pos, nil
			}
			pos = skipSpace(data, pos)
			if pos >= len(data) {
				return 0, &SyntaxError{Offset: pos, Msg: "unexpected end of input"}
			}
			inObject := stack&1 == 1
			c := data[pos]
			if c == ',' {
				pos = skipSpace(data, pos+1)
				if inObject {
					if pos, err = memberName(data, pos); err != nil {
						return 0, err
					}
				}
				break
			}
			if inObject && c == '}' || !inObject && c == ']' {
				pos++
				depth--
				stack >>= 1
				continue
			}
			if inObject {
				return 0, &SyntaxError{Offset: pos, Msg: "expected ',' or '}' in object"}
			}
			return 0, &SyntaxError{Offset: pos, Msg: "expected ',' or ']' in array"}
		}
	}
}

// memberName reads `"name" :` at data[pos] and returns the offset of the value
// that follows, past any space.
func memberName(data []byte, pos int) (int, error) {
	if pos >= len(data) || data[pos] != '"' {
		return 0, &SyntaxError{Offset: pos, Msg: "expected a member name"}
	}
	end, _, err := ScanString(data, pos)
	if err != nil {
		return 0, err
	}
	pos = skipSpace(data, end)
	if pos >= len(data) || data[pos] != ':' {
		return 0, &SyntaxError{Offset: pos, Msg: "expected ':' after member name"}
	}
	return skipSpace(data, pos+1), nil
}

func literal(data []byte, pos int, text string) (int, error) {
	if !hasPrefixAt(data, pos, text) {
		return 0, &SyntaxError{Offset: pos, Msg: "unknown literal"}
	}
	return pos + len(text), nil
}

// Members walks the members of one object without allocating. Start it with
// ObjectMembers; call Next until it returns false, then check Err.
type Members struct {
	data  []byte
	pos   int
	state uint8 // 0 before '{', 1 inside, 2 finished
	err   error

	// NameStart and NameEnd delimit the current member's name token (quotes
	// included); ValueStart and ValueEnd its value token. Valid after Next
	// returned true.
	NameStart, NameEnd   int
	ValueStart, ValueEnd int
	nameEscaped          bool
}

// ObjectMembers starts walking the object whose '{' is at data[pos].
func ObjectMembers(data []byte, pos int) Members {
	return Members{data: data, pos: pos}
}

// Next advances to the next member and reports whether there is one. Every value
// it steps over is validated with SkipValue.
func (m *Members) Next() bool {
	if !m.NextName() {
		return false
	}
	end, err := SkipValue(m.data, m.ValueStart)
	if err != nil {
		return m.fail(err)
	}
	m.ValueDone(end)
	return true
}

// NextName advances to the next member like Next but stops at the start of its
// value: NameStart, NameEnd and ValueStart are set, ValueEnd is not. It lets a
// caller read a value in the same pass that validates it. Before the next call
// to Next or NextName, the caller must step over the value and report where it
// ended with ValueDone.
func (m *Members) NextName() bool {
	switch m.state {
	case 0:
		if m.pos >= len(m.data) || m.data[m.pos] != '{' {
			return m.fail(&SyntaxError{Offset: m.pos, Msg: "expected an object"})
		}
		m.state = 1
		m.pos = skipSpace(m.data, m.pos+1)
		if m.pos < len(m.data) && m.data[m.pos] == '}' {
			m.pos++
			m.state = 2
			return false
		}
	case 1:
		m.pos = skipSpace(m.data, m.pos)
		if m.pos >= len(m.data) {
			return m.fail(&SyntaxError{Offset: m.pos, Msg: "unexpected end of input in object"})
		}
		switch m.data[m.pos] {
		case ',':
			m.pos = skipSpace(m.data, m.pos+1)
		case '}':
			m.pos++
			m.state = 2
			return false
		default:
			return m.fail(&SyntaxError{Offset: m.pos, Msg: "expected ',' or '}' in object"})
		}
	default:
		return false
	}
	if m.pos >= len(m.data) || m.data[m.pos] != '"' {
		return m.fail(&SyntaxError{Offset: m.pos, Msg: "expected a member name"})
	}
	end, escaped, err := ScanString(m.data, m.pos)
	if err != nil {
		return m.fail(err)
	}
	m.NameStart, m.NameEnd, m.nameEscaped = m.pos, end, escaped
	m.pos = skipSpace(m.data, end)
	if m.pos >= len(m.data) || m.data[m.pos] != ':' {
		return m.fail(&SyntaxError{Offset: m.pos, Msg: "expected ':' after member name"})
	}
	m.pos = skipSpace(m.data, m.pos+1)
	if m.pos >= len(m.data) {
		return m.fail(&SyntaxError{Offset: m.pos, Msg: "unexpected end of input"})
	}
	m.ValueStart, m.ValueEnd = m.pos, m.pos
	return true
}

// ValueDone records that the current value, which the caller has validated
// (with SkipValue or the scanning functions), ends at end.
func (m *Members) ValueDone(end int) {
	m.pos, m.ValueEnd = end, end
}

func (m *Members) fail(err error) bool {
	m.err = err
	m.state = 2
	return false
}

// Err returns the syntax error that stopped the walk, or nil.
func (m *Members) Err() error { return m.err }

// End returns the offset just past the object's '}' once Next returned false
// with a nil Err.
func (m *Members) End() int { return m.pos }

// NameIs reports whether the current member's decoded name is exactly name. It
// allocates only when the name token holds escapes.
func (m *Members) NameIs(name string) bool {
	raw := m.data[m.NameStart+1 : m.NameEnd-1]
	if !m.nameEscaped {
		return string(raw) == name
	}
	return unescape(raw) == name
}

// Name returns the current member's name as written, without its quotes. It is
// the decoded name when NameEscaped is false.
func (m *Members) Name() []byte { return m.data[m.NameStart+1 : m.NameEnd-1] }

// NameEscaped reports whether the current member's name token holds escapes.
func (m *Members) NameEscaped() bool { return m.nameEscaped }

// Value returns the current member's value token.
func (m *Members) Value() []byte { return m.data[m.ValueStart:m.ValueEnd] }

// Elements walks the elements of one array without allocating. Start it with
// ArrayElements; call Next until it returns false, then check Err.
type Elements struct {
	data  []byte
	pos   int
	state uint8
	err   error

	// ValueStart and ValueEnd delimit the current element's token. Valid after
	// Next returned true.
	ValueStart, ValueEnd int
}

// ArrayElements starts walking the array whose '[' is at data[pos].
func ArrayElements(data []byte, pos int) Elements {
	return Elements{data: data, pos: pos}
}

// Next advances to the next element and reports whether there is one. Every
// element is validated with SkipValue.
func (e *Elements) Next() bool {
	if !e.NextStart() {
		return false
	}
	end, err := SkipValue(e.data, e.ValueStart)
	if err != nil {
		return e.fail(err)
	}
	e.ValueDone(end)
	return true
}

// NextStart advances to the next element like Next but stops at its start:
// ValueStart is set, ValueEnd is not. Before the next call to Next or
// NextStart, the caller must step over the element and report where it ended
// with ValueDone.
func (e *Elements) NextStart() bool {
	switch e.state {
	case 0:
		if e.pos >= len(e.data) || e.data[e.pos] != '[' {
			return e.fail(&SyntaxError{Offset: e.pos, Msg: "expected an array"})
		}
		e.state = 1
		e.pos = skipSpace(e.data, e.pos+1)
		if e.pos < len(e.data) && e.data[e.pos] == ']' {
			e.pos++
			e.state = 2
			return false
		}
	case 1:
		e.pos = skipSpace(e.data, e.pos)
		if e.pos >= len(e.data) {
			return e.fail(&SyntaxError{Offset: e.pos, Msg: "unexpected end of input in array"})
		}
		switch e.data[e.pos] {
		case ',':
			e.pos = skipSpace(e.data, e.pos+1)
		case ']':
			e.pos++
			e.state = 2
			return false
		default:
			return e.fail(&SyntaxError{Offset: e.pos, Msg: "expected ',' or ']' in array"})
		}
	default:
		return false
	}
	if e.pos >= len(e.data) {
		return e.fail(&SyntaxError{Offset: e.pos, Msg: "unexpected end of input in array"})
	}
	e.ValueStart, e.ValueEnd = e.pos, e.pos
	return true
}

// ValueDone records that the current element, which the caller has validated,
// ends at end.
func (e *Elements) ValueDone(end int) {
	e.pos, e.ValueEnd = end, end
}

func (e *Elements) fail(err error) bool {
	e.err = err
	e.state = 2
	return false
}

// Err returns the syntax error that stopped the walk, or nil.
func (e *Elements) Err() error { return e.err }

// End returns the offset just past the array's ']' once Next returned false with
// a nil Err.
func (e *Elements) End() int { return e.pos }

// Value returns the current element's token.
func (e *Elements) Value() []byte { return e.data[e.ValueStart:e.ValueEnd] }
