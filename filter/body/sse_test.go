package body

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sseResult is everything an SSEScanner reports.
type sseResult struct {
	Usage                            Usage
	SawUsage                         bool
	Model                            string
	Content, Done                    bool
	Events, Skipped, Malformed       int
	FirstContentAt, FirstContentOnce int // the chunk after which FirstContent was true; how many times
}

// scanSSE feeds chunks to a fresh scanner with the given limit and reports.
func scanSSE(maxEvent int, chunks ...[]byte) sseResult {
	s := SSEScanner{MaxEvent: maxEvent}
	res := sseResult{FirstContentAt: -1}
	for i, c := range chunks {
		s.Feed(c)
		if s.FirstContent() {
			res.FirstContentOnce++
			if res.FirstContentAt < 0 {
				res.FirstContentAt = i
			}
		}
	}
	s.Finish()
	if s.FirstContent() {
		res.FirstContentOnce++
	}
	res.Usage, res.SawUsage, res.Model = s.Usage(), s.SawUsage(), s.Model()
	res.Content, res.Done = s.SawContent(), s.Done()
	res.Events, res.Skipped, res.Malformed = s.Events(), s.Skipped(), s.Malformed()
	return res
}

// whole drops the chunk position fields, which depend on the chunking.
func whole(r sseResult) sseResult {
	r.FirstContentAt = 0
	return r
}

func TestSSEScannerSample(t *testing.T) {
	got := scanSSE(0, []byte(sseStream))
	require.Equal(t, 1, got.FirstContentOnce)
	require.Equal(t, whole(sseWant), whole(got))
}

func TestSSEScannerEverySplit(t *testing.T) {
	data := []byte(sseStream)
	want := whole(scanSSE(0, data))
	want.FirstContentOnce = 1
	for i := 0; i <= len(data); i++ {
		got := scanSSE(0, data[:i], data[i:])
		require.Equal(t, want, whole(got), "split at %d", i)
	}
	// Every pair of split points on the first kilobyte, where the content starts.
	for i := 0; i < 1024 && i < len(data); i += 7 {
		for j := i; j <= len(data); j += 13 {
			require.Equal(t, want, whole(scanSSE(0, data[:i], data[i:j], data[j:])), "split at %d, %d", i, j)
		}
	}
}

func TestSSEScannerRandomChunks(t *testing.T) {
	data := sse200()
	want := whole(scanSSE(0, data))
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n++ {
		got := whole(scanSSE(0, randomChunks(rng, data)...))
		require.Equal(t, want, got)
	}
	require.Equal(t, Usage{Input: 50, Output: 200, Total: 250}, want.Usage)
	require.Equal(t, 202, want.Events)
}

func TestSSEScannerFirstContentTiming(t *testing.T) {
	role := "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
	first := "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
	more := "data: {\"choices\":[{\"delta\":{\"content\":\"!\"}}]}\n\n"
	got := scanSSE(0, []byte(role), []byte(first[:20]), []byte(first[20:]), []byte(more))
	require.Equal(t, 2, got.FirstContentAt, "content is known when its event ends")
	require.Equal(t, 1, got.FirstContentOnce)
}

