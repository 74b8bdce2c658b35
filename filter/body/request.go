package body

import (
	"bytes"
	"errors"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// Errors InspectRequest returns, to be tested with errors.Is. The returned error
// wraps one of them and says where the body went wrong.
var (
	// ErrInvalidJSON: the body is not one valid JSON document. The error also
	// wraps the *jsonlite.SyntaxError with the offset.
	ErrInvalidJSON = errors.New("body is not valid json")
	// ErrNotObject: the body is valid JSON but not an object.
	ErrNotObject = errors.New("body is not a json object")
	// ErrModelType: a top-level "model" member is not a string.
	ErrModelType = errors.New("model must be a string")
	// ErrFieldType: another member read by InspectRequest has the wrong type;
	// the *FieldError names it.
	ErrFieldType = errors.New("member has the wrong type")
)

// FieldError reports a top-level member whose value has the wrong type.
type FieldError struct {
	Field string // member name, dotted for nested ones ("stream_options.include_usage")
	Want  string // what the value must be ("a boolean")
	Err   error  // ErrModelType or ErrFieldType
}

// Error says what is wrong without saying where: the caller names the body.
func (e *FieldError) Error() string {
	return e.Field + " must be " + e.Want
}

func (e *FieldError) Unwrap() error { return e.Err }

// syntaxError is the ErrInvalidJSON error; it unwraps to the jsonlite error.
type syntaxError struct{ err error }

func (e *syntaxError) Error() string        { return e.err.Error() }
func (e *syntaxError) Is(target error) bool { return target == ErrInvalidJSON }
func (e *syntaxError) Unwrap() error        { return e.err }
func invalid(err error) error               { return &syntaxError{err: err} }
func fieldErr(field, want string, err error) error {
	return &FieldError{Field: field, Want: want, Err: err}
}

// Span is a byte range [Start, End) of a body: the token of one value.
type Span struct{ Start, End int }

// Len returns the length of the span; 0 for the zero Span.
func (s Span) Len() int { return s.End - s.Start }

// Request is what InspectRequest read from a chat completions request body. Its
// offsets refer to the inspected body; after an edit, inspect the new body again.
type Request struct {
	// Open and Close are the offsets of the top-level object's '{' and '}'.
	Open, Close int
	// Members counts the top-level members, duplicates included.
	Members int

	// HasModel is set when the body has a top-level "model" member; Model is the
	// token of its value (quotes included). With several "model" members the
	// last one counts and DuplicateModel is set.
	HasModel       bool
	DuplicateModel bool
	Model          Span
	modelEscaped   bool

	// Stream is the "stream" member; false when absent or null.
	Stream bool
	// MaxTokens and MaxCompletionTokens are "max_tokens" and
	// "max_completion_tokens"; -1 when absent or null, at most MaxCount.
	MaxTokens           int64
	MaxCompletionTokens int64
	// MaxOutputTokensField is the Responses API's "max_output_tokens"; -1 when
	// absent or null.
	MaxOutputTokensField int64

	// HasStreamOptions is set when the body has a "stream_options" member (an
	// object or null); StreamOptions is the token of its value.
	HasStreamOptions bool
	StreamOptions    Span
	// IncludeUsage is stream_options.include_usage; IncludeUsageValue is the token
	// of that value, zero when stream_options has no include_usage member.
	IncludeUsage      bool
	IncludeUsageValue Span

	// PromptTextBytes is the size of the message text EstimatePromptTokens
	// counts: the bytes inside the quotes of every messages[*].content string and
	// of every "text" string of the parts of an array content, as written (an
	// escape counts as its escaped length); and of the other operations'
	// prompts: "input" (a string, an array of strings, or of Responses input
	// items read like messages), "instructions" and "prompt" strings.
	PromptTextBytes int64
}

// ModelIs reports whether the request's model is exactly name. body must be the
// inspected body. It allocates only when the model token holds escapes.
func (r *Request) ModelIs(body []byte, name string) bool {
	if !r.HasModel {
		return false
	}
	raw := body[r.Model.Start+1 : r.Model.End-1]
	if !r.modelEscaped {
		return string(raw) == name
	}
	s, err := jsonlite.Unquote(body[r.Model.Start:r.Model.End])
	return err == nil && s == name
}

// ModelBytes returns the request's model as it stands in body, without its
// quotes, when it holds no escapes (so it is also the decoded name); ok is
// false otherwise, and when the request names no model.
func (r *Request) ModelBytes(body []byte) (name []byte, ok bool) {
	if !r.HasModel || r.modelEscaped {
		return nil, false
	}
	return body[r.Model.Start+1 : r.Model.End-1], true
}

// ModelName returns the request's model decoded, or "" when it has none. body
// must be the inspected body. It allocates the returned string.
func (r *Request) ModelName(body []byte) string {
	if !r.HasModel {
		return ""
	}
	s, _ := jsonlite.Unquote(body[r.Model.Start:r.Model.End])
	return s
}

// EstimatePromptTokens returns a cheap estimate of the prompt's size in tokens:
// PromptTextBytes / 4, rounded up. Four bytes a token is the usual figure for
// English text with OpenAI's tokenizers; it underestimates text in scripts that
// take three UTF-8 bytes a character, and it ignores the role and formatting
// tokens of each message, tool definitions and images. It is meant for reserving
// tokens ahead of the real usage, which settles the difference.
func (r *Request) EstimatePromptTokens() int64 {
	return (r.PromptTextBytes + 3) / 4
}

// MaxOutputTokens returns the output limit the request asks for:
// max_completion_tokens when set, else max_output_tokens (the Responses API),
// else max_tokens, else -1.
func (r *Request) MaxOutputTokens() int64 {
	if r.MaxCompletionTokens >= 0 {
		return r.MaxCompletionTokens
	}
	if r.MaxOutputTokensField >= 0 {
		return r.MaxOutputTokensField
	}
	return r.MaxTokens
}

// InspectRequest checks that body is one JSON object and reads its top-level
// members model, stream, max_tokens, max_completion_tokens, stream_options and
// messages, in one pass over the body. Unknown members are checked and skipped.
//
// The structure of the whole body is checked as RFC 8259 has it (brackets,
// commas, colons, numbers, literals, every string closed, values nested at most
// jsonlite.MaxDepth deep). The top-level member names and the values of the
// members read are validated whole as jsonlite does (escapes, no control
// characters, valid UTF-8); the inside of every other string (message text,
// tools, unknown members) is not looked at but for its quotes: the provider
// judges it. An error wraps ErrInvalidJSON, ErrNotObject,
// ErrModelType or ErrFieldType; a syntax error anywhere takes precedence over a
// member of the wrong type, and of several mistyped members the first is named.
// null reads as absent for stream, max_tokens, max_completion_tokens and
// include_usage; a null model is an error.
//
// It does not allocate unless it returns an error or meets a member name written
// with escapes. It is valid for any input and never panics.
func InspectRequest(body []byte) (Request, error) {
	r := Request{MaxTokens: -1, MaxCompletionTokens: -1, MaxOutputTokensField: -1}
	start := jsonlite.SkipSpace(body, 0)
	if start >= len(body) {
		return r, invalid(&jsonlite.SyntaxError{Offset: start, Msg: "empty body"})
	}
	if body[start] != '{' {
		end, err := jsonlite.SkipValue(body, start)
		if err != nil {
			return r, invalid(err)
		}
		if jsonlite.SkipSpace(body, end) != len(body) {
			return r, invalid(&jsonlite.SyntaxError{Offset: end, Msg: "unexpected data after the document"})
		}
		return r, ErrNotObject
	}
	r.Open = start
	// A member of the wrong type is reported only once the whole body is known
	// to be valid JSON: a syntax error takes precedence.
	var typeErr error
	m := jsonlite.ObjectMembers(body, start)
	for m.NextName() {
		r.Members++
		name := m.Name()
		if m.NameEscaped() {
			s, err := jsonlite.Unquote(body[m.NameStart:m.NameEnd])
			if err != nil {
				return r, invalid(err)
			}
			name = []byte(s)
		}
		// Every value is validated once: messages while they are counted, the
		// others by SkipValue.
		var end int
		var err error
		switch {
		case string(name) == "messages" && body[m.ValueStart] == '[':
			var n int64
			end, n, err = promptText(body, m.ValueStart, false)
			r.PromptTextBytes = n
		case string(name) == "input" && body[m.ValueStart] == '[':
			var n int64
			end, n, err = promptText(body, m.ValueStart, true)
			r.PromptTextBytes += n
		case body[m.ValueStart] == '"' && (string(name) == "input" || string(name) == "instructions" || string(name) == "prompt"):
			if end, err = skipValue(body, m.ValueStart); err == nil {
				r.PromptTextBytes += int64(end - m.ValueStart - 2)
			}
		case readMember(name):
			end, err = jsonlite.SkipValue(body, m.ValueStart)
		default:
			end, err = skipValue(body, m.ValueStart)
		}
		if err != nil {
			return r, invalid(err)
		}
		m.ValueDone(end)
		if typeErr != nil {
			continue
		}
		v := Span{m.ValueStart, end}
		switch string(name) {
		case "model":
			if body[v.Start] != '"' {
				err = fieldErr("model", "a string", ErrModelType)
				break
			}
			r.DuplicateModel = r.HasModel
			r.HasModel = true
			r.Model = v
			r.modelEscaped = bytes.IndexByte(body[v.Start+1:v.End-1], '\\') >= 0
		case "stream":
			r.Stream, err = boolValue(body, v, "stream")
		case "max_tokens":
			r.MaxTokens, err = countValue(body, v, "max_tokens")
		case "max_completion_tokens":
			r.MaxCompletionTokens, err = countValue(body, v, "max_completion_tokens")
		case "max_output_tokens":
			r.MaxOutputTokensField, err = countValue(body, v, "max_output_tokens")
		case "stream_options":
			err = r.streamOptions(body, v)
		case "messages":
			if body[v.Start] != '[' {
				r.PromptTextBytes = 0 // not messages the estimate can read
			}
		}
		typeErr = err
	}
	if err := m.Err(); err != nil {
		return r, invalid(err)
	}
	r.Close = m.End() - 1
	if jsonlite.SkipSpace(body, m.End()) != len(body) {
		return r, invalid(&jsonlite.SyntaxError{Offset: m.End(), Msg: "unexpected data after the document"})
	}
	return r, typeErr
}

// readMember reports whether InspectRequest reads the value of the top-level
// member name: such values are validated whole (jsonlite.SkipValue), the
// others only for their structure.
func readMember(name []byte) bool {
	switch string(name) {
	case "model", "stream", "max_tokens", "max_completion_tokens", "max_output_tokens", "stream_options":
		return true
	}
	return false
}

// boolValue reads a boolean member; null reads as false.
func boolValue(body []byte, v Span, field string) (bool, error) {
	switch body[v.Start] {
	case 't':
		return true, nil
	case 'f', 'n':
		return false, nil
	}
	return false, fieldErr(field, "a boolean", ErrFieldType)
}

// countValue reads a non-negative integer member; null reads as -1.
func countValue(body []byte, v Span, field string) (int64, error) {
	if body[v.Start] == 'n' {
		return -1, nil
	}
	n, ok := parseCount(body[v.Start:v.End])
	if !ok {
		return 0, fieldErr(field, "a non-negative integer", ErrFieldType)
	}
	return n, nil
}

// MaxCount bounds every count read from a body: max_tokens,
// max_completion_tokens and each usage member. A larger integer reads as
// MaxCount (saturating, never wrapping), which is far beyond any model's
// context, so a sum of a few counts stays far inside an int64. It is also
// pricing.MaxTokens.
const MaxCount = 1_000_000_000_000

// parseCount parses a JSON number token that is a non-negative integer; a
// value above MaxCount (however many digits) reads as MaxCount. ok is false
// for anything else: a sign, a fraction, an exponent, a leading zero.
func parseCount(tok []byte) (int64, bool) {
	if len(tok) == 0 || len(tok) > 1 && tok[0] == '0' {
		return 0, false
	}
	var n int64
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n <= MaxCount {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, MaxCount), true
}

func (r *Request) streamOptions(body []byte, v Span) error {
	r.HasStreamOptions = true
	r.StreamOptions = v
	r.IncludeUsage = false
	r.IncludeUsageValue = Span{}
	switch body[v.Start] {
	case 'n':
		return nil
	case '{':
	default:
		return fieldErr("stream_options", "an object", ErrFieldType)
	}
	m := jsonlite.ObjectMembers(body, v.Start)
	for m.Next() {
		if !m.NameIs("include_usage") {
			continue
		}
		u := Span{m.ValueStart, m.ValueEnd}
		b, err := boolValue(body, u, "stream_options.include_usage")
		if err != nil {
			return err
		}
		r.IncludeUsage = b
		r.IncludeUsageValue = u
	}
	if err := m.Err(); err != nil {
		return invalid(err)
	}
	return nil
}
