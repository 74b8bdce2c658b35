package body

import (
	"bytes"
	"math/bits"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// bom is the UTF-8 byte order mark, which the SSE standard drops from the start
// of a stream.
const bom = "\xef\xbb\xbf"

// DefaultMaxEvent is the data size above which SSEScanner skips an event: usage
// events are a few hundred bytes, and a VM's memory never shrinks once grown,
// so a stream may not make the scanner keep more than this.
const DefaultMaxEvent = 64 << 10

// tailWindow is how much of the end of a skipped event the scanner keeps: a
// usage object at the end of a large event (a Responses stream's
// response.completed carries the whole output before its usage) is still
// read.
const tailWindow = 4 << 10

// headWindow is how much of the start of a skipped event the scanner keeps,
// for its type.
const headWindow = 128

// StreamKind says which API's event stream an SSEScanner reads.
type StreamKind uint8

const (
	// StreamChat is a chat completions (or legacy completions) stream: chunk
	// objects, usage in a top-level "usage" member, "data: [DONE]" at the end.
	StreamChat StreamKind = iota
	// StreamResponses is a Responses API stream: typed events, usage in
	// response.usage of the response.completed, response.incomplete or
	// response.failed event.
	StreamResponses
)

// SSEScanner reads a streamed answer (text/event-stream) as it passes through,
// for its usage and the arrival of its first content, and with Strip removes
// the usage the filter asked for on the client's behalf.
//
// It follows the SSE parsing rules of the HTML standard: a leading byte order
// mark is dropped; lines end with CRLF, LF or CR; a line "field:value" loses one
// space after the colon; a line without a colon is a field with an empty value;
// lines starting with ':' are comments; the values of an event's "data" lines
// are joined with "\n"; a blank line ends the event, and an event without data
// lines is not dispatched. Other fields (event, id, retry) are ignored.
//
// A chat stream (StreamChat): the data "[DONE]" marks the end of the stream;
// events after it are ignored. Until an event carries content, every event is
// read in full in one pass that validates it (an invalid one counts in
// Malformed and changes nothing): an event carries content when a choice has a
// delta with non-empty content, refusal or reasoning_content, with tool_calls
// or a function_call, or a non-empty "text" (the completions API). After that,
// only events that can carry usage are read in full: those with a top-level
// "usage" member whose value is not null (found by a search for the member
// name, which cannot occur unescaped inside a JSON string). The last usage
// object wins, as with encoding/json.
//
// A Responses stream (StreamResponses): an event whose type ends in ".delta"
// carries content; the response.completed, response.incomplete and
// response.failed events are read in full for response.usage and
// response.model. The stream passes untouched.
//
// Content is known when its event ends, so FirstContent turns true in the Feed
// that completes the first event with content.
//
// Only the data of the current event is kept, up to MaxEvent bytes; a larger
// event is skipped (counted by Skipped) and passed on unread, except that its
// first headWindow and last tailWindow bytes are kept: a usage object that
// ends within the tail (for a Responses stream: of a response.completed,
// incomplete or failed event) is still read.
//
// Strip (chat streams only) removes usage from the stream as it passes, so
// that the client gets what the provider sends when include_usage is not
// asked: an event with a usage object and no choices (the usage chunk) is
// removed whole; a top-level "usage" member of any other event (null, or an
// object on a provider's last content chunk) is removed from it, with its
// comma. Events of more than one data line, and events larger than MaxHold
// (stripping holds no more of one event), pass unchanged. Every other byte passes as it came. See Edit.
//
// The zero SSEScanner is ready; set MaxEvent, Kind and Strip before the first
// Feed. Calls must not be concurrent.
type SSEScanner struct {
	// MaxEvent bounds the data kept for one event; 0 means DefaultMaxEvent.
	MaxEvent int
	// Kind is the API whose stream this is.
	Kind StreamKind
	// Strip removes usage from a chat stream; use Edit instead of Feed.
	Strip bool

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
	data      []byte
	inplace   []byte // the event's only data line, read in the chunk at hand
	dataLines int
	hasData   bool
	overflow  bool
	head      []byte // with overflow: the data's first headWindow bytes
	tail      []byte // with overflow: the data's last bytes, up to 2*tailWindow

	// Raw bytes of the current event while stripping (see Edit).
	raw      []byte  // the event's bytes held from earlier chunks
	rawData  int     // 1 + the offset in the event's bytes of its first data byte; 0 before
	passing  bool    // the event grew past the bound: its bytes pass as they come
	cut      cutPlan // what the event's reading decided
	out      []byte  // the edited chunk: own, or the chunk itself (inPlace)
	own      []byte  // the scanner's buffer for out, kept between calls
	inPlace  bool    // out is the chunk's own bytes, edited where they lie
	building bool    // out differs from the chunk
	dropLF   bool    // a dropped event ended with CR: its LF goes too
	segStart int     // start in the chunk being edited of the current event

	usage    Usage
	sawUsage bool
	model    modelStore
	content  bool
	reported bool
	done     bool
	events   int
	outputs  int
	skipped  int
	bad      int
}

// Reset makes s a zero scanner that keeps its buffers, for reuse.
func (s *SSEScanner) Reset() {
	*s = SSEScanner{data: s.data[:0], head: s.head[:0], tail: s.tail[:0], raw: s.raw[:0], own: s.own[:0],
		model: s.model.reset()}
}

// maxKept bounds the buffers a reused scanner keeps between streams.
const maxKept = 2 * DefaultMaxEvent

// Release drops buffers that grew past what a scanner keeps for reuse.
func (s *SSEScanner) Release() {
	if cap(s.data) > maxKept {
		s.data = nil
	}
	if cap(s.raw) > maxKept {
		s.raw = nil
	}
	if cap(s.own) > maxKept {
		s.own = nil
	}
}

// Feed scans the next chunk of the body. The scanner does not keep chunk.
// With Strip set, use Edit.
func (s *SSEScanner) Feed(chunk []byte) {
	s.feed(chunk, false)
}

// Edit scans the next chunk of the body like Feed and returns the bytes to
// send in its place: with Strip unset, or when nothing in it changes, chunk
// itself and false. Edit may rewrite chunk: an edit that only removes bytes
// of it is made where they lie (the result is then a prefix of chunk), so
// the caller must not need chunk's bytes afterwards. With Strip set, the bytes of an event are sent once the
// event is complete and known to be kept (at most MaxHold bytes, or MaxEvent
// when smaller, and a few more are held back; a larger event passes as it
// comes, unedited), so an event split over chunks leaves with the chunk that
// completes it. With last set (the
// end of the body) everything held is sent. The result is valid until the
// next call.
func (s *SSEScanner) Edit(chunk []byte, last bool) (out []byte, replaced bool) {
	if !s.Strip || s.Kind != StreamChat {
		s.Feed(chunk)
		if last {
			s.Finish()
		}
		return chunk, false
	}
	s.out, s.building, s.segStart = s.own[:0], len(s.raw) > 0 || last, 0
	s.feed(chunk, true)
	rest := chunk[s.segStart:]
	if last {
		s.raw = append(s.raw, rest...)
		s.finish(true)
		s.out = append(s.out, s.raw...)
		s.raw, s.passing = s.raw[:0], false
		return s.result(), true
	}
	switch {
	case s.passing:
		if s.building {
			s.put(chunk, s.segStart, len(chunk))
		}
	case len(s.raw)+len(rest) > s.maxHold():
		// The event is too large to hold back: it passes as it comes, unedited.
		if s.building {
			s.out = append(s.out, s.raw...)
			s.put(chunk, s.segStart, len(chunk))
		}
		s.raw, s.passing = s.raw[:0], true
	case len(rest) > 0:
		// The start of an event: held until it is complete.
		s.build(chunk)
		s.raw = append(s.raw, rest...)
	}
	if !s.building {
		return chunk, false
	}
	return s.result(), true
}

// result returns the edited chunk and keeps the scanner's own buffer for the
// next call.
func (s *SSEScanner) result() []byte {
	out := s.out
	if !s.inPlace {
		s.own = out[:0]
	}
	s.out, s.inPlace = nil, false
	return out
}

// build starts the edited output of chunk, when it differs from chunk for the
// first time at s.segStart: everything before was kept as it came. Nothing of
// an earlier chunk is held then (that makes the output differ from the start),
// so the output only ever drops bytes of chunk, and is built in chunk itself:
// every byte kept moves to an offset no greater than its own.
func (s *SSEScanner) build(chunk []byte) {
	if !s.building {
		s.building, s.inPlace = true, true
		s.out = chunk[:s.segStart:len(chunk)]
	}
}

// put appends chunk[a:b] to the output. In place, bytes already where they
// belong are only taken.
func (s *SSEScanner) put(chunk []byte, a, b int) {
	if s.inPlace && len(s.out) == a {
		s.out = s.out[:b]
		return
	}
	s.out = append(s.out, chunk[a:b]...)
}

func (s *SSEScanner) feed(chunk []byte, edit bool) {
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
				if s.dropLF && s.segStart == i {
					// The LF of the CRLF that ended a dropped event.
					s.segStart = i + 1
				}
				s.dropLF = false
				continue
			}
			s.dropLF = false
		}
		if c == '\n' || c == '\r' {
			if !s.lineBytes {
				s.dispatch()
				if edit {
					s.dropLF = s.cut.drop && c == '\r'
					s.emit(chunk, i+1)
				}
			} else {
				s.endLine()
			}
			s.afterCR = c == '\r'
			continue
		}
		if !s.lineBytes && !s.hasData && c == 'd' {
			if end := s.wholeEvent(chunk, i, edit); end > 0 {
				i = end - 1
				continue
			}
		}
		if !s.lineBytes && c == 'd' && len(chunk)-i >= 5 && string(chunk[i:i+5]) == "data:" {
			// The usual line start, in one step: the "data" field and its
			// colon; the optional space and the value follow as usual.
			s.lineBytes, s.inValue, s.skipSP, s.dataLine = true, true, true, true
			s.fieldLen = 4
			s.field = [4]byte{'d', 'a', 't', 'a'}
			s.startData()
			i += 4
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
			if edit && s.rawData == 0 {
				s.rawData = len(s.raw) + i - s.segStart + 1
			}
			if s.dataLines == 1 && len(s.data) == 0 && i+j < len(chunk) && !s.overflow && j <= s.maxEvent() {
				// A whole first data line in the chunk is read where it is,
				// unless the event goes on past the chunk.
				s.inplace = chunk[i : i+j]
			} else {
				s.appendData(chunk[i : i+j])
			}
		}
		i += j - 1
	}
	s.keepInplace()
}

