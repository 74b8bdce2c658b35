package fakeprovider

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func post(t *testing.T, url, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestJSONCompletionEchoesAndReportsUsage(t *testing.T) {
	p := New(Options{Name: "alpha", APIKey: "k1", Words: 5})
	srv := httptest.NewServer(p)
	defer srv.Close()

	resp := post(t, srv.URL, `{"model":"gpt-4.1","max_tokens":3,"messages":[{"role":"user","content":"hello there"}]}`,
		map[string]string{"Authorization": "Bearer k1"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Model   string `json:"model"`
		Usage   Usage  `json:"usage"`
		Echo    Echo   `json:"x_echo"`
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "gpt-4.1", out.Model)
	require.Equal(t, 3, out.Usage.CompletionTokens, "max_tokens caps the completion")
	require.Equal(t, out.Usage.PromptTokens+3, out.Usage.TotalTokens)
	require.Equal(t, "alpha", out.Echo.Provider)
	require.Equal(t, "/v1/chat/completions", out.Echo.Path)
	require.Len(t, strings.Fields(out.Choices[0].Message.Content), 3)
	require.EqualValues(t, 1, p.Requests())
	require.True(t, p.Last().Authorization)
}

func TestWrongKeyIs401(t *testing.T) {
	srv := httptest.NewServer(New(Options{APIKey: "k1"}))
	defer srv.Close()
	resp := post(t, srv.URL, `{"model":"m"}`, map[string]string{"Authorization": "Bearer nope"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	b, _ := io.ReadAll(resp.Body)
	require.Contains(t, string(b), `"code":"invalid_api_key"`)
	require.NotContains(t, string(b), "nope")
}

func TestStreamWithUsage(t *testing.T) {
	srv := httptest.NewServer(New(Options{Words: 4}))
	defer srv.Close()
	resp := post(t, srv.URL, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, line)
		}
	}
	// role chunk, 4 words, finish chunk, usage chunk, [DONE]
	require.Len(t, events, 8)
	require.Equal(t, "[DONE]", events[7])
	require.Contains(t, events[6], `"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}`)
}

func TestFaultsByHeaderAndScript(t *testing.T) {
	p := New(Options{})
	srv := httptest.NewServer(p)
	defer srv.Close()

	resp := post(t, srv.URL, `{"model":"m"}`, map[string]string{"x-fake-status": "429", "x-fake-retry-after": "2"})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "2", resp.Header.Get("Retry-After"))

	p.Script(Fault{Status: 503}, Fault{})
	require.Equal(t, http.StatusServiceUnavailable, post(t, srv.URL, `{"model":"m"}`, nil).StatusCode)
	require.Equal(t, http.StatusOK, post(t, srv.URL, `{"model":"m"}`, nil).StatusCode)
	require.Equal(t, http.StatusOK, post(t, srv.URL, `{"model":"m"}`, nil).StatusCode, "script exhausted")
}

func TestStreamReset(t *testing.T) {
	srv := httptest.NewServer(New(Options{Words: 10}))
	defer srv.Close()
	resp := post(t, srv.URL, `{"model":"m","stream":true}`, map[string]string{"x-fake-reset-after-chunks": "3"})
	_, err := io.ReadAll(resp.Body)
	require.Error(t, err, "the connection is dropped mid-stream")
}

func TestBadRequests(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	require.Equal(t, http.StatusBadRequest, post(t, srv.URL, `{not json`, nil).StatusCode)
	require.Equal(t, http.StatusBadRequest, post(t, srv.URL, `{}`, nil).StatusCode)
}

func TestRateFaultsAreEvenAndExact(t *testing.T) {
	p := New(Options{ThrottlePercent: 20, ErrorPercent: 10})
	srv := httptest.NewServer(p)
	defer srv.Close()
	counts := map[int]int{}
	for i := 0; i < 100; i++ {
		counts[post(t, srv.URL, `{"model":"m"}`, nil).StatusCode]++
	}
	require.Equal(t, map[int]int{200: 70, 429: 20, 503: 10}, counts)
}

func TestMalformedAndOversizedAnswers(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	resp := post(t, srv.URL, `{"model":"m"}`, map[string]string{"x-fake-malformed": "1"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, _ := io.ReadAll(resp.Body)
	require.False(t, json.Valid(b))

	resp = post(t, srv.URL, `{"model":"m"}`, map[string]string{"x-fake-body-bytes": "1048576"})
	b, _ = io.ReadAll(resp.Body)
	require.GreaterOrEqual(t, len(b), 1<<20)
	require.True(t, json.Valid(b))
}
