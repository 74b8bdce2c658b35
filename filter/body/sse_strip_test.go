package body

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// editAll runs a stripping scanner over chunks and returns the bytes it sent.
// Each chunk is handed over in a buffer of its own, as a host does, since
// Edit may rewrite it; bytes past the chunk in that buffer must stay as they
// were.
func editAll(s *SSEScanner, chunks ...[]byte) string {
	var out []byte
	for i, c := range chunks {
		buf := append(append(make([]byte, 0, len(c)+len(guard)), c...), guard...)
		b, _ := s.Edit(buf[:len(c)], i == len(chunks)-1)
		out = append(out, b...)
		if string(buf[len(c):]) != guard {
			panic("Edit wrote past the chunk")
		}
	}
	return string(out)
}

const guard = "\xab\xab\xab\xab\xab\xab\xab\xab"

// stripCases are streams with the usage the filter asked for, and what the
// provider sends without include_usage.
var stripCases = []struct {
	name, stream, want string
	usage              Usage
}{
	{
		name: "a usage chunk of its own",
		stream: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
			"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
			"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n" +
			"data: [DONE]\n\n",
		want: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
			"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
			"data: [DONE]\n\n",
		usage: Usage{Input: 3, Output: 2, Total: 5},
	},
	{
		name: "OpenAI: usage null on every chunk",
		stream: "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n" +
			"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a \\\"usage\\\":null\"}}],\"usage\":null,\"obfuscation\":\"x\"}\n\n" +
			": keep-alive\n\n" +
			"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\": null}\n\n" +
			"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":7}}}\n\n" +
			"data: [DONE]\n\n",
		want: "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
			"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a \\\"usage\\\":null\"}}],\"obfuscation\":\"x\"}\n\n" +
			": keep-alive\n\n" +
			"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
			"data: [DONE]\n\n",
		usage: Usage{Input: 19, CachedInput: 7, Output: 10, Total: 29},
	},
	{
		name: "usage null at the end of chunks past the first content",
		stream: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n" +
			"data: {\"choices\":[{\"delta\":{\"content\":\"x\\\"usage\\\":null}\"}}],\"usage\":null}\n\n" +
			"data: {\"choices\":[{\"delta\":{},\"usage\":{\"prompt_tokens\":1}}],\"usage\":null}\n\n" +
			"data: {\"usage\":null}\n\n" +
			"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\n" +
			"data: [DONE]\n\n",
		want: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
			"data: {\"choices\":[{\"delta\":{\"content\":\"x\\\"usage\\\":null}\"}}]}\n\n" +
			"data: {\"choices\":[{\"delta\":{},\"usage\":{\"prompt_tokens\":1}}]}\n\n" +
			"data: {}\n\n" +
			"data: [DONE]\n\n",
		usage: Usage{Input: 2, Output: 3, Total: 5},
	},
	{
		name: "usage on the last content chunk, and as a first member",
		stream: "data: {\"usage\":null, \"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n" +
			"data: {\"choices\":[{\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\r\n\r\n" +
			"data: [DONE]\r\n\r\n",
		want: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n" +
			"data: {\"choices\":[{\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}]}\r\n\r\n" +
			"data: [DONE]\r\n\r\n",
		usage: Usage{Input: 4, Output: 2, Total: 6},
	},
	{
		name:   "the sample: a usage chunk over two data lines, CR line ends",
		stream: sseStream,
		want: strings.ReplaceAll(sseStream[:strings.Index(sseStream, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],")], ",\"usage\":null", "") +
			"data: [DONE]\n\n",
		usage: sseWant.Usage,
	},
	{
		name:   "an unterminated usage chunk at the end",
		stream: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
		want:   "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
		usage:  Usage{Input: 1, Output: 1, Total: 2},
	},
	{
		name:   "a usage member inside a choice is not the stream's",
		stream: "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"usage\":null}]}\n\ndata: {\"choices\":[{\"delta\":{},\"usage\":null}]}\n\n",
		want:   "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"usage\":null}]}\n\ndata: {\"choices\":[{\"delta\":{},\"usage\":null}]}\n\n",
	},
}

