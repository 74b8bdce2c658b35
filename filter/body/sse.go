package body

import (
	"bytes"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// bom is the UTF-8 byte order mark, which the SSE standard drops from the start
// of a stream.
const bom = "\xef\xbb\xbf"

// DefaultMaxEvent is the data size above which SSEScanner skips an event.
const DefaultMaxEvent = 1 << 20

// SSEScanner reads a streamed chat completion (text/event-stream) as it passes
// through, for its usage, its model and the arrival of its first content.
//
// It follows the SSE parsing rules of the HTML standard: a leading byte order
// mark is dropped; lines end with CRLF, LF or CR; a line "field:value" loses one
// space after the colon; a line without a colon is a field with an empty value;
// lines starting with ':' are comments; the values of an event's "data" lines
// are joined with "\n"; a blank line ends the event, and an event without data
// lines is not dispatched. Other fields (event, id, retry) are ignored. The data
// "[DONE]" marks the end of the stream; events after it are ignored. Other data
// is read as a chat completion chunk, in one pass that validates it (an invalid
// one counts in Malformed and changes nothing): the last usage object and the
// last model win, as with encoding/json; an event carries content when a choice
// has a delta with non-empty content, refusal or reasoning_content, with
// tool_calls or a function_call, or a non-empty "text" (the completions API).
//
// Content is known when its event ends, so FirstContent turns true in the Feed
// that completes the first event with content.
//
// Only the data of the current event is kept, up to MaxEvent bytes; a larger
// event is skipped (counted by Skipped) and its data dropped as it arrives.
//
// The zero SSEScanner is ready; set MaxEvent before the first Feed. Calls must
// not be concurrent.
type SSEScanner struct {
	// MaxEvent bounds the data kept for one event; 0 means DefaultMaxEvent.
	MaxEvent int

	bom int // bytes of a leading U+FEFF matched; -1 once past the start

	// Current line.
	field     [4]byte // the field name, while it fits
	fieldLen  int     // bytes of the field name seen, even past len(field)
	inValue   bool    // past the colon
	skipSP    bool    // the next byte is the optional space after the colon
	dataLine  bool    // the line is a data line
	afterCR   bool    // the previous line ended with CR: drop one LF
	lineBytes bool    // the line is not empty

	// Current event.
	data     []byte
	hasData  bool
	overflow bool

	usage    Usage
	sawUsage bool
	model    modelStore
	content  bool
	reported bool
	done     bool
	events   int
	skipped  int
	bad      int
}

// Reset makes s a zero scanner that keeps its buffer, for reuse.
func (s *SSEScanner) Reset() {
	*s = SSEScanner{data: s.data[:0], model: s.model.reset()}
}

// Feed scans the next chunk of the body. The scanner does not keep chunk.
func (s *SSEScanner) Feed(chunk []byte) {
	for i := 0; i < len(chunk); i++ {
		c := chunk[i]
		if s.bom >= 0 {
			if c == bom[s.bom] {
				if s.bom++; s.bom == len(bom) {
					s.bom = -1
				}
				continue
			}
			if s.bom > 0 {
				// The stream started with part of a BOM: that is the start of
				// a field name that cannot be "data".
				s.field[0], s.fieldLen, s.lineBytes = bom[0], s.bom, true
			}
			s.bom = -1
		}
		if s.afterCR {
			s.afterCR = false
			if c == '\n' {
				continue
			}
		}
		if c == '\n' || c == '\r' {
			s.endLine()
			s.afterCR = c == '\r'
			continue
		}
		s.lineBytes = true
		if !s.inValue {
			if c == ':' {
				s.inValue, s.skipSP = true, true
				s.dataLine = s.isDataField()
				if s.dataLine {
					s.startData()
				}
				continue
			}
			if s.fieldLen < len(s.field) {
				s.field[s.fieldLen] = c
			}
			s.fieldLen++
			continue
		}
		if s.skipSP {
			s.skipSP = false
			if c == ' ' {
				continue
			}
		}
		// The rest of the value, up to the end of the line or of the chunk.
		j := lineEnd(chunk[i:])
		if s.dataLine {
			s.appendData(chunk[i : i+j])
		}
		i += j - 1
	}
}

// lineEnd returns the index of the first CR or LF in b, or len(b).
func lineEnd(b []byte) int {
	if j := bytes.IndexByte(b, '\n'); j >= 0 {
		b = b[:j]
	}
	if j := bytes.IndexByte(b, '\r'); j >= 0 {
		return j
	}
	return len(b)
}

// Finish ends the stream: an event that was not ended by a blank line is
// dispatched as if it had been. (The SSE standard drops such an event; some
// upstreams close the stream right after their last data line.) Call it once,
// after the last Feed.
func (s *SSEScanner) Finish() {
	if s.lineBytes {
		s.endLine()
	}
	s.dispatch()
}

func (s *SSEScanner) isDataField() bool {
	return s.fieldLen == 4 && string(s.field[:]) == "data"
}

func (s *SSEScanner) endLine() {
	if !s.lineBytes {
		s.dispatch()
		return
	}
	if !s.inValue && s.isDataField() {
		s.startData() // "data" without a colon: an empty data line
	}
	s.fieldLen, s.inValue, s.skipSP, s.dataLine, s.lineBytes = 0, false, false, false, false
}

func (s *SSEScanner) startData() {
	if s.hasData {
		s.appendData([]byte{'\n'})
	}
	s.hasData = true
}

func (s *SSEScanner) maxEvent() int {
	if s.MaxEvent > 0 {
		return s.MaxEvent
	}
	return DefaultMaxEvent
}

func (s *SSEScanner) appendData(b []byte) {
	if s.overflow {
		return
	}
	if len(s.data)+len(b) > s.maxEvent() {
		s.overflow = true
		s.data = s.data[:0]
		return
	}
	s.data = append(s.data, b...)
}

func (s *SSEScanner) dispatch() {
	if !s.hasData {
		return
	}
	switch {
	case s.done:
	case s.overflow:
		s.skipped++
	default:
		s.events++
		s.event(s.data)
	}
	s.data, s.hasData, s.overflow = s.data[:0], false, false
}

// event reads one event's data.
func (s *SSEScanner) event(data []byte) {
	data = bytes.TrimSpace(data)
	switch string(data) {
	case "[DONE]":
		s.done = true
		return
	case "":
		return
	}
	var (
		usage    Usage
		hasUsage bool
		model    Span
		content  bool
	)
	// One pass validates the event and reads it; nothing is kept unless the
	// whole event is valid.
	m := jsonlite.ObjectMembers(data, 0)
	for m.NextName() {
		name := m.Name()
		if m.NameEscaped() {
			u, err := jsonlite.Unquote(data[m.NameStart:m.NameEnd])
			if err != nil {
				s.bad++
				return
			}
			name = []byte(u)
		}
		v := m.ValueStart
		var end int
		var err error
		// Whether a choice carries output matters until one did.
		if !s.content && data[v] == '[' && string(name) == "choices" {
			var c bool
			end, c, err = choices(data, v)
			content = content || c
		} else {
			end, err = jsonlite.SkipValue(data, v)
		}
		if err != nil {
			s.bad++
			return
		}
		m.ValueDone(end)
		switch string(name) {
		case "usage":
			if u, ok := parseUsage(m.Value()); ok {
				usage, hasUsage = u, true
			}
		case "model":
			model = Span{v, end}
		}
	}
	if m.Err() != nil || jsonlite.SkipSpace(data, m.End()) != len(data) {
		s.bad++
		return
	}
	if hasUsage {
		s.usage, s.sawUsage = usage, true
	}
	if model.Len() > 0 {
		s.model.setToken(data[model.Start:model.End])
	}
	s.content = s.content || content
}

// choices steps over the choices array at data[start] and reports whether a
// choice carries output: a delta with non-empty content, refusal or
// reasoning_content, with tool_calls or a function_call, or a non-empty "text"
// (the completions API).
func choices(data []byte, start int) (end int, content bool, err error) {
	e := jsonlite.ArrayElements(data, start)
	for e.NextStart() {
		v := e.ValueStart
		if data[v] != '{' {
			if end, err = jsonlite.SkipValue(data, v); err != nil {
				return 0, false, err
			}
			e.ValueDone(end)
			continue
		}
		c := jsonlite.ObjectMembers(data, v)
		for c.NextName() {
			cv := c.ValueStart
			var has bool
			switch {
			case data[cv] == '{' && c.NameIs("delta"):
				end, has, err = delta(data, cv)
			case data[cv] == '"' && c.NameIs("text"):
				end, _, err = jsonlite.ScanString(data, cv)
				has = end-cv > 2
			default:
				end, err = jsonlite.SkipValue(data, cv)
			}
			if err != nil {
				return 0, false, err
			}
			content = content || has
			c.ValueDone(end)
		}
		if err := c.Err(); err != nil {
			return 0, false, err
		}
		e.ValueDone(c.End())
	}
	return e.End(), content, e.Err()
}

// delta steps over the delta object at data[start] and reports whether it
// carries output.
func delta(data []byte, start int) (end int, content bool, err error) {
	d := jsonlite.ObjectMembers(data, start)
	for d.NextName() {
		v := d.ValueStart
		if end, err = jsonlite.SkipValue(data, v); err != nil {
			return 0, false, err
		}
		d.ValueDone(end)
		switch data[v] {
		case '"':
			if end-v > 2 && (d.NameIs("content") || d.NameIs("refusal") || d.NameIs("reasoning_content")) {
				content = true
			}
		case '[':
			if data[jsonlite.SkipSpace(data, v+1)] != ']' && d.NameIs("tool_calls") {
				content = true
			}
		case '{':
			if d.NameIs("function_call") {
				content = true
			}
		}
	}
	return d.End(), content, d.Err()
}

// Usage returns the last usage the stream reported; see SawUsage.
func (s *SSEScanner) Usage() Usage { return s.usage }

// SawUsage reports whether an event carried a usage object.
func (s *SSEScanner) SawUsage() bool { return s.sawUsage }

// Model returns the last model an event named, or "".
func (s *SSEScanner) Model() string { return s.model.get() }

// FirstContent reports true once: on the first call after an event carried
// content. Call it after each Feed to stamp the time to first token.
func (s *SSEScanner) FirstContent() bool {
	if s.content && !s.reported {
		s.reported = true
		return true
	}
	return false
}

// SawContent reports whether any event carried content.
func (s *SSEScanner) SawContent() bool { return s.content }

// Done reports whether the stream sent its "[DONE]" event.
func (s *SSEScanner) Done() bool { return s.done }

// Events counts the events read, the "[DONE]" event included.
func (s *SSEScanner) Events() int { return s.events }

// Skipped counts the events dropped for being larger than MaxEvent.
func (s *SSEScanner) Skipped() int { return s.skipped }

// Malformed counts the events whose data was neither "[DONE]" nor a JSON object.
func (s *SSEScanner) Malformed() int { return s.bad }
