package body

import (
	"strings"
)

// chatRequest is an OpenAI chat completions request with tools, array content,
// unicode, escaped quotes around the word "model" and nested "model" keys that
// are not the request's model.
const chatRequest = `{
  "messages": [
    {"role": "system", "content": "You are a helpful assistant. Never say \"model\": \"gpt-3\"."},
    {"role": "user", "content": [
      {"type": "text", "text": "What's in this image? Ünïcödé ✓ 日本語 😀"},
      {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low", "model": "not-this"}}
    ]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"model\":\"x\",\"city\":\"Paris\"}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}
  ],
  "tools": [
    {"type": "function", "function": {
      "name": "get_weather",
      "description": "Weather for a city",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "model": {"type": "string"}}, "required": ["city"]}
    }}
  ],
  "metadata": {"model": "nested-is-ignored"},
  "model": "gpt-4o-mini",
  "temperature": 0.2,
  "max_tokens": 512,
  "stream": true
}`

// chatRequestText is the message text of chatRequest that the estimate counts:
// contents and text parts, as written.
var chatRequestText = len(`You are a helpful assistant. Never say \"model\": \"gpt-3\".`) +
	len(`What's in this image? Ünïcödé ✓ 日本語 😀`) +
	len(`{\"temp\": 21}`)

// sseStream is a streamed chat completion with include_usage, as OpenAI sends it.
const sseStream = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
	": keep-alive comment\n\n" +
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"usage\\\" 😀\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\r\n" +
	"data: \"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":7,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\r\n\r\n" +
	"data: [DONE]\n\n"

var sseWant = sseResult{
	Usage: Usage{Input: 19, CachedInput: 7, Output: 10, Total: 29}, SawUsage: true,
	Model: "gpt-4o-mini-2024-07-18", Content: true, Done: true, Events: 6, FirstContentOnce: 1,
}

// jsonResponse is a non-streamed chat completion whose content and tool
// arguments mention "usage" and "model".
const jsonResponse = `{
  "id": "chatcmpl-2",
  "object": "chat.completion",
  "created": 1700000000,
  "model": "gpt-4o-2024-08-06",
  "choices": [{
    "index": 0,
    "message": {"role": "assistant", "content": "The \"usage\": {\"prompt_tokens\": 1} and \\\"model\\\" are words here. 日本語",
      "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"usage\":{\"prompt_tokens\":99}}"}}]},
    "logprobs": null,
    "finish_reason": "stop",
    "usage": {"prompt_tokens": 1000}
  }],
  "usage": {
    "prompt_tokens": 1234,
    "completion_tokens": 56,
    "total_tokens": 1290,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": "fp_1"
}`

var jsonWant = jsonResult{
	Usage:    Usage{Input: 1234, CachedInput: 1024, Output: 56, Total: 1290},
	SawUsage: true, Model: "gpt-4o-2024-08-06",
}

// request8K returns a chat request of about 8 KiB: a conversation of a few
// turns, as typical traffic sends.
func request8K() []byte {
	var b strings.Builder
	b.WriteString(`{"model":"gpt-4o-mini","stream":true,"max_tokens":1024,"temperature":0.7,"messages":[`)
	b.WriteString(`{"role":"system","content":"You are a careful assistant that answers in full sentences."}`)
	turn := strings.Repeat(`Tell me about the \"history\" of the Roman empire, in detail. `, 8)
	for i := 0; b.Len() < 8<<10-600; i++ {
		b.WriteString(`,{"role":"user","content":"`)
		b.WriteString(turn)
		b.WriteString(`"},{"role":"assistant","content":[{"type":"text","text":"`)
		b.WriteString(turn)
		b.WriteString(`"}]}`)
	}
	b.WriteString(`],"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}],"user":"u-123"}`)
	return []byte(b.String())
}

// sse200 returns a stream of 200 content chunks, a usage chunk and [DONE].
func sse200() []byte {
	var b strings.Builder
	for i := 0; i < 200; i++ {
		b.WriteString(`data: {"id":"chatcmpl-3","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}],"usage":null}` + "\n\n")
	}
	b.WriteString(`data: {"id":"chatcmpl-3","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":200,"total_tokens":250}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return []byte(b.String())
}

// response4K returns a non-streamed response of about 4 KiB.
func response4K() []byte {
	content := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 88)
	return []byte(`{"id":"chatcmpl-4","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		content + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":900,"total_tokens":912,"prompt_tokens_details":{"cached_tokens":0}}}`)
}