// wholeEvent reads the event that starts at chunk[i], at the start of a line
// of an event without data so far, in one step when it is the usual one: a
// single data line with a value, ended by a blank line, all in the chunk
// ("data: value\n\n"). It has the effect of reading the event byte by byte
// and returns the offset past it, or 0 (and no effect) for any other shape.
//
// Past a chat stream's first content it also reads the usual event itself
// (see chatEvent): a JSON object with no "usage" member, or one that ends in
// "usage":null. Inside a VM every call and every comparison of strings
// through the runtime costs tens of nanoseconds, so this path makes none.
func (s *SSEScanner) wholeEvent(chunk []byte, i int, edit bool) int {
	v := i + 5
	if v+3 > len(chunk) || load32(chunk, i) != dataWord || chunk[i+4] != ':' {
		return 0
	}
	if chunk[v] == ' ' {
		v++
	}
	// The line's end, eight bytes a step (lineEnd, written out; the bytes
	// loop stops at once on the byte the word's test found).
	e := v
	for ; e+8 <= len(chunk); e += 8 {
		x := load64(chunk, e)
		if m := zeroBytes(x^('\n'*lo8)) | zeroBytes(x^('\r'*lo8)); m != 0 {
			if littleEndian {
				e += bits.TrailingZeros64(m) / 8
			}
			break
		}
	}
	for e < len(chunk) && chunk[e] != '\n' && chunk[e] != '\r' {
		e++
	}
	if e == v || e-v > s.maxEvent() || e+1 >= len(chunk) || chunk[e] != '\n' || chunk[e+1] != '\n' {
		return 0
	}
	if s.content && !s.done && s.Kind == StreamChat && (!edit || !s.passing && len(s.raw) == 0) {
		if k := s.plainChunk(chunk[v:e]); k != 0 {
			if !edit {
				return e + 2
			}
			if k < 0 && !s.building {
				// Nothing to cut and nothing cut before: the chunk's bytes
				// so far pass as they came (emit's effect).
				s.dropLF, s.rawData, s.segStart = false, 0, e+2
				return e + 2
			}
			if w := v + k - 1; k > 0 && s.Strip && chunk[w] == ',' && (!s.building || s.inPlace && len(s.out) == s.segStart) {
				// OpenAI's shape, cut as emit would with memberCut's range
				// (the comma to the closing brace): every byte before the
				// comma is still where it lies, and the event's last three
				// ("}\n\n") move back over the cut.
				s.building, s.inPlace = true, true
				s.out = chunk[: w+3 : len(chunk)]
				chunk[w], chunk[w+1], chunk[w+2] = '}', '\n', '\n'
				s.dropLF, s.rawData, s.segStart = false, 0, e+2
				return e + 2
			}
			if k > 0 && s.Strip {
				// "usage":null ends the object: cut with its comma.
				if a, b, ok := memberCut(chunk[v:e], k, e-v-1); ok {
					s.cut = cutPlan{start: a, end: b}
				}
			}
			s.rawData = v - s.segStart + 1
			s.dropLF = false
			s.emit(chunk, e+2)
			return e + 2
		}
	}
	// As the data line's bytes, its LF and the blank line would.
	s.hasData, s.dataLines, s.inplace = true, 1, chunk[v:e]
	if edit && s.rawData == 0 {
		s.rawData = len(s.raw) + v - s.segStart + 1
	}
	s.dispatch()
	if edit {
		s.dropLF = false
		s.emit(chunk, e+2)
	}
	return e + 2
}

