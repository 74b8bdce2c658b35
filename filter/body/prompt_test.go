package body

import (
	"testing"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
	"github.com/stretchr/testify/require"
)

// refPrompt is the reading of message text promptText replaced: a walk with
// an iterator per message and part. promptText must agree with it on every
// input.
type refPrompt struct{ PromptTextBytes int64 }

// messages adds up the message text of the "messages" array (or a Responses or
// embeddings "input" array) at body[start] and returns the offset just past
// it, validating it on the way. Elements that are not shaped like chat
// messages are skipped: the upstream judges them; with countStrings, string
// elements (embeddings inputs) count too.
func (r *refPrompt) messages(body []byte, start int, countStrings bool) (int, error) {
	msgs := jsonlite.ArrayElements(body, start)
	for msgs.NextStart() {
		var end int
		var err error
		switch c := body[msgs.ValueStart]; {
		case c == '{':
			end, err = r.message(body, msgs.ValueStart)
		case c == '"' && countStrings: // an input string (embeddings, moderations)
			end, _, err = jsonlite.ScanString(body, msgs.ValueStart)
			r.PromptTextBytes += int64(end - msgs.ValueStart - 2)
		default:
			end, err = jsonlite.SkipValue(body, msgs.ValueStart)
		}
		if err != nil {
			return 0, err
		}
		msgs.ValueDone(end)
	}
	return msgs.End(), msgs.Err()
}

// message counts the content of the message object at body[start].
func (r *refPrompt) message(body []byte, start int) (int, error) {
	m := jsonlite.ObjectMembers(body, start)
	for m.NextName() {
		v := m.ValueStart
		var end int
		var err error
		// Calls are dear in a VM: the name is compared in place (NameIs only
		// for a name spelled with escapes), and strings are scanned directly.
		content := string(body[m.NameStart+1:m.NameEnd-1]) == "content" ||
			(m.NameEscaped() && m.NameIs("content"))
		switch {
		case body[v] == '"':
			end, _, err = jsonlite.ScanString(body, v)
			if content {
				r.PromptTextBytes += int64(end - v - 2)
			}
		case body[v] == '[' && content:
			end, err = r.contentParts(body, v)
		default:
			end, err = jsonlite.SkipValue(body, v)
		}
		if err != nil {
			return 0, err
		}
		m.ValueDone(end)
	}
	return m.End(), m.Err()
}

// contentParts counts the "text" strings of the content parts at body[start].
func (r *refPrompt) contentParts(body []byte, start int) (int, error) {
	parts := jsonlite.ArrayElements(body, start)
	for parts.NextStart() {
		var end int
		var err error
		if body[parts.ValueStart] == '{' {
			end, err = r.contentPart(body, parts.ValueStart)
		} else {
			end, err = jsonlite.SkipValue(body, parts.ValueStart)
		}
		if err != nil {
			return 0, err
		}
		parts.ValueDone(end)
	}
	return parts.End(), parts.Err()
}

func (r *refPrompt) contentPart(body []byte, start int) (int, error) {
	m := jsonlite.ObjectMembers(body, start)
	for m.NextName() {
		v := m.ValueStart
		var end int
		var err error
		if body[v] == '"' && m.NameIs("text") {
			end, _, err = jsonlite.ScanString(body, v)
			r.PromptTextBytes += int64(end - v - 2)
		} else {
			end, err = jsonlite.SkipValue(body, v)
		}
		if err != nil {
			return 0, err
		}
		m.ValueDone(end)
	}
	return m.End(), m.Err()
}

func FuzzPromptTextAgrees(f *testing.F) {
	f.Add([]byte(`[{"role":"user","content":"hi"},{"content":[{"type":"text","text":"abc"},{"text":1}]},"s",[["x"]]]`), true)
	f.Add([]byte(`[{"content":"a\u0041"},{"c\u006fntent":"xy"},{"content":{"text":"no"}}]`), false)
	f.Add([]byte(`[{"content":[{"t\u0065xt":"yes"},[{"text":"no"}]]}, 1, null, true, -2.5e3]`), true)
	f.Add([]byte(`[[[[[[[[{"content":"deep"}]]]]]]]]`), false)
	f.Add([]byte(`[{"content":"unterminated}]`), false)
	f.Fuzz(func(t *testing.T, data []byte, countStrings bool) {
		if len(data) == 0 || data[0] != '[' {
			return
		}
		// promptText checks the structure and not what strings hold: it
		// reads data as the reference reads data with its invalid strings
		// made valid (the same length, so the same offsets and counts).
		var ref refPrompt
		wantEnd, wantErr := ref.messages(neutralized(data), 0, countStrings)
		end, text, err := promptText(data, 0, countStrings)
		if wantErr != nil {
			// The same inputs fail; the wording may differ (the iterators
			// name the container they were in).
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, wantEnd, end)
		require.Equal(t, ref.PromptTextBytes, text)
	})
}

func TestPromptTextDeepNesting(t *testing.T) {
	data := []byte(`[`)
	for range 40 {
		data = append(data, `{"content":[`...)
	}
	for range 40 {
		data = append(data, `]}`...)
	}
	data = append(data, ']')
	_, _, err := promptText(data, 0, true)
	require.ErrorContains(t, err, jsonlite.ErrTooDeep.Error())
}
