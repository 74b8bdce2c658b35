package body

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
	"github.com/stretchr/testify/require"
)

// refStringEnd is stringEnd read a byte at a time, as a JSON reader does: a
// backslash takes the byte after it, the first other quote ends the string.
func refStringEnd(b []byte, pos int) int {
	for i := pos + 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// neutralized returns data with the inside of every string that is not a
// valid JSON string (bad escapes, control characters, invalid UTF-8)
// replaced by as many 'a's: what the scanner checks of data is what jsonlite
// checks of the result. Strings are delimited as refStringEnd does; an
// unterminated one is left as it is.
func neutralized(data []byte) []byte {
	out := append([]byte(nil), data...)
	for i := 0; i < len(out); i++ {
		if out[i] != '"' {
			continue
		}
		e := refStringEnd(out, i)
		if e < 0 {
			break
		}
		if _, _, err := jsonlite.ScanString(out, i); err != nil {
			for k := i + 1; k < e-1; k++ {
				out[k] = 'a'
			}
		}
		i = e - 1
	}
	return out
}

func TestStringEnd(t *testing.T) {
	long := strings.Repeat("shepherds of the mesh ", 20) // 440 bytes, past several 64-byte blocks
	for _, tc := range []struct {
		name, s string
		want    int // offset just past the closing quote; -1 unterminated
	}{
		{"empty", `""`, 2},
		{"short", `"user",`, 6},
		{"eight bytes", `"12345678"`, 10},
		{"long", `"` + long + `"x`, len(long) + 2},
		{"escaped quote", `"a\"b"`, 6},
		{"escaped backslash before the end", `"a\\"b"`, 5},
		{"three backslashes", `"a\\\"b"`, 8},
		{"four backslashes", `"a\\\\"b"`, 7},
		{"escaped quote after a long run", `"` + long + `\"` + long + `"`, 2*len(long) + 4},
		{"escaped quote at a block's edge", `"` + long[:62] + `\"` + `"`, 62 + 4},
		{"quote at a block's last byte", `"` + long[:63] + `"`, 65},
		{"non-ascii", `"` + strings.Repeat("éè→日本", 30) + `"`, 2 + 30*len("éè→日本")},
		{"non-ascii then an escaped quote", `"` + strings.Repeat("日本", 20) + `\"x"`, 2 + 20*len("日本") + 3},
		{"bad escape and control bytes are not its business", "\"\\q\x01\xff\"", 6},
		{"unterminated", `"abc`, -1},
		{"unterminated long", `"` + long, -1},
		{"ends on an escape", `"` + long + `\"`, -1},
		{"escaped quote is last", `"ab\"`, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every alignment, with the body going on after the string or not.
			for pad := range 16 {
				for _, tail := range []string{"", `,"next":1}` + long} {
					b := []byte(strings.Repeat(" ", pad) + tc.s + tail)
					want := tc.want
					if want >= 0 {
						want += pad
					} else if tail != "" {
						want = refStringEnd(b, pad)
					}
					require.Equal(t, want, stringEnd(b, pad), "pad %d tail %d", pad, len(tail))
					require.Equal(t, refStringEnd(b, pad), stringEnd(b, pad))
				}
			}
		})
	}
}

func FuzzStringEnd(f *testing.F) {
	f.Add([]byte(`"a\"b\\"`), uint8(0))
	f.Add([]byte(`"`+strings.Repeat(`ab\\`, 40)+`\""`), uint8(3))
	f.Add([]byte("\"\xe6\x97\xa5"+strings.Repeat("x", 70)+`"`), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, pad uint8) {
		b := append([]byte(strings.Repeat(" ", int(pad%16))+`"`), data...)
		p := int(pad % 16)
		require.Equal(t, refStringEnd(b, p), stringEnd(b, p))
		if e := shortStringEnd(b, p); e >= 0 {
			require.Equal(t, refStringEnd(b, p), e)
		}
	})
}

