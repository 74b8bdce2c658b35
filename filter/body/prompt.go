package body

import (
	"math/bits"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// Roles of the containers promptText walks through.
const (
	roleOther   uint8 = iota // nothing inside counts
	roleList                 // the messages (or input) array
	roleMessage              // an object element of the list
	roleParts                // a message's "content" array
	rolePart                 // an object element of the parts
)

// promptText steps over the array at body[start] (a "messages" array, or an
// "input" array when countStrings) and returns the offset just past it and
// the bytes of message text in it: every "content" string of an object
// element, every "text" string of an object element of a "content" array,
// and with countStrings every string element.
func promptText(body []byte, start int, countStrings bool) (end int, text int64, err error) {
	return scanValue(body, start, roleList, countStrings)
}

// skipValue steps over the value at body[pos] and returns the offset just
// past it, checking its structure as scanValue does.
func skipValue(body []byte, pos int) (int, error) {
	end, _, err := scanValue(body, pos, roleOther, false)
	return end, err
}

// scanValue steps over the value at body[start], whose outermost container
// has role top, and returns the offset just past it and the bytes of the
// strings that count as message text in it (see promptText).
//
// It checks the value's structure as RFC 8259 has it: brackets that match,
// commas and colons where they belong, numbers and literals, at most
// jsonlite.MaxDepth levels, every string closed. It does not validate what
// strings hold (escapes, control characters, UTF-8): it finds each string's
// end from its quotes alone (stringEnd), so the text of a message costs a
// word test per eight bytes and no byte loop. Names are compared only in the
// objects whose names matter (messages and content parts).
//
// It is one flat loop over the tokens, without a call per token: a message
// costs what its few structural bytes cost.
func scanValue(body []byte, start int, top uint8, countStrings bool) (end int, text int64, err error) {
	// roles[d] is the role of the container at depth d (1-based); containers
	// deeper than the parts' objects are roleOther, and so is all they hold.
	var roles [6]uint8
	var stack uint64 // one bit per open container: 1 for an object
	n := len(body)
	depth := 0
	pos := start
	e := 0
	// counting is set while the value about to be read is one that counts
	// when it is a string; parts when it is a content array.
	counting, parts := false, false
	for {
		// A value starts at pos.
		if pos >= n {
			return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "unexpected end of input"}
		}
		switch c := body[pos]; {
		case c == '"':
			if e = shortStringEnd(body, pos); e < 0 {
				if e = stringEnd(body, pos); e < 0 {
					return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "unterminated string"}
				}
			}
			if counting {
				text += int64(e - pos - 2)
			}
			pos = e
		case c == '{' || c == '[':
			if depth >= jsonlite.MaxDepth {
				return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: jsonlite.ErrTooDeep.Error()}
			}
			parent, role := roleOther, roleOther
			if depth < len(roles) {
				parent = roles[depth]
			}
			if c == '{' && depth > 0 && parent == roleList {
				// Most messages are flat objects of strings: read in
				// one go, or from their '{' again by the loop below.
				if e, t := flatMessages(body, pos); e > 0 {
					text += t
					pos = e
					break
				}
			}
			switch {
			case depth == 0:
				role = top
			case c == '{' && parent == roleList:
				role = roleMessage
			case c == '[' && parts:
				role = roleParts
			case c == '{' && parent == roleParts:
				role = rolePart
			}
			stack <<= 1
			if c == '{' {
				stack |= 1
			}
			depth++
			if depth < len(roles) {
				roles[depth] = role
			}
			counting, parts = false, false
			pos++
			for pos < n && spaceByte[body[pos]] {
				pos++
			}
			if pos >= n {
				return 0, 0, endInside(pos, c == '{')
			}
			if body[pos] == '}' && c == '{' || body[pos] == ']' && c == '[' {
				pos++
				depth--
				stack >>= 1
				break
			}
			if c == '{' {
				goto name
			}
			counting = countStrings && role == roleList
			continue
		case c == '-' || (c >= '0' && c <= '9'):
			if pos, err = jsonlite.ScanNumber(body, pos); err != nil {
				return 0, 0, err
			}
		case c == 't':
			if pos, err = literalAt(body, pos, "true"); err != nil {
				return 0, 0, err
			}
		case c == 'f':
			if pos, err = literalAt(body, pos, "false"); err != nil {
				return 0, 0, err
			}
		case c == 'n':
			if pos, err = literalAt(body, pos, "null"); err != nil {
				return 0, 0, err
			}
		default:
			return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "unexpected character"}
		}
		// A value ended at pos: close containers until one continues.
		for {
			if depth == 0 {
				return pos, text, nil
			}
			for pos < n && spaceByte[body[pos]] {
				pos++
			}
			inObject := stack&1 == 1
			if pos >= n {
				return 0, 0, endInside(pos, inObject)
			}
			c := body[pos]
			if c == ',' {
				pos++
				for pos < n && spaceByte[body[pos]] {
					pos++
				}
				if inObject {
					goto name
				}
				counting, parts = countStrings && depth < len(roles) && roles[depth] == roleList, false
				break
			}
			if inObject && c == '}' || !inObject && c == ']' {
				pos++
				depth--
				stack >>= 1
				continue
			}
			if inObject {
				return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "expected ',' or '}' in object"}
			}
			return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "expected ',' or ']' in array"}
		}
		continue
	name:
		// `"name" :` at pos, in the object at depth.
		if pos >= n || body[pos] != '"' {
			return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "expected a member name"}
		}
		if e = shortStringEnd(body, pos); e < 0 {
			if e = stringEnd(body, pos); e < 0 {
				return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "unterminated string"}
			}
		}
		counting, parts = false, false
		if depth < len(roles) && (roles[depth] == roleMessage || roles[depth] == rolePart) {
			// The names that count are compared as one word, without a call;
			// other lengths only when escapes could spell them.
			switch l := e - pos - 2; {
			case l == 7 && roles[depth] == roleMessage:
				counting = load64(body, pos+1) == contentWord
			case l == 4 && roles[depth] == rolePart:
				counting = load32(body, pos+1) == textWord
			case l > 4:
				counting = nameIs(body[pos:e], roles[depth] == roleMessage)
			}
			parts = counting && roles[depth] == roleMessage
		}
		pos = e
		for pos < n && spaceByte[body[pos]] {
			pos++
		}
		if pos >= n || body[pos] != ':' {
			return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "expected ':' after member name"}
		}
		pos++
		for pos < n && spaceByte[body[pos]] {
			pos++
		}
	}
}

