// Package body reads and edits the bodies of OpenAI-compatible chat completion
// requests and scans their responses for token usage, without buffering more than
// it needs and without allocating on the read path.
//
// # Requests
//
// The filter buffers a request body only when the route needs it. InspectRequest
// then checks the whole body's JSON structure (validating whole only the strings
// it reads: top-level names and the members below; other strings are found by
// their quotes and not looked inside) and reads the top-level members that
// matter to routing and limits: model (with the byte offsets of its value token),
// stream, max_tokens, max_completion_tokens, stream_options.include_usage, and the
// size of the message text for EstimatePromptTokens. Nothing nested is
// interpreted: a "model" key inside a message or a tool schema is not the model.
//
// Members are matched by their decoded name, case-sensitively (OpenAI's servers are
// case-sensitive; encoding/json would also match "Model"). When a member appears
// twice the last one wins, as with encoding/json and with the JSON parsers of the
// usual upstream servers; Request.DuplicateModel tells the caller that a body named
// its model more than once, so that it can refuse it.
//
// RewriteModel, SetModel and EnsureIncludeUsage edit the body by splicing: every
// byte outside the edited token is copied unchanged, and the output is built with a
// single allocation. AppendAppliedPrefix builds only the edited start of the body,
// for a host that replaces a buffer's prefix.
//
// # Responses
//
// Response bodies are never held back. SSEScanner and JSONUsageScanner are fed
// the body chunk by chunk as it passes through the proxy and keep only what they
// need: the SSE scanner keeps one event's data (up to a limit), the JSON scanner
// keeps only the top-level "usage" and "model" values (up to a limit). Both are
// byte-driven state machines, so a body split anywhere gives the same result as
// the body in one piece.
//
// Usage accepts both the chat completions names (prompt_tokens,
// completion_tokens, total_tokens, prompt_tokens_details.cached_tokens) and the
// Responses API names (input_tokens, output_tokens, input_tokens_details.
// cached_tokens).
//
// # Cost
//
// The package imports only errors, bytes and jsonlite: it runs inside the Wasm
// filter on every request. The read paths allocate nothing per request
// (InspectRequest at all; the scanners once per response for their buffer and
// the model name); an edit allocates its output once.
package body