func TestSSEScannerEvents(t *testing.T) {
	chunk := func(delta string) string {
		return `{"choices":[{"index":0,"delta":` + delta + `}]}`
	}
	for _, tc := range []struct {
		name   string
		stream string
		want   sseResult
	}{
		{
			name:   "LF, CRLF and CR line ends",
			stream: "data: " + chunk(`{"content":"a"}`) + "\n\ndata: " + chunk(`{}`) + "\r\n\r\ndata: [DONE]\r\r",
			want:   sseResult{Content: true, Done: true, Events: 3},
		},
		{
			name:   "no space after the colon, and two spaces keep one",
			stream: "data:" + chunk(`{"content":"a"}`) + "\n\ndata:  [DONE]\n\n",
			want:   sseResult{Content: true, Done: true, Events: 2},
		},
		{
			name:   "multi-line data joined with LF",
			stream: "data: {\"model\":\ndata: \"m\"}\n\n",
			want:   sseResult{Model: "m", Events: 1},
		},
		{
			name:   "event, id, retry and comment lines are ignored",
			stream: "event: message\nid: 7\nretry: 100\n: hi\ndata: {\"model\":\"m\"}\n\n",
			want:   sseResult{Model: "m", Events: 1},
		},
		{
			name:   "a field named like data is not data",
			stream: "database: {\"model\":\"x\"}\ndat: 1\n\ndata: {\"model\":\"m\"}\n\n",
			want:   sseResult{Model: "m", Events: 1},
		},
		{
			name:   "data without a colon adds an empty line",
			stream: "data\ndata: {\"model\":\"m\"}\n\n",
			want:   sseResult{Model: "m", Events: 1},
		},
		{
			name:   "blank lines alone dispatch nothing",
			stream: "\n\n\r\n: x\n\n",
			want:   sseResult{},
		},
		{
			name:   "tool call deltas are content",
			stream: "data: " + chunk(`{"tool_calls":[{"index":0,"function":{"arguments":""}}]}`) + "\n\n",
			want:   sseResult{Content: true, Events: 1},
		},
		{
			name:   "empty tool calls, empty content, null content are not",
			stream: "data: " + chunk(`{"tool_calls":[ ],"content":"","refusal":null}`) + "\n\n",
			want:   sseResult{Events: 1},
		},
		{
			name:   "reasoning and refusal are content",
			stream: "data: " + chunk(`{"reasoning_content":"hmm"}`) + "\n\ndata: " + chunk(`{"refusal":"no"}`) + "\n\n",
			want:   sseResult{Content: true, Events: 2},
		},
		{
			name:   "content in a later choice",
			stream: "data: {\"choices\":[{\"delta\":{}},{\"delta\":{\"content\":\"x\"}}]}\n\n",
			want:   sseResult{Content: true, Events: 1},
		},
		{
			name:   "completions API text",
			stream: "data: {\"choices\":[{\"text\":\"x\",\"index\":0}]}\n\n",
			want:   sseResult{Content: true, Events: 1},
		},
		{
			name:   "nested model and usage keys are ignored",
			stream: "data: {\"choices\":[{\"delta\":{\"model\":\"x\",\"usage\":{\"prompt_tokens\":5}}}]}\n\n",
			want:   sseResult{Events: 1},
		},
		{
			name:   "the last usage wins and null usage keeps it",
			stream: "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: {\"usage\":null}\n\n",
			want:   sseResult{Usage: Usage{Input: 2, Output: 3, Total: 5}, SawUsage: true, Events: 3},
		},
		{
			name:   "responses API usage names",
			stream: "data: {\"usage\":{\"input_tokens\":8,\"output_tokens\":2,\"total_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":4}}}\n\n",
			want:   sseResult{Usage: Usage{Input: 8, CachedInput: 4, Output: 2, Total: 10}, SawUsage: true, Events: 1},
		},
		{
			name:   "bad numbers read as zero, huge ones as MaxCount",
			stream: "data: {\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":1.5,\"total_tokens\":99999999999999999999999}}\n\n",
			want:   sseResult{Usage: Usage{Total: MaxCount}, SawUsage: true, Events: 1},
		},
		{
			name:   "malformed data is counted and changes nothing",
			stream: "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":1}\n\ndata: not json\n\ndata: [1]\n\ndata: \"\xff\"\n\n",
			want:   sseResult{Events: 4, Malformed: 4},
		},
		{
			name:   "events after DONE are ignored",
			stream: "data: [DONE]\n\ndata: {\"model\":\"m\"}\n\n",
			want:   sseResult{Done: true, Events: 1},
		},
		{
			name:   "a leading byte order mark is dropped",
			stream: "\xef\xbb\xbfdata: {\"model\":\"m\"}\n\n",
			want:   sseResult{Model: "m", Events: 1},
		},
		{
			name:   "part of a byte order mark spoils the first line",
			stream: "\xef\xbbdata: {\"model\":\"m\"}\n\ndata: {\"model\":\"n\"}\n\n",
			want:   sseResult{Model: "n", Events: 1},
		},
		{
			name:   "a byte order mark later is data",
			stream: "data: {\"model\":\"m\"}\n\n\xef\xbb\xbfdata: {\"model\":\"n\"}\n\n",
			want:   sseResult{Model: "m", Events: 1},
		},
		{
			name:   "an unterminated last event is read by Finish",
			stream: "data: {\"model\":\"m\"}",
			want:   sseResult{Model: "m", Events: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.stream)
			want := whole(tc.want)
			if want.Content {
				want.FirstContentOnce = 1
			}
			require.Equal(t, want, whole(scanSSE(0, data)))
			for i := 0; i <= len(data); i++ {
				require.Equal(t, want, whole(scanSSE(0, data[:i], data[i:])), "split at %d", i)
			}
		})
	}
}

func TestSSEScannerBoundsEvents(t *testing.T) {
	big := "data: {\"model\":\"big\",\"pad\":\"" + strings.Repeat("x", 2000) + "\"}\n\n"
	small := "data: {\"model\":\"small\"}\n\n"
	got := scanSSE(1000, []byte(small+big))
	require.Equal(t, "small", got.Model)
	require.Equal(t, 1, got.Skipped)
	require.Equal(t, 1, got.Events)

	// A huge event fed in pieces never grows the buffer past the limit.
	s := SSEScanner{MaxEvent: 4096}
	s.Feed([]byte("data: "))
	piece := []byte(strings.Repeat("y", 1000))
	for i := 0; i < 10<<10; i++ {
		s.Feed(piece)
	}
	s.Feed([]byte("\n\n" + small))
	require.LessOrEqual(t, cap(s.data), 8192)
	require.Equal(t, 1, s.Skipped())
	require.Equal(t, "small", s.Model())
}

func TestSSEScannerSteadyStateDoesNotAllocate(t *testing.T) {
	data := sse200()
	event := data[:bytesIndex(data, "\n\n")+2]
	var s SSEScanner
	s.Feed(event) // the event buffer and the model are allocated once
	allocs := testing.AllocsPerRun(100, func() {
		s.Feed(event[:50])
		s.Feed(event[50:])
	})
	require.Zero(t, allocs)
	require.Equal(t, 102, s.Events())
}

func bytesIndex(b []byte, sep string) int { return strings.Index(string(b), sep) }

// randomChunks cuts data into chunks of 1 to 64 bytes, some empty.
func randomChunks(rng *rand.Rand, data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := rng.IntN(65)
		if n > len(data) {
			n = len(data)
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}