// TestInspectRequestChecks: what InspectRequest checks and what it leaves to
// the provider. The structure of the whole body is checked; the members it
// reads (model, stream, the token limits, stream_options) and the top-level
// names are validated whole; the inside of the other strings (message text,
// tools, unknown members) is not: a bad escape, a control character or
// invalid UTF-8 there reaches the provider, whose parser answers it.
func TestInspectRequestChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want error // nil: accepted
		text int64
	}{
		{"invalid utf-8 in a message", "{\"messages\":[{\"content\":\"\xc3\x28\"}]}", nil, 2},
		{"bad escape in a message", `{"messages":[{"role":"user","content":"a\qb"}]}`, nil, 4},
		{"control byte in a message", "{\"messages\":[{\"content\":\"a\x01b\"}]}", nil, 3},
		{"bad escape in a tool", `{"tools":[{"name":"\x"}],"messages":[]}`, nil, 0},
		{"bad escape in an input string", `{"input":"\z"}`, nil, 2},
		{"bad escape in a message's role name", `{"messages":[{"r\ole":"user","content":"abc"}]}`, nil, 3},
		{"invalid utf-8 in the model", "{\"model\":\"m\xff\"}", ErrInvalidJSON, 0},
		{"bad escape in the model", `{"model":"\q"}`, ErrInvalidJSON, 0},
		{"bad escape in a top-level name", `{"\q":1}`, ErrInvalidJSON, 0},
		{"control byte in stream_options", "{\"stream_options\":{\"x\":\"\x01\"}}", ErrInvalidJSON, 0},
		{"unterminated message", `{"messages":[{"content":"abc}]}`, ErrInvalidJSON, 0},
		{"missing colon in a message", `{"messages":[{"content" "abc"}]}`, ErrInvalidJSON, 0},
		{"missing comma between messages", `{"messages":[{"content":"a"} {"content":"b"}]}`, ErrInvalidJSON, 0},
		{"trailing comma in a message", `{"messages":[{"content":"a",}]}`, ErrInvalidJSON, 0},
		{"bracket mismatch", `{"messages":[{"content":"a"}}}`, ErrInvalidJSON, 0},
		{"bad number in a message", `{"messages":[{"content":"a","n":01}]}`, ErrInvalidJSON, 0},
		{"bad literal in a tool", `{"tools":[tru]}`, ErrInvalidJSON, 0},
		{"quote escaped by an odd run", `{"messages":[{"content":"a\\\"}"}]}`, nil, 6},
		{"flat and other messages mixed", `{"messages":[{"role":"user","content":"ab"},{"role":"tool","content":[{"type":"text","text":"cd"}]},{"content":"ef","role":"x"}, {"content": "gh", "n": 1},{"content":"ij"}]}`, nil, 10},
		{"a broken message after flat ones", `{"messages":[{"content":"ab"},{"content":"cd"},{"content":"ef",}]}`, ErrInvalidJSON, 0},
		{"a message cut after flat ones", `{"messages":[{"content":"ab"},{"content":"cd"},{"content":"ef"`, ErrInvalidJSON, 0},
		{"spaces as Python writes them", `{"messages": [{"role": "user", "content": "abcd"}, {"role": "assistant", "content": "ef"}]}`, nil, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := InspectRequest([]byte(tc.body))
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.text, r.PromptTextBytes)
		})
	}
}

