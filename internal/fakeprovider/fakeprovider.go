// Package fakeprovider is an OpenAI-compatible server for tests and the local
// mesh: chat completions, the Responses API and embeddings, in the shapes
// api.openai.com answers them. It answers JSON and server-sent-event streams with usage,
// echoes what it received (host, path, model) so rewrites can be seen, checks the
// credential when it has one, and misbehaves on demand: per request through
// x-fake-* headers, or for the next N requests through Script.
//
// Request headers it understands:
//
//	x-fake-status: 429            answer with this status and an OpenAI error body
//	x-fake-retry-after: 2         with a Retry-After header
//	x-fake-delay-ms: 150          wait before answering
//	x-fake-chunk-delay-ms: 20     wait between stream chunks
//	x-fake-reset-after-chunks: 3  drop the connection after this many stream chunks
//	x-fake-malformed: 1           answer 200 with a body that is not valid JSON
//	x-fake-body-bytes: 10485760   pad the JSON answer with this many bytes
//	x-fake-cached-tokens: 4       Responses: report this many cached input tokens
//	x-fake-reasoning-tokens: 3    Responses: this many of the output tokens are reasoning
//	x-fake-response-failed: 1     Responses: end the stream with response.failed
package fakeprovider

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is a scripted misbehaviour for one request.
type Fault struct {
	Status     int           // answer with this status (0: answer normally)
	RetryAfter string        // Retry-After header value, if any
	Delay      time.Duration // wait before answering
	ResetAfter int           // for streams: drop the connection after this many chunks (0: never)
	Malformed  bool          // answer 200 with a body that is not valid JSON
	BodyBytes  int           // pad a JSON answer with this many bytes
	// Header are response headers to send, whatever the status (such as
	// x-ratelimit-remaining-requests and x-ratelimit-reset-requests).
	Header map[string]string
}

// Options configures a Provider.
type Options struct {
	// Name is reported in the x-fake-provider header and the response's
	// system_fingerprint, so tests can tell providers apart.
	Name string
	// APIKey, when set, is required as "Authorization: Bearer <APIKey>".
	APIKey string
	// Words is how many words a completion has before max_tokens cuts it (default 12).
	Words int
	// ThrottlePercent of requests (spread evenly, deterministically) get 429 with
	// Retry-After: 1, as a provider at its rate limit answers.
	ThrottlePercent int
	// ErrorPercent of requests get 503.
	ErrorPercent int
}

// Provider is an http.Handler serving /v1/chat/completions-style paths (any path
// ending in /chat/completions, /responses or /embeddings) and /v1/models.
type Provider struct {
	opts     Options
	requests atomic.Int64
	bodies   atomic.Int64

	mu       sync.Mutex
	script   []Fault
	arrivals []time.Time
	last     Received
}

// Received is what the provider saw of the last request (other than GET
// /v1/models).
type Received struct {
	Host          string
	Path          string
	Model         string
	Authorization bool // whether an authorization header was present
	Header        http.Header
	Body          []byte
}

// New returns a provider.
func New(opts Options) *Provider {
	if opts.Name == "" {
		opts.Name = "fake"
	}
	if opts.Words <= 0 {
		opts.Words = 12
	}
	return &Provider{opts: opts}
}

// Script queues faults for the next requests, one each, in order.
func (p *Provider) Script(faults ...Fault) {
	p.mu.Lock()
	p.script = append(p.script, faults...)
	p.mu.Unlock()
}

// maxArrivals bounds the arrival times a provider keeps.
const maxArrivals = 4096

// Arrivals returns when each inference request (the first maxArrivals)
// arrived, in order.
func (p *Provider) Arrivals() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.arrivals...)
}

// Requests is the number of inference requests that reached the provider,
// including those cancelled before their body arrived.
func (p *Provider) Requests() int64 { return p.requests.Load() }