// dataWord is the field name "data" as load32 reads it.
var dataWord = load32([]byte("data"), 0)

// plainChunk reads, past a chat stream's first content, an event's data in
// the shapes most events have, as dispatch would: a JSON object (no space
// around it) with no "usage" in it (returns -1), or ending in a top-level
// "usage":null (returns the offset of its name). Anything else returns 0 and
// is left to dispatch, which reads it again from the start.
func (s *SSEScanner) plainChunk(data []byte) int {
	n := len(data)
	if n < 2 || data[0] != '{' || data[n-1] != '}' {
		return 0
	}
	// nullUsageTail, without the runtime's string comparison.
	if k := n - 13; k >= 1 && load64(data, k) == usageNull[0] && load32(data, k+8) == uint32(usageNull[1]) && !escapedAt(data, k) {
		s.events++
		s.outputs++
		return k
	}
	// usageKey's search for the 'g' of "usage", eight bytes a step.
	for off := 4; off < n; {
		for ; off+8 <= n; off += 8 {
			if m := zeroBytes(load64(data, off) ^ ('g' * lo8)); m != 0 {
				if littleEndian {
					off += bits.TrailingZeros64(m) / 8
				}
				break
			}
		}
		for off < n && data[off] != 'g' {
			off++
		}
		if off == n {
			break
		}
		g := off
		if k := g - 4; k+7 <= n && load32(data, k) == usaWord && data[k+5] == 'e' && data[k+6] == '"' {
			return 0 // a "usage" string: dispatch reads the event
		}
		off = g + 1
	}
	s.events++
	s.outputs++
	return -1
}

