package fakeprovider

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// post sends a chat completion; postTo another operation.
func post(t *testing.T, url, body string, hdr map[string]string) *http.Response {
	t.Helper()
	return postTo(t, url, "/v1/chat/completions", body, hdr)
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

func postTo(t *testing.T, url, path, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// sseEvents reads a stream into its events' event names and data.
func sseEvents(t *testing.T, r io.Reader) (names []string, data []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	var name string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			names, data = append(names, name), append(data, strings.TrimPrefix(line, "data: "))
			name = ""
		}
	}
	require.NoError(t, sc.Err())
	return names, data
}

func TestResponsesJSON(t *testing.T) {
	p := New(Options{Name: "alpha", Words: 5})
	srv := httptest.NewServer(p)
	defer srv.Close()
	resp := postTo(t, srv.URL, "/v1/responses", `{"model":"gpt-4.1","input":"hello there, how are you"}`,
		map[string]string{"x-fake-cached-tokens": "2", "x-fake-reasoning-tokens": "3"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Object, Status, Model string
		Output                []struct {
			Type    string
			Content []struct{ Type, Text string }
		}
		Usage ResponsesUsage
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "response", out.Object)
	require.Equal(t, "completed", out.Status)
	require.Equal(t, "gpt-4.1", out.Model)
	require.Equal(t, "output_text", out.Output[0].Content[0].Type)
	require.Len(t, strings.Fields(out.Output[0].Content[0].Text), 5)
	require.Equal(t, 2, out.Usage.InputTokensDetails.CachedTokens)
	require.Equal(t, 8, out.Usage.OutputTokens, "reasoning tokens are part of the output")
	require.Equal(t, 3, out.Usage.OutputTokensDetails.ReasoningTokens)
	require.Equal(t, out.Usage.InputTokens+8, out.Usage.TotalTokens)
	require.Equal(t, "/v1/responses", p.Last().Path)
	require.EqualValues(t, 1, p.Requests())
}

func TestResponsesStream(t *testing.T) {
	tests := []struct {
		name, body string
		hdr        map[string]string
		last       string
		status     string
		words      int
	}{
		{"completed", `{"model":"m","input":"hi","stream":true}`, nil, "response.completed", "completed", 4},
		{"incomplete", `{"model":"m","input":"hi","stream":true,"max_output_tokens":2}`, nil, "response.incomplete", "incomplete", 2},
		{"failed", `{"model":"m","input":"hi","stream":true}`, map[string]string{"x-fake-response-failed": "1"}, "response.failed", "failed", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(New(Options{Words: 4}))
			defer srv.Close()
			resp := postTo(t, srv.URL, "/v1/responses", tt.body, tt.hdr)
			require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
			names, data := sseEvents(t, resp.Body)
			require.Equal(t, "response.created", names[0])
			require.Equal(t, tt.last, names[len(names)-1])
			require.NotContains(t, data, "[DONE]", "a Responses stream has no [DONE]")
			deltas := 0
			for i, d := range data {
				var ev struct {
					Type string
					Seq  int `json:"sequence_number"`
				}
				require.NoError(t, json.Unmarshal([]byte(d), &ev))
				require.Equal(t, names[i], ev.Type, "the event name repeats the data's type")
				require.Equal(t, i, ev.Seq)
				if ev.Type == "response.output_text.delta" {
					deltas++
				}
			}
			require.Equal(t, tt.words, deltas)
			var end struct {
				Response struct {
					Status string
					Usage  *ResponsesUsage
				}
			}
			require.NoError(t, json.Unmarshal([]byte(data[len(data)-1]), &end))
			require.Equal(t, tt.status, end.Response.Status)
			require.NotNil(t, end.Response.Usage)
			require.Equal(t, tt.words, end.Response.Usage.OutputTokens)
		})
	}
}

func TestEmbeddings(t *testing.T) {
	tests := []struct {
		name, body string
		n, dims    int
	}{
		{"one string", `{"model":"text-embedding-3-small","input":"hello"}`, 1, DefaultDimensions},
		{"strings", `{"model":"text-embedding-3-small","input":["a","b","c"],"dimensions":4}`, 3, 4},
		{"tokens", `{"model":"text-embedding-3-small","input":[1,2,3]}`, 1, DefaultDimensions},
		{"token arrays", `{"model":"text-embedding-3-small","input":[[1,2],[3]]}`, 2, DefaultDimensions},
		{"base64", `{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64"}`, 2, DefaultDimensions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(New(Options{}))
			defer srv.Close()
			resp := postTo(t, srv.URL, "/v1/embeddings", tt.body, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var out struct {
				Object, Model string
				Data          []struct {
					Object    string
					Index     int
					Embedding json.RawMessage
				}
				Usage struct {
					PromptTokens int `json:"prompt_tokens"`
					TotalTokens  int `json:"total_tokens"`
				}
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
			require.Equal(t, "list", out.Object)
			require.Equal(t, "text-embedding-3-small", out.Model)
			require.Len(t, out.Data, tt.n)
			for i, d := range out.Data {
				require.Equal(t, "embedding", d.Object)
				require.Equal(t, i, d.Index)
				if strings.Contains(tt.body, "base64") {
					var s string
					require.NoError(t, json.Unmarshal(d.Embedding, &s))
					raw, err := base64.StdEncoding.DecodeString(s)
					require.NoError(t, err)
					require.Len(t, raw, 4*tt.dims)
				} else {
					var v []float64
					require.NoError(t, json.Unmarshal(d.Embedding, &v))
					require.Len(t, v, tt.dims)
				}
			}
			require.Positive(t, out.Usage.PromptTokens)
			require.Equal(t, out.Usage.PromptTokens, out.Usage.TotalTokens)
		})
	}
}
