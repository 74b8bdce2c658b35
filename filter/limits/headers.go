package limits

import (
	"strconv"
	"unsafe"
)

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

// AppendRefusalHeaders appends the headers of a refusal for d to dst: the
// wait (Retry-After in whole seconds, rounded up, at least 1; retry-after-ms,
// the same wait rounded up to the millisecond only, 1000 when d names none)
// and OpenAI's three x-ratelimit-*-<kind> headers (the limit, the whole units
// remaining, and the time until the bucket is full again in Go duration style:
// "1s", "6m0s", "20ms").
//
// The values are formatted into buf, which it returns for reuse, and alias its
// bytes: they are valid until buf is written again, long enough for a local
// reply (the host copies the headers). With a buf of 128 bytes or more it does
// not allocate.
func AppendRefusalHeaders(dst [][2]string, buf []byte, kind Kind, d Decision) ([][2]string, []byte) {
	if cap(buf) < 128 { // every value at its longest fits
		buf = make([]byte, 0, 128)
	}
	buf = buf[:0]
	var ends [5]int
	buf = strconv.AppendInt(buf, RetryAfterSeconds(d.RetryAfter), 10)
	ends[0] = len(buf)
	buf = strconv.AppendInt(buf, RetryAfterMillis(d.RetryAfter), 10)
	ends[1] = len(buf)
	buf = strconv.AppendInt(buf, d.Limit, 10)
	ends[2] = len(buf)
	buf = strconv.AppendInt(buf, d.Remaining, 10)
	ends[3] = len(buf)
	buf = AppendDuration(buf, d.ResetAfter)
	ends[4] = len(buf)
	value := func(i int) string {
		from := 0
		if i > 0 {
			from = ends[i-1]
		}
		return unsafe.String(unsafe.SliceData(buf[from:]), ends[i]-from)
	}
	k := kind & 1
	return append(dst,
		[2]string{RetryAfterHeader, value(0)},
		[2]string{RetryAfterMsHeader, value(1)},
		[2]string{limitHeader[k], value(2)},
		[2]string{remainingHeader[k], value(3)},
		[2]string{resetHeader[k], value(4)},
	), buf
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
