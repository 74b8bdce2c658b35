package jsonlite

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestSkipValueAgreesWithEncodingJSON(t *testing.T) {
	for _, doc := range []string{
		`0`, `-1.5e+3`, `"x"`, `"\u00e9\""`, `true`, `false`, `null`,
		`{}`, `[]`, `{ }`, `[ ]`, `{"a":1}`, `{"a" : [1, {"b": null}] , "c":{}}`,
		`[1,2,[3,[4,[]]],{"k":"v"}]`, `[{}, {}, []]`,
		// invalid
		``, `{`, `[`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{1:2}`,
		`[1 2]`, `{"a":1 "b":2}`, `tru`, `nul`, `01`, `-`, `1.`, `.5`, `"abc`, `"\x"`,
		`{"a":1]`, `[1}`, `}`, `]`, "\"a\tb\"", `{"a":[}`,
	} {
		t.Run(doc, func(t *testing.T) {
			data := []byte(doc)
			end, err := SkipValue(data, 0)
			want := json.Valid(data)
			if want {
				require.NoError(t, err)
				require.Equal(t, len(data), end)
				return
			}
			// Either an error, or a valid prefix followed by junk.
			if err == nil {
				require.Less(t, end, len(data))
				require.True(t, json.Valid(data[:end]))
			}
		})
	}
}

func TestSkipValueRejectsInvalidUTF8(t *testing.T) {
	// Stricter than encoding/json, which accepts invalid UTF-8 in strings.
	_, err := SkipValue([]byte("[\"\xff\"]"), 0)
	require.ErrorContains(t, err, "invalid utf-8")
}

func TestSkipValueStopsAtTheValueEnd(t *testing.T) {
	data := []byte(`{"a":[1,"]}"]}  , "rest"`)
	end, err := SkipValue(data, 0)
	require.NoError(t, err)
	require.Equal(t, `{"a":[1,"]}"]}`, string(data[:end]))
}

func TestSkipValueDepth(t *testing.T) {
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	_, err := SkipValue([]byte(ok), 0)
	require.NoError(t, err)

	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	_, err = SkipValue([]byte(deep), 0)
	require.ErrorContains(t, err, ErrTooDeep.Error())

	mixed := strings.Repeat(`{"a":[`, MaxDepth/2) + "1" + strings.Repeat(`]}`, MaxDepth/2)
	end, err := SkipValue([]byte(mixed), 0)
	require.NoError(t, err)
	require.Equal(t, len(mixed), end)
}

