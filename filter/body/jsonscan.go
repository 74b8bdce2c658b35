package body

import (
	"bytes"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// DefaultMaxCapture is the size above which JSONUsageScanner ignores a usage or
// model value.
const DefaultMaxCapture = 64 << 10

// Top-level members JSONUsageScanner keeps.
const (
	targetNone uint8 = iota
	targetUsage
	targetModel
)

// JSONUsageScanner reads a non-streamed JSON response as it passes through, for
// its top-level "usage" object and "model" string.
//
// It tracks the nesting of the document byte by byte (strings and escapes
// included) and keeps only the bytes of the value of a top-level "usage" or
// "model" member, up to MaxCapture bytes each; everything else is looked at once
// and forgotten. Member names are compared decoded, as InspectRequest does, and
// the last usage and model win. A captured value is validated when it ends; an
// invalid one is ignored. The scanner stops reading when the top-level value
// ends or is not an object. It does not validate the rest of the document: it
// reports what a valid response says, and never fails on an invalid one.
//
// The zero JSONUsageScanner is ready; set MaxCapture before the first Feed.
// Calls must not be concurrent.
type JSONUsageScanner struct {
	// MaxCapture bounds the bytes kept for one value; 0 means DefaultMaxCapture.
	MaxCapture int

	depth     int
	stopped   bool
	inString  bool
	escape    bool
	expectKey bool // at depth 1, the next string is a member name
	inKey     bool
	scalar    bool // a number or literal at depth 1 is being read
	target    uint8
	capturing bool
	overflow  bool
	key       [40]byte // the member name token while it fits (any spelling of "usage" or "model" does)
	keyLen    int
	capture   []byte

	usage    Usage
	sawUsage bool
	model    modelStore
}

// Reset makes s a zero scanner that keeps its buffer, for reuse.
func (s *JSONUsageScanner) Reset() {
	*s = JSONUsageScanner{capture: s.capture[:0], model: s.model.reset()}
}

// Feed scans the next chunk of the body. The scanner does not keep chunk.
//
// Bytes to keep (a member name, a captured value) always form one token, so
// they are kept as spans: from the token's start (or the chunk's) to its end
// (or the chunk's), not byte by byte.
func (s *JSONUsageScanner) Feed(chunk []byte) {
	from := 0 // where the open token's bytes in this chunk start
	i := 0
	for ; i < len(chunk) && !s.stopped; i++ {
		if s.inString {
			if !s.escape {
				// Step over the plain part of the string at once.
				j := quoteOrBackslash(chunk[i:])
				if j < 0 {
					i = len(chunk)
					break
				}
				i += j
			}
			switch c := chunk[i]; {
			case s.escape:
				s.escape = false
			case c == '\\':
				s.escape = true
			case c == '"':
				s.inString = false
				if s.inKey || s.depth == 1 {
					s.keep(chunk[from : i+1])
				}
				s.endString()
			}
			continue
		}
		c := chunk[i]
		if s.scalar {
			switch c {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				s.scalar = false
				s.keep(chunk[from:i])
				s.endValue()
			default:
				continue
			}
		}
		switch c {
		case '{', '[':
			switch s.depth {
			case 0:
				if c != '{' {
					s.stopped = true
					continue
				}
				s.expectKey = true
			case 1:
				s.startValue()
				from = i
			}
			s.depth++
		case '}', ']':
			s.depth--
			switch s.depth {
			case 1:
				s.keep(chunk[from : i+1])
				s.endValue()
			case 0:
				s.stopped = true
			}
		case '"':
			switch {
			case s.depth == 0:
				s.stopped = true
				continue
			case s.depth == 1 && s.expectKey:
				s.inKey, s.expectKey, s.keyLen = true, false, 0
				s.target = targetNone
			case s.depth == 1:
				s.startValue()
			}
			if s.depth == 1 {
				from = i
			}
			s.inString = true
		case ',':
			if s.depth == 1 {
				s.expectKey = true
			}
		case ' ', '\t', '\n', '\r', ':':
		default:
			switch s.depth {
			case 0:
				s.stopped = true
				continue
			case 1:
				s.startValue()
				s.scalar = true
				from = i
			}
		}
	}
	// A token still open keeps what this chunk holds of it; the next chunk
	// continues it from its start.
	if s.inKey || s.capturing {
		s.keep(chunk[from:i])
	}
}

// quoteOrBackslash returns the index of the first '"' or '\\' in b, or -1.
func quoteOrBackslash(b []byte) int {
	q := bytes.IndexByte(b, '"')
	if q >= 0 {
		b = b[:q]
	}
	if j := bytes.IndexByte(b, '\\'); j >= 0 {
		return j
	}
	return q
}

// keep records bytes of the member name or of the captured value being read.
func (s *JSONUsageScanner) keep(b []byte) {
	switch {
	case s.inKey:
		if s.keyLen+len(b) <= len(s.key) {
			copy(s.key[s.keyLen:], b)
		}
		s.keyLen += len(b)
	case s.capturing && !s.overflow:
		if len(s.capture)+len(b) > s.maxCapture() {
			s.overflow = true
			return
		}
		s.capture = append(s.capture, b...)
	}
}

func (s *JSONUsageScanner) maxCapture() int {
	if s.MaxCapture > 0 {
		return s.MaxCapture
	}
	return DefaultMaxCapture
}

func (s *JSONUsageScanner) endString() {
	if s.inKey {
		s.inKey = false
		s.target = targetNone
		if s.keyLen > len(s.key) {
			return
		}
		tok := s.key[:s.keyLen]
		name := tok[1 : len(tok)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			u, err := jsonlite.Unquote(tok)
			if err != nil {
				return
			}
			name = []byte(u)
		}
		switch string(name) {
		case "usage":
			s.target = targetUsage
		case "model":
			s.target = targetModel
		}
		return
	}
	if s.depth == 1 {
		s.endValue()
	}
}

// startValue begins a value at depth 1.
func (s *JSONUsageScanner) startValue() {
	if s.target != targetNone {
		s.capturing, s.overflow = true, false
		if s.capture == nil {
			s.capture = make([]byte, 0, min(512, s.maxCapture())) // a usage object fits
		}
		s.capture = s.capture[:0]
	}
}

// endValue ends a value at depth 1.
func (s *JSONUsageScanner) endValue() {
	if !s.capturing {
		return
	}
	s.capturing = false
	if s.overflow {
		return
	}
	switch s.target {
	case targetUsage:
		if u, ok := parseUsage(s.capture); ok {
			s.usage, s.sawUsage = u, true
		}
	case targetModel:
		if end, err := jsonlite.SkipValue(s.capture, 0); err == nil && end == len(s.capture) {
			s.model.setToken(s.capture)
		}
	}
	s.target = targetNone
}

// Usage returns the response's usage; see SawUsage.
func (s *JSONUsageScanner) Usage() Usage { return s.usage }

// SawUsage reports whether the response had a valid top-level usage object.
func (s *JSONUsageScanner) SawUsage() bool { return s.sawUsage }

// Model returns the response's top-level model, or "".
func (s *JSONUsageScanner) Model() string { return s.model.get() }
