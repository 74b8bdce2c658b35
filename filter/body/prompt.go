package body

import "github.com/shepherd-mesh/shepherd/filter/jsonlite"

// Roles of the containers promptText walks through.
const (
	roleOther   uint8 = iota // nothing inside counts
	roleList                 // the messages (or input) array
	roleMessage              // an object element of the list
	roleParts                // a message's "content" array
	rolePart                 // an object element of the parts
)

// promptText validates the array at body[start] (a "messages" array, or an
// "input" array when countStrings) and returns the offset just past it and
// the bytes of message text in it: every "content" string of an object
// element, every "text" string of an object element of a "content" array,
// and with countStrings every string element.
//
// It is one flat loop over the tokens, as jsonlite.SkipValue is, accepting
// and rejecting exactly what SkipValue does: no call or iterator per message,
// so a message costs what its bytes cost, and strings are stepped over eight
// bytes at a time by jsonlite.ScanString.
func promptText(body []byte, start int, countStrings bool) (end int, text int64, err error) {
	// roles[d] is the role of the container at depth d (1-based); containers
	// deeper than the parts' objects are roleOther, and so is all they hold.
	var roles [6]uint8
	var stack uint64 // one bit per open container: 1 for an object
	depth := 0
	pos := start
	// counting is set while the value about to be read is one that counts
	// when it is a string; parts when it is a content array.
	counting, parts := false, false
	for {
		if pos >= len(body) {
			return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "unexpected end of input"}
		}
		switch c := body[pos]; {
		case c == '{' || c == '[':
			if depth >= jsonlite.MaxDepth {
				return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: jsonlite.ErrTooDeep.Error()}
			}
			parent, role := roleOther, roleOther
			if depth < len(roles) {
				parent = roles[depth]
			}
			switch {
			case depth == 0:
				role = roleList
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
			pos = jsonlite.SkipSpace(body, pos+1)
			if pos >= len(body) {
				return 0, 0, endInside(pos, c == '{')
			}
			if pos < len(body) && (body[pos] == '}' && c == '{' || body[pos] == ']' && c == '[') {
				pos++
				depth--
				stack >>= 1
				break
			}
			if c == '{' {
				if pos, counting, parts, err = promptMember(body, pos, role); err != nil {
					return 0, 0, err
				}
			} else {
				counting = countStrings && role == roleList
			}
			continue
		case c == '"':
			// Plain text to the closing quote is stepped over here, without a
			// call (calls are dear in a VM); anything else (an escape, a
			// control character, UTF-8 to validate) goes to ScanString.
			e := pos + 1
			for e+8 <= len(body) && plainWord(load64(body, e)) {
				e += 8
			}
			for e < len(body) && plainByte[body[e]] {
				e++
			}
			if e < len(body) && body[e] == '"' {
				e++
			} else if e, _, err = jsonlite.ScanString(body, pos); err != nil {
				return 0, 0, err
			}
			if counting {
				text += int64(e - pos - 2)
			}
			pos = e
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
			pos = jsonlite.SkipSpace(body, pos)
			inObject := stack&1 == 1
			if pos >= len(body) {
				return 0, 0, endInside(pos, inObject)
			}
			c := body[pos]
			if c == ',' {
				pos = jsonlite.SkipSpace(body, pos+1)
				role := roleOther
				if depth < len(roles) {
					role = roles[depth]
				}
				if inObject {
					if pos, counting, parts, err = promptMember(body, pos, role); err != nil {
						return 0, 0, err
					}
				} else {
					counting, parts = countStrings && role == roleList, false
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
				return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "expected ',' or '}' in object"}
			}
			return 0, 0, &jsonlite.SyntaxError{Offset: pos, Msg: "expected ',' or ']' in array"}
		}
	}
}

// promptMember reads `"name" :` at body[pos] in an object of role and returns
// the offset of the value, whether a string value there counts, and whether
// an array value there holds content parts.
func promptMember(body []byte, pos int, role uint8) (int, bool, bool, error) {
	if pos >= len(body) || body[pos] != '"' {
		return 0, false, false, &jsonlite.SyntaxError{Offset: pos, Msg: "expected a member name"}
	}
	end := pos + 1 // names are short: a byte at a time, in place
	for end < len(body) && plainByte[body[end]] {
		end++
	}
	escaped := false
	if end < len(body) && body[end] == '"' {
		end++
	} else {
		var err error
		if end, escaped, err = jsonlite.ScanString(body, pos); err != nil {
			return 0, false, false, err
		}
	}
	counting, parts := false, false
	if role == roleMessage || role == rolePart {
		want := "content"
		if role == rolePart {
			want = "text"
		}
		is := end-pos-2 == len(want) && string(body[pos+1:end-1]) == want
		if !is && escaped {
			s, err := jsonlite.Unquote(body[pos:end])
			is = err == nil && s == want
		}
		counting, parts = is, is && role == roleMessage
	}
	pos = jsonlite.SkipSpace(body, end)
	if pos >= len(body) || body[pos] != ':' {
		return 0, false, false, &jsonlite.SyntaxError{Offset: pos, Msg: "expected ':' after member name"}
	}
	return jsonlite.SkipSpace(body, pos+1), counting, parts, nil
}

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

// plainByte marks the bytes that stand for themselves in a JSON string:
// ASCII from 0x20 but '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
