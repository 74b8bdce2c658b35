package fakeprovider

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ResponsesUsage is the usage object of the Responses API.
type ResponsesUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

type responsesRequest struct {
	Model           string          `json:"model"`
	Input           json.RawMessage `json:"input"`
	Instructions    string          `json:"instructions"`
	Stream          bool            `json:"stream"`
	MaxOutputTokens *int            `json:"max_output_tokens"`
}

// responses answers POST /v1/responses as api.openai.com does: a response
// object, or a stream of typed events (response.created, response.in_progress,
// the output item and text events, then response.completed, or
// response.incomplete when max_output_tokens cut the text, or response.failed
// on x-fake-response-failed) whose last event carries the usage. A Responses
// stream has no [DONE] event.
func (p *Provider) responses(w http.ResponseWriter, r *http.Request) {
	var req responsesRequest
	_, ok := p.accept(w, r, &req, func() string { return req.Model })
	if !ok {
		return
	}
	words, incomplete := p.opts.Words, false
	if req.MaxOutputTokens != nil && *req.MaxOutputTokens >= 0 && *req.MaxOutputTokens < words {
		words, incomplete = *req.MaxOutputTokens, true
	}
	var u ResponsesUsage
	u.InputTokens = 1 + (len(req.Input)+len(req.Instructions))/4
	u.InputTokensDetails.CachedTokens = min(headerInt(r, "x-fake-cached-tokens"), u.InputTokens)
	reasoning := headerInt(r, "x-fake-reasoning-tokens")
	u.OutputTokens = words + reasoning
	u.OutputTokensDetails.ReasoningTokens = reasoning
	u.TotalTokens = u.InputTokens + u.OutputTokens
	n := strconv.FormatInt(p.requests.Load(), 10)
	echo := Echo{Provider: p.opts.Name, Host: r.Host, Path: r.URL.Path, Model: req.Model}
	resp := responseObject("resp_fake"+n, req, echo)
	item := map[string]any{"id": "msg_fake" + n, "type": "message", "status": "completed", "role": "assistant",
		"content": []any{map[string]any{"type": "output_text", "text": text(words), "annotations": []any{}}}}
	status := "completed"
	if incomplete {
		status = "incomplete"
		resp["incomplete_details"] = map[string]any{"reason": "max_output_tokens"}
		item["status"] = "incomplete"
	}
	if !req.Stream {
		resp["status"], resp["output"], resp["usage"] = status, []any{item}, u
		writeJSON(w, http.StatusOK, resp)
		return
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	seq := 0
	send := func(typ string, fields map[string]any) {
		fields["type"], fields["sequence_number"] = typ, seq
		seq++
		b, _ := json.Marshal(fields)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	delay := time.Duration(headerInt(r, "x-fake-chunk-delay-ms")) * time.Millisecond
	resp["status"] = "in_progress"
	send("response.created", map[string]any{"response": resp})
	send("response.in_progress", map[string]any{"response": resp})
	itemID := item["id"]
	send("response.output_item.added", map[string]any{"output_index": 0,
		"item": map[string]any{"id": itemID, "type": "message", "status": "in_progress", "role": "assistant", "content": []any{}}})
	send("response.content_part.added", map[string]any{"item_id": itemID, "output_index": 0, "content_index": 0,
		"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}})
	for i := 0; i < words; i++ {
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		d := word(i)
		if i < words-1 {
			d += " "
		}
		send("response.output_text.delta", map[string]any{"item_id": itemID, "output_index": 0, "content_index": 0,
			"delta": d, "logprobs": []any{}})
	}
	full := text(words)
	send("response.output_text.done", map[string]any{"item_id": itemID, "output_index": 0, "content_index": 0, "text": full, "logprobs": []any{}})
	send("response.content_part.done", map[string]any{"item_id": itemID, "output_index": 0, "content_index": 0,
		"part": map[string]any{"type": "output_text", "text": full, "annotations": []any{}}})
	send("response.output_item.done", map[string]any{"output_index": 0, "item": item})
	resp["output"], resp["usage"] = []any{item}, u
	switch {
	case r.Header.Get("x-fake-response-failed") != "":
		resp["status"] = "failed"
		resp["error"] = map[string]any{"code": "server_error", "message": p.opts.Name + " failed the response"}
		send("response.failed", map[string]any{"response": resp})
	case incomplete:
		resp["status"] = "incomplete"
		send("response.incomplete", map[string]any{"response": resp})
	default:
		resp["status"] = "completed"
		send("response.completed", map[string]any{"response": resp})
	}
}

// responseObject is a Response without output, status or usage.
func responseObject(id string, req responsesRequest, echo Echo) map[string]any {
	var instructions any
	if req.Instructions != "" {
		instructions = req.Instructions
	}
	var maxOut any
	if req.MaxOutputTokens != nil {
		maxOut = *req.MaxOutputTokens
	}
	return map[string]any{
		"id": id, "object": "response", "created_at": time.Now().Unix(), "status": "in_progress",
		"background": false, "error": nil, "incomplete_details": nil, "instructions": instructions,
		"max_output_tokens": maxOut, "model": req.Model, "output": []any{}, "parallel_tool_calls": true,
		"previous_response_id": nil, "reasoning": map[string]any{"effort": nil, "summary": nil},
		"store": true, "temperature": 1.0, "text": map[string]any{"format": map[string]any{"type": "text"}},
		"tool_choice": "auto", "tools": []any{}, "top_p": 1.0, "truncation": "disabled", "usage": nil,
		"user": nil, "metadata": map[string]any{}, "x_echo": echo,
	}
}

type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int             `json:"dimensions"`
}

// DefaultDimensions is the length of the fake provider's embeddings when the
// request does not ask for a length.
const DefaultDimensions = 8

// embeddings answers POST /v1/embeddings as api.openai.com does: a list with
// one embedding per input (a string, an array of strings, or token arrays),
// as float arrays or, with encoding_format "base64" (what the SDKs ask for),
// as base64 of little-endian float32s, and usage with prompt_tokens and
// total_tokens.
func (p *Provider) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingsRequest
	_, ok := p.accept(w, r, &req, func() string { return req.Model })
	if !ok {
		return
	}
	var inputs []json.RawMessage
	if len(req.Input) > 0 && req.Input[0] == '[' {
		// An array of strings (or of token arrays), or one token array.
		var items []json.RawMessage
		if err := json.Unmarshal(req.Input, &items); err == nil && len(items) > 0 && items[0][0] != '"' && items[0][0] != '[' {
			inputs = []json.RawMessage{req.Input}
		} else {
			inputs = items
		}
	} else if len(req.Input) > 0 {
		inputs = []json.RawMessage{req.Input}
	}
	if len(inputs) == 0 {
		writeError(w, http.StatusBadRequest, "'input' must be a non-empty string or array", "invalid_request_error", "invalid_input")
		return
	}
	dims := req.Dimensions
	if dims <= 0 {
		dims = DefaultDimensions
	}
	tokens := 0
	data := make([]any, len(inputs))
	for i, in := range inputs {
		tokens += 1 + len(in)/4
		vec := make([]float32, dims)
		for j := range vec {
			vec[j] = float32(math.Sin(float64(len(in)*(j+1)+i))) / 2
		}
		var emb any = vec
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*dims)
			for j, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage":  map[string]any{"prompt_tokens": tokens, "total_tokens": tokens},
		"x_echo": Echo{Provider: p.opts.Name, Host: r.Host, Path: r.URL.Path, Model: req.Model},
	})
}

func headerInt(r *http.Request, name string) int {
	v, err := strconv.Atoi(strings.TrimSpace(r.Header.Get(name)))
	if err != nil || v < 0 {
		return 0
	}
	return v
}