// usageNull is `"usage":null` as load64 and load32 read it: its first eight
// bytes and the four after them.
var usageNull = [2]uint64{load64([]byte(`"usage":null`), 0), uint64(load32([]byte(`"usage":null`), 8))}

// usaWord is `"usa` as load32 reads it.
var usaWord = load32([]byte(`"usa`), 0)

// keepInplace copies a data line read in place to the event's buffer, before
// the chunk that holds it goes or another line joins it.
func (s *SSEScanner) keepInplace() {
	if s.inplace != nil {
		s.data = append(s.data[:0], s.inplace...)
		s.inplace = nil
	}
}

// emit ends the current event's raw bytes at chunk[:end] and sends them,
// edited as the event's reading decided.
func (s *SSEScanner) emit(chunk []byte, end int) {
	cut := s.cut
	s.cut = cutPlan{}
	rawData := s.rawData - 1
	s.rawData = 0
	if s.passing {
		if s.building {
			s.put(chunk, s.segStart, end)
		}
		s.segStart, s.passing = end, false
		return
	}
	held := len(s.raw) > 0
	evLen := end - s.segStart
	if held {
		s.raw = append(s.raw, chunk[s.segStart:end]...)
		evLen = len(s.raw)
	}
	cutOK := cut.end > cut.start && rawData >= 0 && rawData+cut.end <= evLen
	if cut.drop || cutOK {
		s.build(chunk)
	}
	switch {
	case !s.building:
	case cut.drop:
	case held && cutOK:
		s.out = append(s.out, s.raw[:rawData+cut.start]...)
		s.out = append(s.out, s.raw[rawData+cut.end:]...)
	case held:
		s.out = append(s.out, s.raw...)
	case cutOK:
		s.put(chunk, s.segStart, s.segStart+rawData+cut.start)
		s.put(chunk, s.segStart+rawData+cut.end, end)
	default:
		s.put(chunk, s.segStart, end)
	}
	s.raw, s.segStart = s.raw[:0], end
}

