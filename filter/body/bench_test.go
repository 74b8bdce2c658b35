package body

import (
	"bytes"
	"strconv"
	"testing"
)

func BenchmarkInspectRequest8K(b *testing.B) {
	body := request8K()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := InspectRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewriteModel8K(b *testing.B) {
	body := request8K()
	r, err := InspectRequest(body)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_ = RewriteModel(body, r, "relay/llama-3.1-70b-instruct")
	}
}

// BenchmarkRewriteModel8KReusedBuffer rewrites into a buffer kept across
// requests, as a filter context can.
func BenchmarkRewriteModel8KReusedBuffer(b *testing.B) {
	body := request8K()
	r, err := InspectRequest(body)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 16<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendApplied(buf[:0], body, r, Edit{SetModel: true, Model: "relay/llama-3.1-70b-instruct"})
	}
}

// BenchmarkInspectAndApply8K is the request-body path of the filter: inspect,
// then rewrite the model and ask for usage in one splice.
func BenchmarkInspectAndApply8K(b *testing.B) {
	body := request8K()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := InspectRequest(body)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = Apply(body, r, Edit{SetModel: true, Model: "relay/llama-3.1-70b-instruct", IncludeUsage: true})
	}
}

// BenchmarkSSEScan200Chunks feeds a 202-event stream as 200 chunks to a fresh
// scanner per stream.
func BenchmarkSSEScan200Chunks(b *testing.B) {
	data := sse200()
	size := len(data) / 200
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var s SSEScanner
		for off := 0; off < len(data); off += size {
			s.Feed(data[off:min(off+size, len(data))])
		}
		if !s.SawUsage() {
			b.Fatal("no usage")
		}
	}
}

// BenchmarkJSONScan4K feeds a 4 KiB response in 4 chunks to a fresh scanner.
func BenchmarkJSONScan4K(b *testing.B) {
	data := response4K()
	size := len(data)/4 + 1
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var s JSONUsageScanner
		for off := 0; off < len(data); off += size {
			s.Feed(data[off:min(off+size, len(data))])
		}
		if !s.SawUsage() {
			b.Fatal("no usage")
		}
	}
}

// BenchmarkJSONScanUsageOnly scans a short answer that is mostly its usage
// object, with a reused scanner as the filter uses it: the per-response cost
// when the answer itself is small.
func BenchmarkJSONScanUsageOnly(b *testing.B) {
	data := []byte(`{"id":"x","model":"gpt-4.1","usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}`)
	var s JSONUsageScanner
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s.Reset()
		s.Feed(data)
		if !s.SawUsage() {
			b.Fatal("no usage")
		}
	}
}

// chatBody is a chat request of about size bytes in messages of about msgLen
// bytes of content each: the shape of a long-context request.
func chatBody(size, msgLen int) []byte {
	b := []byte(`{"model":"fast","max_tokens":100,"stream":false,"messages":[`)
	line := []byte("Tell me about the shepherds of the mesh and their flocks of tokens. ")
	for i := 0; len(b) < size; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"role":"user","content":"`...)
		for n := 0; n < msgLen; n += len(line) {
			b = append(b, line...)
		}
		b = append(b, `"}`...)
	}
	return append(b, `]}`...)
}

// BenchmarkInspectRequestSizes is InspectRequest along the body sizes of the
// curve in e2e BenchmarkCurves, in messages of 1 KiB.
func BenchmarkInspectRequestSizes(b *testing.B) {
	for _, size := range []int{8 << 10, 64 << 10, 1 << 20} {
		body := chatBody(size, 1<<10)
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := InspectRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInspectRequestMessages is InspectRequest on 64 KiB of prompt in 1,
// 100 and 1000 messages.
func BenchmarkInspectRequestMessages(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		body := chatBody(64<<10, (64<<10)/n-40)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := InspectRequest(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSSEEventPerChunk scans a 202-event chat stream one event per
// chunk, as a provider sends while it generates and as the filter's body
// callback sees it, with one scanner reused across streams as the filter
// reuses it: feed (the client asked for usage), strip (the filter asked and
// removes the usage chunk) and strip-null (every chunk also carries
// "usage":null, cut from each). It reports the time per event.
func BenchmarkSSEEventPerChunk(b *testing.B) {
	for _, tc := range []struct {
		name  string
		null  bool
		strip bool
	}{
		{"feed", false, false},
		{"strip", false, true},
		{"strip-null", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			events := splitEvents(sse200())
			if !tc.null {
				for i, ev := range events {
					events[i] = bytes.Replace(ev, []byte(`,"usage":null`), nil, 1)
				}
			}
			var s SSEScanner
			// Each event in a buffer of its own, as the host hands it over:
			// Edit cuts in place.
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				s.Reset()
				s.Strip = tc.strip
				for i, ev := range events {
					s.Edit(append(buf[:0], ev...), i == len(events)-1)
				}
				if !s.SawUsage() {
					b.Fatal("no usage")
				}
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*len(events)), "ns/event")
		})
	}
}

// splitEvents cuts an event stream after each blank line.
func splitEvents(data []byte) [][]byte {
	var evs [][]byte
	for len(data) > 0 {
		n := bytes.Index(data, []byte("\n\n"))
		if n < 0 {
			return append(evs, data)
		}
		evs, data = append(evs, data[:n+2]), data[n+2:]
	}
	return evs
}
