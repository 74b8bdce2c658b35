package fallback

import (
	"strings"
	"time"
)

// MaxHint is the largest delay ParseRetryAfter and ParseResetHint return; larger
// values saturate to it. A Planner caps hints much lower (Policy.RetryAfterCap).
const MaxHint = int64(365 * 24 * time.Hour)

// ParseRetryAfter reads a Retry-After header value (RFC 9110 §10.2.3) received at
// now (Unix ns) and returns the delay it asks for in ns. The value is either
// delta-seconds (digits only) or an HTTP-date in IMF-fixdate form ("Sun, 06 Nov
// 1994 08:49:37 GMT") or one of the two obsolete forms (RFC 850 "Sunday,
// 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994"). A date in the
// past gives 0; huge values saturate at MaxHint. Anything else (empty, negative,
// fractional, garbage) gives ok false. It does not allocate.
func ParseRetryAfter(value string, now int64) (delay int64, ok bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	if isDigit(v[0]) {
		secs, ok := parseDigits(v)
		if !ok {
			return 0, false
		}
		if secs > MaxHint/int64(time.Second) {
			return MaxHint, true
		}
		return secs * int64(time.Second), true
	}
	unix, ok := parseHTTPDate(v, now)
	if !ok {
		return 0, false
	}
	nowSec := now / int64(time.Second)
	switch {
	case unix <= nowSec:
		return 0, true
	case unix-nowSec > MaxHint/int64(time.Second):
		return MaxHint, true
	}
	// now may fall inside a second: wait from now to the named second exactly.
	return unix*int64(time.Second) - now, true
}

// ParseResetHint reads OpenAI's x-ratelimit-reset-requests or
// x-ratelimit-reset-tokens value, a Go-style duration such as "1s", "6m0s" or
// "20ms", and returns it in ns. Values above MaxHint saturate to it; negative,
// malformed or beyond time.Duration's range give ok false. It allocates only
// for malformed values (time.ParseDuration's error).
func ParseResetHint(value string) (delay int64, ok bool) {
	v := strings.TrimSpace(value)
	if v == "" || v[0] == '-' || v[0] == '+' {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, false
	}
	return min(int64(d), MaxHint), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseDigits parses a non-empty run of ASCII digits, saturating far above any
// useful delay instead of overflowing.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		if n < 1<<40 {
			n = n*10 + int64(s[i]-'0')
		}
	}
	return n, true
}

var (
	shortDays = [7]string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
	longDays  = [7]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
	months    = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// parseHTTPDate returns the Unix seconds of an HTTP-date in any of its three
// forms. The weekday must be a valid name but is not checked against the date,
// as RFC 9110 allows recipients to ignore it. now resolves RFC 850's two-digit
// year (RFC 9110 §5.6.7: a year more than 50 years ahead is in the past century).
func parseHTTPDate(s string, now int64) (int64, bool) {
	if comma := strings.IndexByte(s, ','); comma >= 0 {
		wd, rest := s[:comma], s[comma+1:]
		if len(rest) == 0 || rest[0] != ' ' {
			return 0, false
		}
		rest = rest[1:]
		switch {
		case oneOf(wd, shortDays[:]) && len(rest) == 24: // 06 Nov 1994 08:49:37 GMT
			if rest[2] != ' ' || rest[6] != ' ' || rest[11] != ' ' || rest[20:] != " GMT" {
				return 0, false
			}
			day, ok1 := fixed(rest[0:2])
			mon, ok2 := month(rest[3:6])
			year, ok3 := fixed(rest[7:11])
			return civil(year, mon, day, rest[12:20], ok1 && ok2 && ok3)
		case oneOf(wd, longDays[:]) && len(rest) == 22: // 06-Nov-94 08:49:37 GMT
			if rest[2] != '-' || rest[6] != '-' || rest[9] != ' ' || rest[18:] != " GMT" {
				return 0, false
			}
			day, ok1 := fixed(rest[0:2])
			mon, ok2 := month(rest[3:6])
			yy, ok3 := fixed(rest[7:9])
			return civil(fullYear(yy, now), mon, day, rest[10:18], ok1 && ok2 && ok3)
		}
		return 0, false
	}
	// asctime: Sun Nov  6 08:49:37 1994
	if len(s) != 24 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' || !oneOf(s[0:3], shortDays[:]) {
		return 0, false
	}
	mon, ok1 := month(s[4:7])
	dd := s[8:10]
	if dd[0] == ' ' {
		dd = dd[1:]
	}
	day, ok2 := fixed(dd)
	year, ok3 := fixed(s[20:24])
	return civil(year, mon, day, s[11:19], ok1 && ok2 && ok3)
}

// civil converts a validated date and an "hh:mm:ss" clock to Unix seconds.
func civil(year, mon, day int64, clock string, ok bool) (int64, bool) {
	if !ok || clock[2] != ':' || clock[5] != ':' {
		return 0, false
	}
	h, ok1 := fixed(clock[0:2])
	m, ok2 := fixed(clock[3:5])
	sec, ok3 := fixed(clock[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 59 || day < 1 || day > daysIn(year, mon) {
		return 0, false
	}
	return daysFromCivil(year, mon, day)*86400 + h*3600 + m*60 + sec, true
}

func fixed(s string) (int64, bool) {
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, len(s) > 0
}

func month(s string) (int64, bool) {
	for i, m := range months {
		if s == m {
			return int64(i + 1), true
		}
	}
	return 0, false
}

func oneOf(s string, names []string) bool {
	for _, n := range names {
		if s == n {
			return true
		}
	}
	return false
}

func fullYear(yy, now int64) int64 {
	y, _, _ := civilFromDays(now / int64(time.Second) / 86400)
	year := y/100*100 + yy
	if year > y+50 {
		year -= 100
	}
	return year
}

func daysIn(year, mon int64) int64 {
	switch mon {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil and civilFromDays are Howard Hinnant's algorithms for the
// proleptic Gregorian calendar, counting days from 1970-01-01.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}