// Finish ends the stream: an event that was not ended by a blank line is
// dispatched as if it had been. (The SSE standard drops such an event; some
// upstreams close the stream right after their last data line.) Call it once,
// after the last Feed; Edit with last set calls it.
func (s *SSEScanner) Finish() { s.finish(false) }

func (s *SSEScanner) finish(edit bool) {
	if s.lineBytes {
		s.endLine()
	}
	s.dispatch()
	cut, rawData := s.cut, s.rawData-1
	s.cut, s.rawData = cutPlan{}, 0
	if edit && !s.passing {
		switch {
		case cut.drop:
			s.raw = s.raw[:0]
		case cut.end > cut.start && rawData >= 0 && rawData+cut.end <= len(s.raw):
			s.raw = append(s.raw[:rawData+cut.start], s.raw[rawData+cut.end:]...)
		}
	}
}

func (s *SSEScanner) isDataField() bool {
	return s.fieldLen == 4 && string(s.field[:]) == "data"
}

func (s *SSEScanner) endLine() {
	if !s.inValue && s.isDataField() {
		s.startData() // "data" without a colon: an empty data line
	}
	s.fieldLen, s.inValue, s.skipSP, s.dataLine, s.lineBytes = 0, false, false, false, false
}

func (s *SSEScanner) startData() {
	s.keepInplace()
	if s.hasData {
		s.appendData([]byte{'\n'})
	}
	s.hasData = true
	s.dataLines++
}

// MaxHold bounds the bytes of an incomplete event Edit holds back while
// stripping: usage chunks are a few hundred bytes, and every stream that
// strips may hold this much at once.
const MaxHold = 16 << 10

func (s *SSEScanner) maxHold() int { return min(s.maxEvent(), MaxHold) + headWindow }

func (s *SSEScanner) maxEvent() int {
	if s.MaxEvent > 0 {
		return s.MaxEvent
	}
	return DefaultMaxEvent
}

func (s *SSEScanner) appendData(b []byte) {
	if s.overflow {
		s.keepTail(b)
		return
	}
	if len(s.data)+len(b) > s.maxEvent() {
		s.overflow = true
		s.head = append(s.head[:0], s.data[:min(len(s.data), headWindow)]...)
		if len(s.head) < headWindow {
			s.head = append(s.head, b[:min(len(b), headWindow-len(s.head))]...)
		}
		s.tail = append(s.tail[:0], s.data[max(0, len(s.data)-tailWindow):]...)
		s.data = s.data[:0]
		s.keepTail(b)
		return
	}
	s.data = append(s.data, b...)
}