func TestSSEStripRemovesInjectedUsage(t *testing.T) {
	for _, tc := range stripCases {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.stream)
			check := func(got string, s *SSEScanner, what string) {
				require.Equal(t, tc.want, got, what)
				require.Equal(t, tc.usage, s.Usage(), what)
				require.Equal(t, tc.usage != Usage{}, s.SawUsage(), what)
			}
			s := &SSEScanner{Strip: true}
			check(editAll(s, data), s, "whole")
			for i := 0; i <= len(data); i++ {
				s := &SSEScanner{Strip: true}
				check(editAll(s, data[:i], data[i:]), s, "split")
			}
			rng := rand.New(rand.NewPCG(3, 4))
			for n := 0; n < 50; n++ {
				s := &SSEScanner{Strip: true}
				check(editAll(s, append(randomChunks(rng, data), nil)...), s, "random")
			}
			// Without Strip the stream passes as it came.
			plain := &SSEScanner{}
			require.Equal(t, tc.stream, editAll(plain, data))
		})
	}
}

func TestSSEStripKeepsAnswersThatCarryNoInjectedUsage(t *testing.T) {
	data := []byte(strings.ReplaceAll(string(sse200()), `,"usage":null`, ""))
	s := &SSEScanner{Strip: true}
	// Chunks that hold whole events and no usage pass as they are.
	events := strings.SplitAfter(string(data), "\n\n")
	for _, ev := range events[:len(events)-3] {
		out, replaced := s.Edit([]byte(ev), false)
		require.False(t, replaced)
		require.Equal(t, ev, string(out))
	}
}

func TestSSEStripPassesLargeEventsIntact(t *testing.T) {
	big := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 3000) + "\"}}],\"usage\":null}\n\n"
	stream := "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n" + big + "data: [DONE]\n\n"
	data := []byte(stream)
	for _, size := range []int{1, 7, 100, 1000, len(data)} {
		s := &SSEScanner{Strip: true, MaxEvent: 1024}
		var chunks [][]byte
		for off := 0; off < len(data); off += size {
			chunks = append(chunks, data[off:min(off+size, len(data))])
		}
		got := ""
		held := 0
		for i, c := range chunks {
			out, _ := s.Edit(c, i == len(chunks)-1)
			got += string(out)
			held = max(held, len(s.raw))
		}
		require.Equal(t, stream, got, "a skipped event passes unedited")
		require.Equal(t, 1, s.Skipped())
		require.LessOrEqual(t, held, 1024+headWindow, "never holds more than the bound")
	}
}

// responsesStream is a Responses stream as api.openai.com sends it.
func responsesStream(final string, pad int) string {
	ev := func(typ, rest string) string {
		return "event: " + typ + "\ndata: {\"type\":\"" + typ + "\",\"sequence_number\":0" + rest + "}\n\n"
	}
	resp := `"response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}`
	out := ev("response.created", ","+resp) + ev("response.in_progress", ","+resp) +
		ev("response.output_item.added", `,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}`) +
		ev("response.content_part.added", `,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}`)
	for _, w := range []string{"Hello", " \\\"usage\\\":", " world"} {
		out += ev("response.output_text.delta", `,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"`+w+`","logprobs":[]`)
	}
	text := "Hello \\\"usage\\\": world" + strings.Repeat(" pad", pad)
	out += ev("response.output_text.done", `,"item_id":"msg_1","output_index":0,"content_index":0,"text":"`+text+`"`)
	out += ev(final, `,"response":{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1-2025-04-14",`+
		`"output":[{"id":"msg_1","type":"message","content":[{"type":"output_text","text":"`+text+`","annotations":[]}]}],`+
		`"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":3},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":16},"user":null,"metadata":{}}`)
	return out
}

func TestSSEResponsesStream(t *testing.T) {
	want := Usage{Input: 7, CachedInput: 3, Output: 9, Total: 16}
	for _, tc := range []struct {
		final   string
		pad     int
		usage   bool
		skipped int
	}{
		{"response.completed", 0, true, 0},
		{"response.incomplete", 0, true, 0},
		{"response.failed", 0, true, 0},
		{"response.completed", 20000, true, 2}, // 80 KB of output (in the text's done event too): usage read from the event's tail
		{"response.output_item.done", 0, false, 0},
	} {
		t.Run(tc.final, func(t *testing.T) {
			data := []byte(responsesStream(tc.final, tc.pad))
			split := []int{len(data) / 3, len(data) / 2, len(data) - 10}
			if tc.pad == 0 {
				split = nil
				for i := 0; i <= len(data); i++ {
					split = append(split, i)
				}
			}
			for _, i := range split {
				s := &SSEScanner{Kind: StreamResponses, Strip: true}
				out := editAll(s, data[:i], data[i:])
				require.Equal(t, string(data), out, "a Responses stream passes untouched")
				require.Equal(t, tc.usage, s.SawUsage())
				if tc.usage {
					require.Equal(t, want, s.Usage())
				}
				require.True(t, s.SawContent())
				require.Equal(t, 3, s.Outputs(), "one output per delta event")
				require.Equal(t, tc.skipped, s.Skipped())
				require.Zero(t, s.Malformed())
				if tc.usage && tc.pad == 0 {
					require.Equal(t, "gpt-4.1-2025-04-14", s.Model())
				}
			}
		})
	}
}

