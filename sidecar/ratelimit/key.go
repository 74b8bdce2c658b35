package ratelimit

import (
	"strconv"
	"strings"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
)

// appendKey appends the counter key of a descriptor to b:
//
//	domain|key1=value1|key2=value2|period
//
// with '%', '|' and '=' in the domain, keys and values written as %25, %7C
// and %3D, so that distinct descriptors never share a key. period is the
// window length in seconds, so a limit whose unit changes starts a new
// counter.
func appendKey(b []byte, domainName string, entries []*commonrl.RateLimitDescriptor_Entry, period int64) []byte {
	b = appendEscaped(b, domainName)
	for _, e := range entries {
		b = append(b, '|')
		b = appendEscaped(b, e.GetKey())
		b = append(b, '=')
		b = appendEscaped(b, e.GetValue())
	}
	b = append(b, '|')
	return strconv.AppendInt(b, period, 10)
}

// appendSharedKey is appendKey for a descriptor whose entries in shared
// matched a share_threshold wildcard: those entries are written with the
// wildcard (say "files/*") instead of their value, so every value the
// wildcard matches counts in one counter, as in envoyproxy/ratelimit
// (limiter/cache_key.go GenerateCacheKey).
func appendSharedKey(b []byte, dom *domain, domainName string, entries []*commonrl.RateLimitDescriptor_Entry, shared uint64, period int64) []byte {
	b = appendEscaped(b, domainName)
	for i, e := range entries {
		b = append(b, '|')
		b = appendEscaped(b, e.GetKey())
		b = append(b, '=')
		b = appendEscaped(b, dom.sharedValue(entries, shared, i))
	}
	b = append(b, '|')
	return strconv.AppendInt(b, period, 10)
}

func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b = append(b, "%25"...)
		case '|':
			b = append(b, "%7C"...)
		case '=':
			b = append(b, "%3D"...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// detailedKey is the metric label of a descriptor with detailed_metric:
// "domain.key1_value1.key2_value2", as envoyproxy/ratelimit names it; an
// entry counted under a share_threshold wildcard is named by the wildcard.
func detailedKey(dom *domain, domainName string, entries []*commonrl.RateLimitDescriptor_Entry, shared uint64) string {
	var sb strings.Builder
	sb.WriteString(domainName)
	for i, e := range entries {
		sb.WriteByte('.')
		sb.WriteString(e.GetKey())
		v := e.GetValue()
		if shared != 0 {
			v = dom.sharedValue(entries, shared, i)
		}
		if v != "" {
			sb.WriteByte('_')
			sb.WriteString(v)
		}
	}
	return sb.String()
}
