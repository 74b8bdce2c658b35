package main

import (
	"errors"
	"strconv"

	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/openai"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// reply sends a local reply in OpenAI's error shape. Envoy sends it after the
// current callback returns; the stream stops here.
func (s *stream) reply(status int, headers [][2]string, message, typ, code string) types.Action {
	s.replied, s.localStatus = true, status
	headers = append(headers, openai.JSONHeaders...)
	if err := proxywasm.SendHttpResponse(uint32(status), headers, openai.ErrorBody(message, typ, code), -1); err != nil {
		proxywasm.LogError("shepherd: sending a local reply: " + err.Error())
		return types.ActionContinue
	}
	return types.ActionPause
}

// rateLimited answers 429 with Retry-After and OpenAI's x-ratelimit-* headers.
func (s *stream) rateLimited(kind limits.Kind, d limits.Decision) types.Action {
	return s.rateLimitedAs(kind, d, uint8(kind), "")
}

// rateLimitedAs is rateLimited for a limit counted under metric kind extra,
// with scope ("global " or "") in the message.
func (s *stream) rateLimitedAs(kind limits.Kind, d limits.Decision, extra uint8, scope string) types.Action {
	r := s.decision.Route
	s.policy.metrics.count(metricKey{kind: mRateLimited, route: int16(r.Index), extra: extra}, 1)
	hdrs := make([][2]string, 0, 8)
	hdrs = limits.AppendRetryAfter(hdrs, d)
	hdrs = limits.AppendHeaders(hdrs, kind, d)
	what := "requests"
	if kind == limits.Tokens {
		what = "tokens"
	}
	s.localReason = localRateLimit
	msg := scope + "rate limit reached for " + what + " per minute on route " + r.Name
	if d.TooLarge {
		msg = "request needs more tokens than the per-minute limit of route " + r.Name + " allows"
	}
	return s.reply(429, hdrs, msg, openai.TypeRateLimit, "rate_limit_exceeded")
}

func (s *stream) tooLarge() types.Action {
	s.localReason = localTooLarge
	return s.reply(413, nil, "request body is larger than the "+strconv.Itoa(s.decision.Route.MaxBodyBytes)+" bytes route "+s.decision.Route.Name+" accepts",
		openai.TypeInvalidRequest, "request_too_large")
}

// errEmptyBody is the error of an inference call that came without a body.
var errEmptyBody = errors.New("invalid json at offset 0: empty body")

// invalidBody answers a request body that is not the JSON object the call
// needs, in one sentence: "request body: " and what InspectRequest found.
func (s *stream) invalidBody(err error) types.Action {
	return s.badRequest("request body: "+err.Error(), "invalid_json")
}

func (s *stream) badRequest(msg, code string) types.Action {
	s.localReason = localInvalid
	return s.reply(400, nil, msg, openai.TypeInvalidRequest, code)
}

// unsupported answers a request whose operation no provider of its route
// serves, as OpenAI answers a path it does not know.
func (s *stream) unsupported() types.Action {
	return s.reply(404, nil, "route "+s.decision.Route.Name+" has no provider for the "+s.call.Op.String()+" operation",
		openai.TypeInvalidRequest, "unsupported_operation")
}