// TestFlatMessages: flatMessages reads a run of flat messages (string members
// only, at most one space after ':' and ','), and stops before the first
// other one; under GOARCH=wasm it is the assembly, checked against the Go.
func TestFlatMessages(t *testing.T) {
	long := strings.Repeat("shepherds of the mesh ", 20)
	for _, tc := range []struct {
		name string
		s    string
		end  int // offset past the last flat message read; -1 none
		text int64
	}{
		{"one", `{"role":"user","content":"abc"}]`, 31, 3},
		{"two, the second after a space", `{"role":"user","content":"abc"}, {"content":"de","role":"x"}]`, 60, 5},
		{"python's spaces", `{"role": "user", "content": "abcd"}, {"role": "assistant", "content": "ef"}]`, 75, 6},
		{"long content with escapes", `{"content":"` + long + `\"\\"}]`, 18 + len(long), int64(len(long) + 4)},
		{"content is not the only name of 7 bytes", `{"context":"abc","content":"de"}]`, 32, 2},
		{"a long name without escapes", `{"tool_call_id":"abc","content":"de"}]`, 37, 2},
		{"a long name with escapes", `{"cont\u0065nt":"abc"}]`, -1, 0},
		{"a name with escapes after a flat message", `{"content":"a"},{"cont\u0065nt":"abc"}]`, 15, 1},
		{"a number member", `{"content":"a","n":1}]`, -1, 0},
		{"an array content after a flat message", `{"content":"ab"},{"content":[{"text":"c"}]}]`, 16, 2},
		{"two spaces", `{"content":  "a"}]`, -1, 0},
		{"a space before ':'", `{"content" :"a"}]`, -1, 0},
		{"empty object", `{}]`, -1, 0},
		{"unterminated value", `{"content":"abc`, -1, 0},
		{"unterminated name", `{"content`, -1, 0},
		{"the body ends after the object", `{"content":"abc"}`, 17, 3},
		{"the body ends after ','", `{"content":"abc"},`, 17, 3},
		{"the body ends after ', '", `{"content":"abc"}, `, 17, 3},
		{"the body ends after a member's ','", `{"content":"abc",`, -1, 0},
		{"the body ends at a value's quote", `{"content":"abc"`, -1, 0},
		{"non-ascii", `{"content":"` + strings.Repeat("日本", 40) + `"}]`, 14 + 40*len("日本"), int64(40 * len("日本"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for pad := range 9 {
				b := []byte(strings.Repeat(" ", pad) + tc.s)
				end, text := flatMessages(b, pad)
				want := tc.end
				if want >= 0 {
					want += pad
				}
				require.Equal(t, want, end, "pad %d", pad)
				require.Equal(t, tc.text, text, "pad %d", pad)
				gend, gtext := flatMessagesGo(b, pad)
				require.Equal(t, []int64{int64(gend), gtext}, []int64{int64(end), text})
			}
		})
	}
}

func FuzzFlatMessages(f *testing.F) {
	f.Add([]byte(`{"role":"user","content":"abc"}, {"content":"de\"","role":"x"},{"content":[]}]`))
	f.Add([]byte(`{"role": "user", "content": "a\\"},{"tool_call_id":"x\\y","content":"日本"}`))
	f.Add([]byte(`{"cont\u0065nt":"abc"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := append([]byte{'{'}, data...)
		end, text := flatMessages(b, 0)
		gend, gtext := flatMessagesGo(b, 0)
		require.Equal(t, gend, end)
		require.Equal(t, gtext, text)
		if end < 0 {
			return
		}
		// What it read is a run of valid objects, as far as their structure
		// goes; its text is the content strings' insides.
		r, err := InspectRequest(append(append([]byte(`{"messages":[`), neutralized(b[:end])...), ']', '}'))
		require.NoError(t, err)
		require.Equal(t, text, r.PromptTextBytes)
	})
}

// TestScansOnRandomBodies runs the scans on many random bodies made of the
// bytes that matter to them (quotes, backslashes, brackets, the separators, a
// non-ASCII byte, "content"): the fuzzers' check, for runtimes where Go's
// fuzzing does not run (under GOARCH=wasm it checks the assembly).
func TestScansOnRandomBodies(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 1))
	pieces := []string{`"`, `\`, `{`, `}`, `,`, `:`, ` `, `a`, "\xe6", `content`, `"content":"`, `"role":"user",`, `"},{"`,
		strings.Repeat("x", 7), strings.Repeat("y", 64), `\\`, `\"`}
	var b []byte
	for i := range 10000 {
		b = append(b[:0], '{')
		for range rng.IntN(40) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		end, text := flatMessages(b, 0)
		gend, gtext := flatMessagesGo(b, 0)
		require.Equal(t, []int64{int64(gend), gtext}, []int64{int64(end), text}, "body %d %q", i, b)
		for p, c := range b {
			if c == '"' {
				require.Equal(t, refStringEnd(b, p), stringEnd(b, p), "body %d %q at %d", i, b, p)
			}
		}
	}
}