// keepTail appends b to the tail window, keeping its last tailWindow bytes
// once it holds twice that.
func (s *SSEScanner) keepTail(b []byte) {
	if len(b) >= tailWindow {
		s.tail = append(s.tail[:0], b[len(b)-tailWindow:]...)
		return
	}
	if len(s.tail)+len(b) > 2*tailWindow {
		n := copy(s.tail, s.tail[len(s.tail)-tailWindow:])
		s.tail = s.tail[:n]
	}
	s.tail = append(s.tail, b...)
}

func (s *SSEScanner) dispatch() {
	if !s.hasData {
		return
	}
	switch {
	case s.done:
	case s.overflow:
		s.skipped++
		s.skippedEvent()
	default:
		data := s.data
		if s.inplace != nil {
			data = s.inplace
		}
		s.events++
		if s.Kind == StreamResponses {
			s.responsesEvent(data)
		} else {
			s.chatEvent(data)
		}
	}
	s.data, s.inplace, s.hasData, s.overflow, s.dataLines = s.data[:0], nil, false, false, 0
	s.head, s.tail = s.head[:0], s.tail[:0]
}

// cutPlan is what Strip does to the event just read: drop it, or remove
// data[start:end] from it.
type cutPlan struct {
	drop       bool
	start, end int
}

// chatEvent reads one chat completion chunk.
func (s *SSEScanner) chatEvent(data []byte) {
	lead := 0
	for lead < len(data) && isSpace(data[lead]) {
		lead++
	}
	data = data[lead:]
	for len(data) > 0 && isSpace(data[len(data)-1]) {
		data = data[:len(data)-1]
	}
	switch string(data) {
	case "[DONE]":
		s.done = true
		return
	case "":
		return
	}
	s.outputs++
	if s.content {
		// Past the first content only usage matters: a top-level "usage"
		// member that is not null is read in full, a null one is cut.
		if k := nullUsageTail(data); k >= 0 {
			// OpenAI's shape with include_usage: every chunk ends with
			// "usage":null, found with one backwards check.
			if s.Strip && s.dataLines == 1 {
				if a, b, ok := memberCut(data, k, len(data)-1); ok {
					s.cut = cutPlan{start: lead + a, end: lead + b}
				}
			}
			return
		}
		k := usageKey(data)
		if k < 0 {
			return
		}
		v := jsonlite.SkipSpace(data, k+len(`"usage"`))
		if v >= len(data) || data[v] != ':' {
			return
		}
		v = jsonlite.SkipSpace(data, v+1)
		if v+4 <= len(data) && string(data[v:v+4]) == "null" {
			if s.Strip && s.dataLines == 1 && topLevel(data, k, v+4) {
				if a, b, ok := memberCut(data, k, v+4); ok {
					s.cut = cutPlan{start: lead + a, end: lead + b}
				}
			}
			return
		}
	}
	s.readChunk(data, lead)
}

