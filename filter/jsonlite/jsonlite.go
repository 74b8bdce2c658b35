// Package jsonlite is a small, reflection-free JSON reader for the filter.
//
// The filter runs inside every Envoy worker as a Wasm module, where each imported
// package adds to the module size and to every VM's start. encoding/json brings
// reflect and fmt with it; this package brings neither. It offers two things:
//
//   - Parse, which reads a whole document into a Value tree. It is meant for
//     configuration, read once per (re)configure.
//   - Field lookups on a top-level object (see Fields), which locate members without
//     building a tree, so that request bodies can be read and edited in place.
//
// The grammar is RFC 8259. Strings must be valid UTF-8; nesting is limited to
// MaxDepth.
package jsonlite

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects Parse accepts.
const MaxDepth = 64

// Kind is the type of a JSON value.
type Kind uint8

// The JSON value kinds.
const (
	Null Kind = iota
	Bool
	Number
	String
	Array
	Object
)

// String names the kind as JSON Schema does ("object", "string", ...).
func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "boolean"
	case Number:
		return "number"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return "unknown"
}

// Member is one name/value pair of an object, in document order.
type Member struct {
	Name  string
	Value *Value
}

// Value is a parsed JSON value. Only the fields of its Kind are set: Str for
// strings, Num (the literal text) for numbers, Bool for booleans, Items for arrays
// and Members for objects.
type Value struct {
	Kind    Kind
	Str     string
	Num     string
	Bool    bool
	Items   []*Value
	Members []Member
}

// Get returns the member named name of an object, or nil when there is none or v
// is not an object.
func (v *Value) Get(name string) *Value {
	if v == nil || v.Kind != Object {
		return nil
	}
	for i := range v.Members {
		if v.Members[i].Name == name {
			return v.Members[i].Value
		}
	}
	return nil
}

// Int returns a number value as an int64 when it is an integer that fits.
func (v *Value) Int() (int64, bool) {
	if v == nil || v.Kind != Number {
		return 0, false
	}
	n, err := strconv.ParseInt(v.Num, 10, 64)
	return n, err == nil
}

// Float returns a number value as a float64.
func (v *Value) Float() (float64, bool) {
	if v == nil || v.Kind != Number {
		return 0, false
	}
	f, err := strconv.ParseFloat(v.Num, 64)
	return f, err == nil
}

// SyntaxError reports malformed JSON and the byte offset where it was found.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return "invalid json at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// ErrTooDeep is wrapped by the SyntaxError returned for documents nested deeper
// than MaxDepth.
var ErrTooDeep = errors.New("nested too deeply")

// Parse reads one complete JSON document. Trailing non-space bytes are an error.
func Parse(data []byte) (*Value, error) {
	p := parser{data: data}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.fail("unexpected data after the document")
	}
	return v, nil
}

type parser struct {
	data []byte
	pos  int
}

func (p *parser) fail(msg string) error {
	return &SyntaxError{Offset: p.pos, Msg: msg}
}

func (p *parser) skipSpace() {
	p.pos = skipSpace(p.data, p.pos)
}

func skipSpace(data []byte, pos int) int {
	for pos < len(data) {
		switch data[pos] {
		case ' ', '\t', '\n', '\r':
			pos++
		default:
			return pos
		}
	}
	return pos
}

func (p *parser) value(depth int) (*Value, error) {
	if p.pos >= len(p.data) {
		return nil, p.fail("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &Value{Kind: String, Str: s}, nil
	case c == 't' || c == 'f' || c == 'n':
		return p.literal()
	case c == '-' || (c >= '0' && c <= '9'):
		end, ok := scanNumber(p.data, p.pos)
		if !ok {
			return nil, p.fail("malformed number")
		}
		v := &Value{Kind: Number, Num: string(p.data[p.pos:end])}
		p.pos = end
		return v, nil
	default:
		return nil, p.fail("unexpected character " + strconv.QuoteRune(rune(c)))
	}
}

func (p *parser) literal() (*Value, error) {
	for _, lit := range [...]struct {
		text string
		v    Value
	}{{"true", Value{Kind: Bool, Bool: true}}, {"false", Value{Kind: Bool}}, {"null", Value{Kind: Null}}} {
		if hasPrefixAt(p.data, p.pos, lit.text) {
			p.pos += len(lit.text)
			v := lit.v
			return &v, nil
		}
	}
	return nil, p.fail("unknown literal")
}

func hasPrefixAt(data []byte, pos int, s string) bool {
	return len(data)-pos >= len(s) && string(data[pos:pos+len(s)]) == s
}

func (p *parser) object(depth int) (*Value, error) {
	if depth > MaxDepth {
		return nil, &SyntaxError{Offset: p.pos, Msg: ErrTooDeep.Error()}
	}
	p.pos++ // {
	v := &Value{Kind: Object}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.fail("expected a member name")
		}
		name, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.fail("expected ':' after member name")
		}
		p.pos++
		p.skipSpace()
		item, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		v.Members = append(v.Members, Member{Name: name, Value: item})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail("unexpected end of input in object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return v, nil
		default:
			return nil, p.fail("expected ',' or '}' in object")
		}
	}
}

func (p *parser) array(depth int) (*Value, error) {
	if depth > MaxDepth {
		return nil, &SyntaxError{Offset: p.pos, Msg: ErrTooDeep.Error()}
	}
	p.pos++ // [
	v := &Value{Kind: Array}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		item, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		v.Items = append(v.Items, item)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail("unexpected end of input in array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return v, nil
		default:
			return nil, p.fail("expected ',' or ']' in array")
		}
	}
}

// str reads the string starting at p.pos (which holds the opening quote).
func (p *parser) str() (string, error) {
	end, escaped, err := ScanString(p.data, p.pos)
	if err != nil {
		return "", err
	}
	raw := p.data[p.pos+1 : end-1]
	p.pos = end
	if !escaped {
		return string(raw), nil
	}
	return unescape(raw), nil
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !isHex(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		default:
			r |= rune(c-'A') + 10
		}
	}
	return r
}

// unescape decodes an already validated string body.
func unescape(raw []byte) string {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hexVal(raw[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) && i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if r2 := utf16.DecodeRune(r, hexVal(raw[i+2:i+6])); r2 != utf8.RuneError {
					r = r2
					i += 6
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, raw[i+1])
		}
		i += 2
	}
	return string(out)
}

// scanNumber returns the end of the number starting at data[start].
func scanNumber(data []byte, start int) (int, bool) {
	i := start
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	default:
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return 0, false
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return 0, false
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	return i, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
