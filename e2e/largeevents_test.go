package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/promtext"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

// largeEventUpstream streams a chat answer whose second event is one
// eventBytes-byte event, then the usage chunk and [DONE], in 16 KiB writes.
type largeEventUpstream struct{ stream []byte }

const largeEventBytes = 1_000_000

func newLargeEventUpstream() *largeEventUpstream {
	pad := largeEventBytes - len(`data: {"choices":[{"index":0,"delta":{"content":""}}]}`+"\n\n")
	stream := "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\n\n" +
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + strings.Repeat("x", pad) + "\"}}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n" +
		"data: [DONE]\n\n"
	return &largeEventUpstream{stream: []byte(stream)}
}

func (u *largeEventUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("content-type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for off := 0; off < len(u.stream); off += 16 << 10 {
		if _, err := w.Write(u.stream[off:min(off+16<<10, len(u.stream))]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}

// TestLargeStreamEventsStayBounded: 150 concurrent streams, each with one
// event of 1 MB, leave every VM under 32 MiB (the scanner keeps at most 64
// KiB of an event and passes larger ones unread), reach their clients byte
// for byte (a client that asked for usage gets the stream as sent; one that
// did not, the stream without the usage chunk), are counted as skipped
// events, and still have their usage counted.
func TestLargeStreamEventsStayBounded(t *testing.T) {
	up := newLargeEventUpstream()
	h, err := envoy.New(context.Background(), envoy.Config{
		Module: module(t), PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
		PluginConfig: []byte(`{"models":{"m":{}},"providers":[{"name":"p","host":"p.example.com","cluster":"p"}],` +
			`"routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`),
		Workers: 2, Clusters: map[string]string{"p": scenario.Upstream(t, up)}, DefaultCluster: "p",
		StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache,
	})
	require.NoError(t, err)
	defer h.Close(context.Background())
	front := httptest.NewServer(h)
	defer front.Close()

	full := string(up.stream)
	stripped := strings.Replace(full, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n", "", 1)
	const streams = 150
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			asks := i%2 == 0
			body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
			want := stripped
			if asks {
				body = `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
				want = full
			}
			resp, err := http.Post(front.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- err
			case resp.StatusCode != http.StatusOK:
				errs <- fmt.Errorf("stream %d: status %d", i, resp.StatusCode)
			case string(got) != want:
				errs <- fmt.Errorf("stream %d: %d bytes differ from the %d expected", i, len(got), len(want))
			default:
				errs <- nil
			}
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("streams did not finish")
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	for _, vm := range h.VMStats() {
		require.Zero(t, vm.Traps)
		require.Less(t, vm.MemoryBytes, uint64(32<<20), "VM %d: %d MiB", vm.Index, vm.MemoryBytes>>20)
		t.Logf("VM %d: %d MiB of linear memory", vm.Index, vm.MemoryBytes>>20)
	}
	// A stream is counted when the proxy finishes it, which can come just
	// after its client read the last byte, and the VM memory gauge is set
	// from the plugin's tick: wait for both (the assertions below say which
	// failed).
	var text strings.Builder
	var samples []promtext.Sample
	deadline := time.Now().Add(5 * time.Second)
	for {
		text.Reset()
		h.WritePrometheus(&text)
		samples = promtext.Parse(strings.NewReader(text.String()))
		skipped, _ := promtext.Find(samples, "shepherd_stream_events_skipped_total", map[string]string{"route": "chat"})
		_, gauge := promtext.Find(samples, "shepherd_vm_memory_bytes", nil)
		if skipped >= streams && gauge || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	skipped, ok := promtext.Find(samples, "shepherd_stream_events_skipped_total", map[string]string{"route": "chat"})
	require.True(t, ok, text.String())
	require.EqualValues(t, streams, skipped)
	out, ok := promtext.Find(samples, "shepherd_tokens_total", map[string]string{"route": "chat", "provider": "p", "model": "m", "type": "output"})
	require.True(t, ok)
	require.EqualValues(t, 7*streams, out, "usage is counted on every stream")
	mem, ok := promtext.Find(samples, "shepherd_vm_memory_bytes", nil)
	require.True(t, ok, "the filter reports its VM memory")
	require.Positive(t, mem)
	require.Less(t, mem, float64(32<<20))
}
