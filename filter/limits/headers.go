package limits

import "strconv"

// Header names, indexed by Kind.
var (
	limitHeader     = [2]string{"x-ratelimit-limit-requests", "x-ratelimit-limit-tokens"}
	remainingHeader = [2]string{"x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"}
	resetHeader     = [2]string{"x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"}
)

// RetryAfterHeader is the standard header a denied request is answered with.
const RetryAfterHeader = "retry-after"

// RetryAfterMsHeader carries the same wait in milliseconds. OpenAI's SDKs read
// it before Retry-After (openai-go/v3 internal/requestconfig, the Node
// package's client.ts retryRequest), so a client waits the limiter's delay
// rather than a whole second.
const RetryAfterMsHeader = "retry-after-ms"

// AppendHeaders appends OpenAI's three x-ratelimit-*-<kind> headers describing d
// to dst and returns the extended slice: the limit, the whole units remaining
// and the time until the bucket is full again in Go duration style ("1s",
// "6m0s", "20ms"). It allocates the value strings; call it when answering, not
// on the decision path.
func AppendHeaders(dst [][2]string, kind Kind, d Decision) [][2]string {
	var buf [32]byte
	k := kind & 1
	return append(dst,
		[2]string{limitHeader[k], strconv.FormatInt(d.Limit, 10)},
		[2]string{remainingHeader[k], strconv.FormatInt(d.Remaining, 10)},
		[2]string{resetHeader[k], string(AppendDuration(buf[:0], d.ResetAfter))},
	)
}

// AppendRetryAfter appends the wait of a denied d: Retry-After in whole
// seconds, rounded up, at least 1, and retry-after-ms, the same wait rounded up
// to the millisecond only (1000 when d names no wait, as Retry-After's 1 s).
func AppendRetryAfter(dst [][2]string, d Decision) [][2]string {
	return append(dst,
		[2]string{RetryAfterHeader, strconv.FormatInt(RetryAfterSeconds(d.RetryAfter), 10)},
		[2]string{RetryAfterMsHeader, strconv.FormatInt(RetryAfterMillis(d.RetryAfter), 10)})
}

// RetryAfterMillis is ns in whole milliseconds, rounded up; 1000 when ns is not
// positive (no wait known: Retry-After's floor of one second).
func RetryAfterMillis(ns int64) int64 {
	const ms = 1_000_000
	if ns <= 0 {
		return 1000
	}
	return ns/ms + min(ns%ms, 1)
}

// RetryAfterSeconds is ns as Retry-After's delta-seconds: rounded up, at least 1.
func RetryAfterSeconds(ns int64) int64 {
	const second = 1_000_000_000
	if ns <= second {
		return 1
	}
	return ns/second + min(ns%second, 1)
}

// AppendDuration appends ns, rounded up to a millisecond, in the style of Go's
// time.Duration.String that OpenAI's x-ratelimit-reset-* headers use: "0s",
// "20ms", "1s", "1.5s", "6m0s", "1h2m3.004s". Negative values format as "0s".
func AppendDuration(dst []byte, ns int64) []byte {
	if ns <= 0 {
		return append(dst, "0s"...)
	}
	ms := ns / 1_000_000
	if ns%1_000_000 != 0 {
		ms++
	}
	if ms < 1000 {
		dst = strconv.AppendInt(dst, ms, 10)
		return append(dst, "ms"...)
	}
	h, m, s, frac := ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000
	if h > 0 {
		dst = strconv.AppendInt(dst, h, 10)
		dst = append(dst, 'h')
	}
	if h > 0 || m > 0 {
		dst = strconv.AppendInt(dst, m, 10)
		dst = append(dst, 'm')
	}
	dst = strconv.AppendInt(dst, s, 10)
	if frac > 0 {
		digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		n := 3
		for digits[n-1] == '0' {
			n--
		}
		dst = append(dst, '.')
		dst = append(dst, digits[:n]...)
	}
	return append(dst, 's')
}
