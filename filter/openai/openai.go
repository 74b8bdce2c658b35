// Package openai holds what the filter says in OpenAI's wire shapes: the error body
// of local replies and the rate limit headers clients already understand.
package openai

import "github.com/shepherd-mesh/shepherd/filter/jsonlite"

// Error types OpenAI uses in error bodies.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeRateLimit      = "rate_limit_exceeded"
	TypeServer         = "server_error"
)

// ErrorBody returns {"error":{"message":...,"type":...,"code":...}}, the body
// OpenAI-compatible clients parse on any non-2xx answer. An empty code is sent as
// null, as OpenAI does.
func ErrorBody(message, typ, code string) []byte {
	return AppendErrorBody(make([]byte, 0, 64+len(message)), message, typ, code)
}

// AppendErrorBody appends ErrorBody(message, typ, code) to dst.
func AppendErrorBody(dst []byte, message, typ, code string) []byte {
	b := append(dst, `{"error":{"message":`...)
	b = jsonlite.AppendString(b, message)
	b = append(b, `,"type":`...)
	b = jsonlite.AppendString(b, typ)
	b = append(b, `,"code":`...)
	if code == "" {
		b = append(b, "null"...)
	} else {
		b = jsonlite.AppendString(b, code)
	}
	return append(b, "}}"...)
}

// JSONHeaders are the headers of a local reply with an ErrorBody.
var JSONHeaders = [][2]string{{"content-type", "application/json"}}

// ShouldRetryHeader tells OpenAI's SDKs whether to retry an answer, over their
// own judgement of its status: "true" retries, "false" does not (openai-go/v3
// internal/requestconfig shouldRetry; the Node package's client.ts
// shouldRetry). Without it both retry 408, 409, 429 and 5xx twice.
const ShouldRetryHeader = "x-should-retry"

// The header pairs of the two hints.
var (
	Retry   = [2]string{ShouldRetryHeader, "true"}
	NoRetry = [2]string{ShouldRetryHeader, "false"}
)

// MaxRetryWaitNs is the longest wait after which a local 429 still invites an
// SDK to retry by itself (60 s). The Node package sleeps whatever Retry-After
// says, however long, and openai-go gives up beyond two minutes: a longer
// wait (a global limit's hour or day window) is left to the application.
const MaxRetryWaitNs = 60_000_000_000