func TestSkipValueDoesNotAllocate(t *testing.T) {
	data := []byte(`{"messages":[{"role":"user","content":"hello \"world\" \u00e9"}],"n":[1,2.5e3,true,null]}`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := SkipValue(data, 0); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestMembersWalk(t *testing.T) {
	data := []byte(` { "a" : 1 , "b\u0063" : {"x":[1]}, "d":"s" } `)
	pos := SkipSpace(data, 0)
	m := ObjectMembers(data, pos)
	var names, values []string
	for m.Next() {
		names = append(names, string(data[m.NameStart:m.NameEnd]))
		values = append(values, string(m.Value()))
	}
	require.NoError(t, m.Err())
	require.Equal(t, []string{`"a"`, `"b\u0063"`, `"d"`}, names)
	require.Equal(t, []string{`1`, `{"x":[1]}`, `"s"`}, values)
	require.Equal(t, len(data)-1, m.End())

	m = ObjectMembers(data, pos)
	require.True(t, m.Next())
	require.True(t, m.Next())
	require.True(t, m.NameIs("bc"), "escaped names are decoded")
	require.False(t, m.NameIs("b\\u0063"))
}

func TestMembersErrors(t *testing.T) {
	for _, doc := range []string{`[]`, `{`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,}`, `{"a":1 "b":2}`, `{1:1}`, `{"a" 1}`} {
		t.Run(doc, func(t *testing.T) {
			m := ObjectMembers([]byte(doc), 0)
			for m.Next() {
			}
			require.Error(t, m.Err())
			require.False(t, m.Next(), "a failed walk stays finished")
		})
	}
}

func TestElementsWalk(t *testing.T) {
	data := []byte(`[ 1 , {"a":[]} ,"x" ]`)
	e := ArrayElements(data, 0)
	var got []string
	for e.Next() {
		got = append(got, string(e.Value()))
	}
	require.NoError(t, e.Err())
	require.Equal(t, []string{`1`, `{"a":[]}`, `"x"`}, got)
	require.Equal(t, len(data), e.End())

	for _, doc := range []string{`{}`, `[`, `[1`, `[1,]`, `[1 2]`, `[}`} {
		e := ArrayElements([]byte(doc), 0)
		for e.Next() {
		}
		require.Error(t, e.Err(), doc)
	}
	empty := ArrayElements([]byte(`[ ]`), 0)
	require.False(t, empty.Next())
	require.NoError(t, empty.Err())
}

func TestUnquote(t *testing.T) {
	s, err := Unquote([]byte(`"a\"b\u00e9\ud83d\ude00"`))
	require.NoError(t, err)
	require.Equal(t, "a\"bé😀", s)
	s, err = Unquote([]byte(`"plain"`))
	require.NoError(t, err)
	require.Equal(t, "plain", s)
	for _, bad := range []string{``, `x`, `"`, `"a"b`, `"\q"`} {
		_, err := Unquote([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestScanNumber(t *testing.T) {
	end, err := ScanNumber([]byte(`-12.5e3,`), 0)
	require.NoError(t, err)
	require.Equal(t, 7, end)
	_, err = ScanNumber([]byte(`-x`), 0)
	require.Error(t, err)
}

func FuzzSkipValue(f *testing.F) {
	for _, s := range []string{`{"a":[1,{"b":null}]}`, `[1,2`, `"\u00e9"`, `{"a":1,}`, `-0.5e-3`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end, err := SkipValue(data, 0)
		if err != nil {
			return
		}
		require.True(t, end > 0 && end <= len(data))
		_, perr := Parse(data[:end])
		require.NoError(t, perr, "SkipValue accepted what Parse rejects")
	})
}

func TestLazyWalks(t *testing.T) {
	data := []byte(`{"a":[1,"x",{"b":2}],"c":"s"}`)
	m := ObjectMembers(data, 0)
	var got []string
	for m.NextName() {
		if m.NameIs("a") {
			e := ArrayElements(data, m.ValueStart)
			for e.NextStart() {
				end, err := SkipValue(data, e.ValueStart)
				require.NoError(t, err)
				e.ValueDone(end)
				got = append(got, string(e.Value()))
			}
			require.NoError(t, e.Err())
			m.ValueDone(e.End())
		} else {
			end, err := SkipValue(data, m.ValueStart)
			require.NoError(t, err)
			m.ValueDone(end)
		}
		got = append(got, string(m.Value()))
	}
	require.NoError(t, m.Err())
	require.Equal(t, []string{`1`, `"x"`, `{"b":2}`, `[1,"x",{"b":2}]`, `"s"`}, got)

	for _, doc := range []string{`{"a":`, `{"a": `, `[`, `[1,`, `[1, `} {
		m := ObjectMembers([]byte(doc), 0)
		e := ArrayElements([]byte(doc), 0)
		if doc[0] == '{' {
			require.False(t, m.NextName(), doc)
			require.Error(t, m.Err(), doc)
			continue
		}
		for e.NextStart() {
			end, err := SkipValue([]byte(doc), e.ValueStart)
			require.NoError(t, err)
			e.ValueDone(end)
		}
		require.Error(t, e.Err(), doc)
	}
}

func FuzzScanStringMatchesParse(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b\u00e9"`, "\"\xff\"", "\"a\x01\"", `"\x"`, `"\u12"`, `"abc`, `"\`, `"日本語 😀"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != '"' {
			return
		}
		end, escaped, err := ScanString(data, 0)
		wantEnd, wantEscaped, wantErr := referenceScanString(data, 0)
		require.Equal(t, wantErr, err)
		require.Equal(t, wantEnd, end)
		require.Equal(t, wantEscaped, escaped)
	})
}

func TestPlainWordMatchesTheTable(t *testing.T) {
	for c := 0; c < 256; c++ {
		for at := 0; at < 8; at++ {
			for _, fill := range []byte{'a', ' ', '~', '!', '#', '[', ']'} {
				b := []byte{fill, fill, fill, fill, fill, fill, fill, fill}
				b[at] = byte(c)
				want := true
				for _, x := range b {
					want = want && plain[x]
				}
				require.Equal(t, want, plainWord(binary.LittleEndian.Uint64(b)), "byte %#x at %d among %q", c, at, fill)
				require.Equal(t, want, plainWord(binary.BigEndian.Uint64(b)), "either byte order: byte %#x at %d among %q", c, at, fill)
			}
		}
	}
}

// referenceScanString is the byte-at-a-time string scanner ScanString must agree
// with: the plainest reading of the grammar, kept as the fuzz oracle.
func referenceScanString(data []byte, start int) (end int, escaped bool, err error) {
	i := start + 1
	for i < len(data) {
		c := data[i]
		switch {
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
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, false, &SyntaxError{Offset: i, Msg: "invalid utf-8 in string"}
			}
			i += size
		}
	}
	return 0, false, &SyntaxError{Offset: start, Msg: "unterminated string"}
}