// Bodies is the number of inference requests whose whole body arrived: the
// requests a real provider would have worked on (and billed).
func (p *Provider) Bodies() int64 { return p.bodies.Load() }

// Last returns what the last request carried.
func (p *Provider) Last() Received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

type chatRequest struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	MaxTokens     *int   `json:"max_tokens"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// Usage is the OpenAI usage object.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Echo is what the provider reports having received, in every response.
type Echo struct {
	Provider string `json:"provider"`
	Host     string `json:"host"`
	Path     string `json:"path"`
	Model    string `json:"model"`
}

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-fake-provider", p.opts.Name)
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/models"):
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]any{
			{"id": "gpt-4.1", "object": "model", "owned_by": p.opts.Name},
		}})
	case strings.HasSuffix(r.URL.Path, "/chat/completions"):
		p.chat(w, r)
	case strings.HasSuffix(r.URL.Path, "/responses"):
		p.responses(w, r)
	case strings.HasSuffix(r.URL.Path, "/embeddings"):
		p.embeddings(w, r)
	default:
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		p.mu.Lock()
		p.last = Received{Host: r.Host, Path: r.URL.Path, Authorization: r.Header.Get("Authorization") != "", Header: r.Header.Clone(), Body: body}
		p.mu.Unlock()
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path, "invalid_request_error", "not_found")
	}
}

func (p *Provider) nextFault(r *http.Request, n int64) Fault {
	p.mu.Lock()
	var f Fault
	if len(p.script) > 0 {
		f = p.script[0]
		p.script = p.script[1:]
	}
	p.mu.Unlock()
	// Spread rate faults evenly: request n falls in bucket (n*37) mod 100, which
	// visits every bucket once per hundred requests.
	bucket := int((n * 37) % 100)
	switch {
	case bucket < p.opts.ThrottlePercent:
		f.Status, f.RetryAfter = http.StatusTooManyRequests, "1"
	case bucket < p.opts.ThrottlePercent+p.opts.ErrorPercent:
		f.Status = http.StatusServiceUnavailable
	}
	if v, err := strconv.Atoi(r.Header.Get("x-fake-status")); err == nil {
		f.Status = v
	}
	if v := r.Header.Get("x-fake-retry-after"); v != "" {
		f.RetryAfter = v
	}
	if v, err := strconv.Atoi(r.Header.Get("x-fake-delay-ms")); err == nil {
		f.Delay = time.Duration(v) * time.Millisecond
	}
	if v, err := strconv.Atoi(r.Header.Get("x-fake-reset-after-chunks")); err == nil {
		f.ResetAfter = v
	}
	if r.Header.Get("x-fake-malformed") != "" {
		f.Malformed = true
	}
	if v, err := strconv.Atoi(r.Header.Get("x-fake-body-bytes")); err == nil && v > 0 {
		f.BodyBytes = min(v, 64<<20)
	}
	return f
}

// accept runs what every inference endpoint does before it answers: it reads
// and records the request, checks the credential, the method, the JSON and
// the model, and plays the request's fault. ok is false when it answered.
func (p *Provider) accept(w http.ResponseWriter, r *http.Request, req any, model func() string) (f Fault, ok bool) {
	n := p.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "could not read the body", "invalid_request_error", "bad_body")
		return f, false
	}
	p.bodies.Add(1)
	jsonErr := json.Unmarshal(body, req)
	p.mu.Lock()
	p.last = Received{Host: r.Host, Path: r.URL.Path, Model: model(), Authorization: r.Header.Get("Authorization") != "", Header: r.Header.Clone(), Body: body}
	if len(p.arrivals) < maxArrivals {
		p.arrivals = append(p.arrivals, time.Now())
	}
	p.mu.Unlock()

	if p.opts.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+p.opts.APIKey {
		writeError(w, http.StatusUnauthorized, "incorrect API key provided", "invalid_request_error", "invalid_api_key")
		return f, false
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "use POST", "invalid_request_error", "method_not_allowed")
		return f, false
	}
	if jsonErr != nil {
		writeError(w, http.StatusBadRequest, "the body is not valid JSON", "invalid_request_error", "invalid_json")
		return f, false
	}
	if model() == "" {
		writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", "missing_model")
		return f, false
	}

	f = p.nextFault(r, n)
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return f, false
		}
	}
	w.Header().Set("x-ratelimit-remaining-requests", "999")
	for k, v := range f.Header {
		w.Header().Set(k, v)
	}
	if f.Status != 0 && f.Status != http.StatusOK {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		writeError(w, f.Status, fmt.Sprintf("%s answered %d", p.opts.Name, f.Status), errorType(f.Status), strconv.Itoa(f.Status))
		return f, false
	}
	if f.Malformed {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-broken","choices":[{"message":{"content":"trunc`)
		return f, false
	}
	return f, true
}