func TestSSEStripSteadyStateDoesNotAllocate(t *testing.T) {
	ev := []byte("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n")
	s := &SSEScanner{Strip: true}
	buf := make([]byte, len(ev))
	// Each chunk in a fresh copy of the event, as Edit cuts it in place.
	edit := func(a, b int) []byte {
		n := copy(buf, ev[a:b])
		out, _ := s.Edit(buf[:n], false)
		return out
	}
	edit(0, len(ev))
	edit(0, 30)
	edit(30, len(ev))
	allocs := testing.AllocsPerRun(100, func() {
		edit(0, 30)
		edit(30, len(ev))
		edit(0, len(ev))
	})
	require.Zero(t, allocs)
}

// TestSSEStripCutsInPlace: a chunk that only loses bytes is edited where it
// lies, with no copy into the scanner's own buffer.
func TestSSEStripCutsInPlace(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"usage null", "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
			"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"},
		{"two events", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"usage\":null,\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n",
			"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"},
		{"usage chunk dropped", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n",
			"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &SSEScanner{Strip: true}
			s.Edit([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"), false)
			chunk := []byte(tc.in)
			out, replaced := s.Edit(chunk, false)
			require.True(t, replaced)
			require.Equal(t, tc.want, string(out))
			require.Same(t, &chunk[0], &out[0], "the chunk's own bytes")
			require.Zero(t, cap(s.own), "nothing copied")
		})
	}
}

func FuzzSSEStrip(f *testing.F) {
	f.Add([]byte(stripCases[1].stream), uint16(100))
	f.Add([]byte(sseStream), uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		s := &SSEScanner{Strip: true, MaxEvent: 256}
		want := editAll(s, data)
		c := int(cut) % (len(data) + 1)
		s2 := &SSEScanner{Strip: true, MaxEvent: 256}
		require.Equal(t, want, editAll(s2, data[:c], data[c:]))
		require.Equal(t, s.Usage(), s2.Usage())
		// Whole events in a chunk take a shorter path than bytes one by one.
		bytewise := make([][]byte, len(data))
		for i := range data {
			bytewise[i] = data[i : i+1]
		}
		s3 := &SSEScanner{Strip: true, MaxEvent: 256}
		require.Equal(t, want, editAll(s3, bytewise...))
		require.Equal(t, s.Usage(), s3.Usage())
		require.Equal(t, s.Outputs(), s3.Outputs())
		require.Equal(t, s.Events(), s3.Events())
		require.LessOrEqual(t, len(want), len(data), "stripping only removes")
	})
}

func TestWordSearches(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("ab\n\rg\x80\xff\x00\x01 ")
	for n := 0; n < 2000; n++ {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		want := len(b)
		if i := strings.IndexAny(string(b), "\r\n"); i >= 0 {
			want = i
		}
		require.Equal(t, want, lineEnd(b), "%q", b)
		for _, c := range []byte("g\n\x00\x80") {
			require.Equal(t, strings.IndexByte(string(b), c), indexByte(b, c), "%q %q", b, c)
		}
	}
}

// TestSSEStripHoldsAtMostMaxHold: while stripping, an event larger than
// MaxHold (but within MaxEvent, so still read) passes as it comes, unedited;
// its usage is still read.
func TestSSEStripHoldsAtMostMaxHold(t *testing.T) {
	big := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("y", 20<<10) + "\"}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n"
	stream := "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n" + big + "data: [DONE]\n\n"
	data := []byte(stream)
	s := &SSEScanner{Strip: true}
	got, held := "", 0
	for off := 0; off < len(data); off += 1000 {
		out, _ := s.Edit(data[off:min(off+1000, len(data))], off+1000 >= len(data))
		got += string(out)
		held = max(held, len(s.raw))
	}
	require.Equal(t, stream, got)
	require.LessOrEqual(t, held, MaxHold+headWindow)
	require.Zero(t, s.Skipped())
	require.Equal(t, Usage{Input: 3, Output: 4, Total: 7}, s.Usage())
}