// flatMessage reads the message object at body[pos] when it is flat: its
// members' values are all strings, a name and its value are separated by ':'
// and members by ',' (each maybe followed by one space, as Python's json
// writes them), and nothing else stands between the tokens. It returns the
// offset just past the object and the bytes of its "content" strings, or -1
// for any other object (which the caller then reads token by token, whether
// it is valid or not). Its common path takes no jump back but one per member:
// under a Wasm runtime every jump of upstream Go's code is dear.
func flatMessage(body []byte, pos int) (end int, text int64) {
	n := len(body)
	p := pos + 1
	for p+1 < n && body[p] == '"' {
		e := shortStringEnd(body, p)
		if e < 0 {
			e = stringEnd(body, p)
		}
		if e < 0 || e+1 >= n || body[e] != ':' {
			return -1, 0
		}
		content := e-p == 9 && load64(body, p+1) == contentWord
		if e-p > 9 && indexByte(body[p:e], '\\') >= 0 {
			return -1, 0 // a name with escapes may spell "content"
		}
		v := e + 1
		if body[v] == ' ' {
			v++
		}
		if v >= n || body[v] != '"' {
			return -1, 0
		}
		ve := shortStringEnd(body, v)
		if ve < 0 {
			ve = stringEnd(body, v)
		}
		if ve < 0 || ve >= n {
			return -1, 0
		}
		if content {
			text += int64(ve - v - 2)
		}
		switch body[ve] {
		case '}':
			return ve + 1, text
		case ',':
			p = ve + 1
			if p < n && body[p] == ' ' {
				p++
			}
		default:
			return -1, 0
		}
	}
	return -1, 0
}

// flatMessages reads the messages from the one at body[pos] on while they
// are flat (flatMessage) and separated by ',' (maybe followed by one space):
// it returns the offset just past the last one it read, and the bytes of
// their "content" strings; -1 when the first is not flat. One call reads a
// whole conversation of plain messages. Under GOARCH=wasm it is written in
// assembly (scan_wasm.s); elsewhere it is flatMessagesGo.
//
// flatMessagesGo is flatMessages in Go.
func flatMessagesGo(body []byte, pos int) (end int, text int64) {
	end = -1
	for {
		e, t := flatMessage(body, pos)
		if e < 0 {
			return end, text
		}
		end, text = e, text+t
		if e+1 >= len(body) || body[e] != ',' {
			return end, text
		}
		pos = e + 1
		if body[pos] == ' ' {
			pos++
		}
		if pos >= len(body) || body[pos] != '{' {
			return end, text
		}
	}
}

// shortStringEnd is stringEnd for a string whose closing quote is among the
// eight bytes after its opening quote at body[pos], found with one word test,
// inlined; -1 otherwise (the caller then calls stringEnd).
func shortStringEnd(body []byte, pos int) int {
	if pos+9 > len(body) {
		return -1
	}
	m := quoteMask(load64(body, pos+1))
	if m == 0 {
		return -1
	}
	q := pos + 1 + bits.TrailingZeros64(m)>>3
	if body[q-1] == '\\' {
		return -1
	}
	return q + 1
}

// contentWord and textWord are the names "content" (with its closing quote)
// and "text" as load64 and load32 read them.
var (
	contentWord = le64([]byte(`content"`))
	textWord    = uint32(le64([]byte(`text    `)))
)

// nameIs reports whether the name token tok (quotes included) is "content"
// (when content) or "text". A name spelled with escapes is longer than its
// decoding, and is decoded (allocating) only then.
func nameIs(tok []byte, content bool) bool {
	want := "text"
	if content {
		want = "content"
	}
	raw := tok[1 : len(tok)-1]
	if len(raw) == len(want) {
		return string(raw) == want
	}
	if len(raw) < len(want) || indexByte(raw, '\\') < 0 {
		return false
	}
	s, err := jsonlite.Unquote(tok)
	return err == nil && s == want
}

// spaceByte marks JSON's white space.
var spaceByte = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

func literalAt(body []byte, pos int, text string) (int, error) {
	if len(body)-pos < len(text) || string(body[pos:pos+len(text)]) != text {
		return 0, &jsonlite.SyntaxError{Offset: pos, Msg: "unknown literal"}
	}
	return pos + len(text), nil
}

// endInside is the error of a body that ends inside a container, worded as
// jsonlite's iterators word it.
func endInside(pos int, inObject bool) error {
	if inObject {
		return &jsonlite.SyntaxError{Offset: pos, Msg: "unexpected end of input in object"}
	}
	return &jsonlite.SyntaxError{Offset: pos, Msg: "unexpected end of input in array"}
}