func (p *Provider) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	f, ok := p.accept(w, r, &req, func() string { return req.Model })
	if !ok {
		return
	}
	words := p.opts.Words
	if req.MaxTokens != nil && *req.MaxTokens >= 0 && *req.MaxTokens < words {
		words = *req.MaxTokens
	}
	usage := Usage{PromptTokens: promptTokens(req), CompletionTokens: words}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	echo := Echo{Provider: p.opts.Name, Host: r.Host, Path: r.URL.Path, Model: req.Model}

	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		chunkDelay := time.Duration(0)
		if v, err := strconv.Atoi(r.Header.Get("x-fake-chunk-delay-ms")); err == nil {
			chunkDelay = time.Duration(v) * time.Millisecond
		}
		p.stream(w, r, echo, words, usage, includeUsage, chunkDelay, f.ResetAfter)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id":                 "chatcmpl-fake-" + strconv.FormatInt(p.requests.Load(), 10),
		"object":             "chat.completion",
		"created":            time.Now().Unix(),
		"model":              req.Model,
		"system_fingerprint": p.opts.Name,
		"choices": []map[string]any{{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": text(words)},
			"finish_reason": "stop",
		}},
		"usage":  usage,
		"x_echo": echo,
		"x_pad":  strings.Repeat(" ", max(0, f.BodyBytes)),
	})
}

func (p *Provider) stream(w http.ResponseWriter, r *http.Request, echo Echo, words int, usage Usage, includeUsage bool, delay time.Duration, resetAfter int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	id := "chatcmpl-fake-" + strconv.FormatInt(p.requests.Load(), 10)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "model": echo.Model,
			"system_fingerprint": p.opts.Name,
			"choices":            []map[string]any{{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	first := chunk(map[string]any{"role": "assistant", "content": ""}, nil)
	first["x_echo"] = echo
	send(first)
	for i := 0; i < words; i++ {
		if resetAfter > 0 && i+1 >= resetAfter {
			abort(w)
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		send(chunk(map[string]any{"content": word(i) + " "}, nil))
	}
	send(chunk(map[string]any{}, "stop"))
	if includeUsage {
		send(map[string]any{"id": id, "object": "chat.completion.chunk", "model": echo.Model, "choices": []any{}, "usage": usage})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

// abort drops the connection mid-response, as a provider that resets would.
func abort(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func errorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// promptTokens estimates tokens as a real tokenizer roughly would: a token per four
// bytes of message content, at least one per message.
func promptTokens(req chatRequest) int {
	n := 0
	for _, m := range req.Messages {
		n += 1 + len(m.Content)/4
	}
	if n == 0 {
		n = 1
	}
	return n
}

var vocabulary = strings.Fields("shepherd herds tokens across the mesh quietly and the flock arrives at the cheapest pasture")

func word(i int) string { return vocabulary[i%len(vocabulary)] }

func text(words int) string {
	parts := make([]string, words)
	for i := range parts {
		parts[i] = word(i)
	}
	return strings.Join(parts, " ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg, typ, code string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": code}})
}