// readChunk reads a chat chunk in full, validating it.
func (s *SSEScanner) readChunk(data []byte, lead int) {
	var (
		usage        Usage
		hasUsage     bool
		usageMember  Span // from the member's name to its value's end
		model        Span
		content      bool
		choicesEmpty = true
		prevEnd      = -1 // the end of the previous member's value
		usagePrev    = -1
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
		isChoices := data[v] == '[' && string(name) == "choices"
		// Whether a choice carries output matters until one did.
		if !s.content && isChoices {
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
		if isChoices {
			choicesEmpty = data[jsonlite.SkipSpace(data, v+1)] == ']'
		}
		switch string(name) {
		case "usage":
			usageMember, usagePrev = Span{m.NameStart, end}, prevEnd
			if u, ok := parseUsage(m.Value()); ok {
				usage, hasUsage = u, true
			}
		case "model":
			model = Span{v, end}
		}
		prevEnd = end
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
	if !s.Strip || usageMember.Len() == 0 {
		return
	}
	switch {
	case hasUsage && choicesEmpty:
		s.cut = cutPlan{drop: true} // the usage chunk
	case s.dataLines == 1:
		// A member of the object: cut it with the comma before it, or,
		// for the first member, with the comma after it.
		a, b := usageMember.Start, usageMember.End
		if usagePrev >= 0 {
			a = usagePrev
		} else if n := jsonlite.SkipSpace(data, b); n < len(data) && data[n] == ',' {
			b = jsonlite.SkipSpace(data, n+1)
		}
		s.cut = cutPlan{start: lead + a, end: lead + b}
	}
}

// usageKey returns the offset of the first `"usage"` in data that is a string
// token of its own (its quote is not escaped), or -1. In valid JSON such a
// string followed by ':' is a member name. The search jumps from 'g' to 'g'
// (IndexByte is the one search that is fast inside a VM; '"' would stop it
// at every string of the chunk).
func usageKey(data []byte) int {
	const key = `"usage"`
	const at = 4 // the 'g' of key
	off := at
	for off < len(data) {
		n := indexByte(data[off:], 'g')
		if n < 0 {
			return -1
		}
		g := off + n
		if k := g - at; k+len(key) <= len(data) && string(data[k:k+len(key)]) == key && !escapedAt(data, k) {
			return k
		}
		off = g + 1
	}
	return -1
}

// nullUsageTail returns the offset of the `"usage"` of a top-level
// `"usage":null` member that ends the object data (trimmed), or -1. The
// member's quote is unescaped, so in JSON it opens the member's name, and the
// object's last '}' closes the top-level object; like topLevel it trusts data
// to be JSON.
func nullUsageTail(data []byte) int {
	const tail = `"usage":null}`
	k := len(data) - len(tail)
	if k < 1 || data[0] != '{' || string(data[k:]) != tail || escapedAt(data, k) {
		return -1
	}
	return k
}

// escapedAt reports whether the quote at data[k] is escaped: preceded by an
// odd number of backslashes.
func escapedAt(data []byte, k int) bool {
	n := 0
	for k-n-1 >= 0 && data[k-n-1] == '\\' {
		n++
	}
	return n%2 == 1
}

// topLevel reports whether the member named at data[k], whose value ends at
// end, is a member of the top-level object: at once when that object closes
// right after it (where OpenAI puts usage), otherwise by depthAt. It trusts
// data, trimmed, to be JSON, as depthAt does.
func topLevel(data []byte, k, end int) bool {
	if n := jsonlite.SkipSpace(data, end); n == len(data)-1 && data[n] == '}' && data[0] == '{' {
		return true
	}
	return depthAt(data, k) == 1
}

// depthAt returns how deep in objects and arrays data[k] is (1: a member of
// the top-level object), stepping over strings by their quotes. It trusts data
// to be JSON; on anything else the answer is meaningless but bounded.
func depthAt(data []byte, k int) int {
	depth := 0
	for i := 0; i < k; i++ {
		switch data[i] {
		case '"':
			j := i + 1
			for {
				n := bytes.IndexByte(data[j:], '"')
				if n < 0 {
					return -1
				}
				j += n
				if !escapedAt(data, j) {
					break
				}
				j++
			}
			i = j
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
	}
	return depth
}

// memberCut returns the range to remove the member data[k:end] of an object
// with: from the comma before it, or for a first member up to the next
// member's name.
func memberCut(data []byte, k, end int) (a, b int, ok bool) {
	p := k - 1
	for p >= 0 && isSpace(data[p]) {
		p--
	}
	if p < 0 {
		return 0, 0, false
	}
	switch data[p] {
	case ',':
		return p, end, true
	case '{':
		n := jsonlite.SkipSpace(data, end)
		if n < len(data) && data[n] == ',' {
			return k, jsonlite.SkipSpace(data, n+1), true
		}
		return k, end, true
	}
	return 0, 0, false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// responsesEvent reads one event of a Responses stream.
func (s *SSEScanner) responsesEvent(data []byte) {
	typ := eventType(data)
	if len(typ) == 0 {
		return
	}
	if bytes.HasSuffix(typ, []byte(".delta")) {
		s.outputs++
		s.content = true
		return
	}
	if !isFinalResponse(typ) {
		return
	}
	// The final event: response.usage and response.model, validated.
	m := jsonlite.ObjectMembers(data, jsonlite.SkipSpace(data, 0))
	var resp Span
	for m.Next() {
		if m.NameIs("response") && data[m.ValueStart] == '{' {
			resp = Span{m.ValueStart, m.ValueEnd}
		}
	}
	if m.Err() != nil || jsonlite.SkipSpace(data, m.End()) != len(data) {
		s.bad++
		return
	}
	if resp.Len() == 0 {
		return
	}
	r := jsonlite.ObjectMembers(data, resp.Start)
	for r.Next() {
		switch {
		case r.NameIs("usage"):
			if u, ok := parseUsage(r.Value()); ok {
				s.usage, s.sawUsage = u, true
			}
		case r.NameIs("model"):
			s.model.setToken(r.Value())
		}
	}
}

// isFinalResponse reports whether a Responses event type is one of the events
// that end a stream with the response's usage.
func isFinalResponse(typ []byte) bool {
	switch string(typ) {
	case "response.completed", "response.incomplete", "response.failed":
		return true
	}
	return false
}

// eventType returns the value of a Responses event's top-level "type" member
// (as written, without quotes), or nil. Events start with it; when one does
// not, the members are read to find it.
func eventType(data []byte) []byte {
	const lead = `{"type":"`
	if bytes.HasPrefix(data, []byte(lead)) {
		rest := data[len(lead):]
		if n := bytes.IndexByte(rest, '"'); n >= 0 && bytes.IndexByte(rest[:n], '\\') < 0 {
			return rest[:n]
		}
	}
	m := jsonlite.ObjectMembers(data, jsonlite.SkipSpace(data, 0))
	for m.Next() {
		if m.NameIs("type") {
			v := m.Value()
			if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0 {
				return v[1 : len(v)-1]
			}
			return nil
		}
	}
	return nil
}

// skippedEvent reads what it can of an event too large to keep: a usage
// object that ends within its tail (for a Responses stream, only of a final
// event).
func (s *SSEScanner) skippedEvent() {
	if s.Kind == StreamResponses {
		if !isFinalResponse(eventType(s.head)) && !isFinalPrefix(s.head) {
			return
		}
	}
	t := s.tail
	k := bytes.LastIndex(t, []byte(`"usage"`))
	for k >= 0 {
		v := jsonlite.SkipSpace(t, k+len(`"usage"`))
		if v < len(t) && t[v] == ':' {
			v = jsonlite.SkipSpace(t, v+1)
			if v < len(t) && t[v] == '{' {
				if end, err := jsonlite.SkipValue(t, v); err == nil {
					if u, ok := parseUsage(t[v:end]); ok {
						s.usage, s.sawUsage = u, true
					}
				}
			}
			return
		}
		k = bytes.LastIndex(t[:k], []byte(`"usage"`))
	}
}

// isFinalPrefix reports whether head starts a final Responses event whose
// type member eventType could not read (head is cut short).
func isFinalPrefix(head []byte) bool {
	for _, p := range []string{`{"type":"response.completed"`, `{"type":"response.incomplete"`, `{"type":"response.failed"`} {
		if bytes.HasPrefix(head, []byte(p)) {
			return true
		}
	}
	return false
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

// Model returns the last model an event read in full named, or "".
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

// Outputs counts the events that stand for output: a chat stream's chunks
// (each about a token), a Responses stream's delta events. It is the output
// estimate when a stream reports no usage.
func (s *SSEScanner) Outputs() int { return s.outputs }

// Skipped counts the events passed on unread for being larger than MaxEvent.
func (s *SSEScanner) Skipped() int { return s.skipped }

// Malformed counts the events read in full whose data was neither "[DONE]" nor
// a JSON object.
func (s *SSEScanner) Malformed() int { return s.bad }
