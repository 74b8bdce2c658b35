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
//
// Every local reply tells OpenAI's SDKs whether to retry it (x-should-retry):
// headers that carry the hint keep it; any other reply says "false", since
// nothing but waiting out a rate limit changes the filter's answer (a budget, a
// bad or oversized body, a limiter that is down on a fail-closed route).
func (s *stream) reply(status int, headers [][2]string, message, typ, code string) types.Action {
	s.replied, s.localStatus = true, status
	if !hasHeader(headers, openai.ShouldRetryHeader) {
		headers = append(headers, openai.NoRetry)
	}
	headers = append(headers, openai.JSONHeaders...)
	// The body goes to the plugin's buffer; the host copies it.
	body := openai.AppendErrorBody(s.plugin.replyBody[:0], message, typ, code)
	err := proxywasm.SendHttpResponse(uint32(status), headers, body, -1)
	if cap(body) <= maxReplyBody {
		s.plugin.replyBody = body[:0]
	}
	if err != nil {
		proxywasm.LogError("shepherd: sending a local reply: " + err.Error())
		return types.ActionContinue
	}
	return types.ActionPause
}

// maxReplyBody bounds the reply buffer a VM keeps between replies.
const maxReplyBody = 4 << 10

// rateLimited answers 429 with Retry-After and OpenAI's x-ratelimit-* headers.
func (s *stream) rateLimited(kind limits.Kind, d limits.Decision) types.Action {
	return s.rateLimitedAs(kind, d, limitLabel(kind, false), "")
}

// rateLimitedAs is rateLimited for a limit counted under kind label index
// extra (limitKinds), with scope ("global " or "") in the message. The answer
// invites a retry (x-should-retry: true, the exact wait in retry-after-ms) when
// waiting helps and the wait is short enough for an SDK to sleep through; a
// request larger than the limit, or a wait past openai.MaxRetryWaitNs, says not
// to.
func (s *stream) rateLimitedAs(kind limits.Kind, d limits.Decision, extra uint8, scope string) types.Action {
	r := s.decision.Route
	s.policy.metrics.count(metricKey{kind: mRateLimited, route: int16(r.Index), extra: extra}, 1)
	// The headers and their values go to the plugin's buffers: the host
	// copies them when the reply is sent.
	p := s.plugin
	hdrs := p.replyHeaders[:0]
	if cap(hdrs) < 8 { // 6 here, content-type in reply
		hdrs = make([][2]string, 0, 8)
	}
	hdrs, p.replyValues = limits.AppendRefusalHeaders(hdrs, p.replyValues, kind, d)
	if d.TooLarge || d.RetryAfter > openai.MaxRetryWaitNs {
		hdrs = append(hdrs, openai.NoRetry)
	} else {
		hdrs = append(hdrs, openai.Retry)
	}
	what := "requests"
	if kind == limits.Tokens {
		what = "tokens"
	}
	s.localReason = localRateLimit
	msg := scope + "rate limit reached for " + what + " per minute on route " + r.Name
	if d.TooLarge {
		msg = "request needs more tokens than the per-minute limit of route " + r.Name + " allows"
	}
	action := s.reply(429, hdrs, msg, openai.TypeRateLimit, "rate_limit_exceeded")
	p.keepReplyHeaders(hdrs)
	return action
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

// hasHeader reports whether hdrs has a header named k.
func hasHeader(hdrs [][2]string, k string) bool {
	for _, kv := range hdrs {
		if kv[0] == k {
			return true
		}
	}
	return false
}
