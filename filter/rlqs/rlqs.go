// Package rlqs is the filter's side of Envoy's rate limit quota service
// (envoy.service.rate_limit_quota.v3, StreamRateLimitQuotas): the usage
// reports it sends, the quota assignments it receives, and the per-bucket
// record every worker VM admits requests against in shared data.
//
// The messages are written by hand on package wire so the wasm module does
// not link the protobuf runtime. Field numbers follow go-control-plane/envoy
// v1.40 (envoy/service/rate_limit_quota/v3/rlqs.proto,
// envoy/type/v3/ratelimit_strategy.proto, envoy/type/v3/token_bucket.proto).
//
// It is pure: no ABI calls and no clock; times and bytes are passed in.
package rlqs

import (
	"errors"
	"math"
	"unicode/utf8"

	"github.com/shepherd-mesh/shepherd/filter/rls"
	"github.com/shepherd-mesh/shepherd/filter/wire"
)

// The gRPC service and method of the quota stream, for proxy_grpc_stream.
const (
	Service = "envoy.service.rate_limit_quota.v3.RateLimitQuotaService"
	Method  = "StreamRateLimitQuotas"
)

// MaxBucketIDBytes bounds an encoded bucket id. Bucket ids are built from
// descriptor values, some of which (the consumer) come from clients.
const MaxBucketIDBytes = 1024

// ErrBucketIDTooLong is returned by AppendBucketID for ids over
// MaxBucketIDBytes.
var ErrBucketIDTooLong = errors.New("rlqs: bucket id too long")

// AppendBucketID appends the canonical encoding of the BucketId whose map
// holds entries: the map entries sorted by key (as a deterministic protobuf
// encoder writes them), so one set of entries always gives the same bytes.
// entries must have distinct keys (a descriptor's keys are); it is sorted in
// place. Invalid UTF-8 is repaired as in rls. It does not allocate when dst
// has room.
func AppendBucketID(dst []byte, entries []rls.Entry) ([]byte, error) {
	for i := 1; i < len(entries); i++ {
		for j := i; j > 0 && entries[j].Key < entries[j-1].Key; j-- {
			entries[j], entries[j-1] = entries[j-1], entries[j]
		}
	}
	start := len(dst)
	for i := range entries {
		var m wire.Mark
		dst, m = wire.OpenMessage(dst, 1)
		dst = wire.AppendValidString(dst, 1, entries[i].Key)
		dst = wire.AppendValidString(dst, 2, entries[i].Value)
		dst = wire.CloseMessage(dst, m)
	}
	if len(dst)-start > MaxBucketIDBytes {
		return dst[:start], ErrBucketIDTooLong
	}
	return dst, nil
}

// CanonicalBucketID re-encodes an encoded BucketId (as a server sent it,
// its map in any order) in AppendBucketID's form.
func CanonicalBucketID(dst, id []byte) ([]byte, error) {
	var entries [8]rls.Entry
	es := entries[:0]
	r := wire.NewReader(id)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		if f != 1 || t != wire.BytesType {
			r.Skip()
			continue
		}
		var e rls.Entry
		m := wire.NewReader(r.Bytes())
		for {
			f, t, ok := m.Next()
			if !ok {
				break
			}
			switch {
			case f == 1 && t == wire.BytesType:
				e.Key = string(m.Bytes())
			case f == 2 && t == wire.BytesType:
				e.Value = string(m.Bytes())
			default:
				m.Skip()
			}
		}
		if err := m.Err(); err != nil {
			return dst, wrap("bucket_id.bucket", err)
		}
		if !utf8.ValidString(e.Key) || !utf8.ValidString(e.Value) {
			return dst, wrap("bucket_id.bucket", wire.ErrUTF8)
		}
		replaced := false
		for i := range es { // a later map entry replaces an earlier one
			if es[i].Key == e.Key {
				es[i], replaced = e, true
			}
		}
		if !replaced {
			if len(es) == cap(es) {
				return dst, ErrBucketIDTooLong
			}
			es = append(es, e)
		}
	}
	if err := r.Err(); err != nil {
		return dst, wrap("bucket_id", err)
	}
	return AppendBucketID(dst, es)
}

// Usage is one bucket's line of a usage report.
type Usage struct {
	// BucketID is the bucket's encoded BucketId (AppendBucketID).
	BucketID []byte
	// Elapsed is the time since the bucket's previous report, in ns.
	Elapsed         int64
	Allowed, Denied uint64
}

// AppendReports appends an encoded RateLimitQuotaUsageReports. The domain
// goes into every report: the protocol requires it in the first one of a
// stream and a server ignores it later.
func AppendReports(dst []byte, domain string, usages []Usage) []byte {
	dst = wire.AppendValidString(dst, 1, domain)
	for i := range usages {
		u := &usages[i]
		var m wire.Mark
		dst, m = wire.OpenMessage(dst, 2)
		dst = wire.AppendBytesField(dst, 1, u.BucketID)
		var d wire.Mark
		dst, d = wire.OpenMessage(dst, 2)
		el := max(u.Elapsed, 0)
		dst = wire.AppendInt64(dst, 1, el/1e9)
		dst = wire.AppendInt64(dst, 2, el%1e9)
		dst = wire.CloseMessage(dst, d)
		dst = wire.AppendUint64(dst, 3, u.Allowed)
		dst = wire.AppendUint64(dst, 4, u.Denied)
		dst = wire.CloseMessage(dst, m)
	}
	return dst
}

// Kind is what an action does to a bucket.
type Kind uint8

// The actions.
const (
	// Assign gives the bucket a new assignment (Strategy, until TTL).
	Assign Kind = iota + 1
	// Abandon drops the bucket's assignment: it starts over as a new bucket.
	Abandon
)

// Action is one decoded BucketAction.
type Action struct {
	// BucketID is the encoded BucketId as received (a view of the message).
	BucketID []byte
	Kind     Kind
	// TTL is assignment_time_to_live in ns (Assign).
	TTL      int64
	Strategy Strategy
}

// Response is a decoded RateLimitQuotaResponse.
type Response struct {
	Actions []Action
}

// ParseResponse decodes an encoded RateLimitQuotaResponse into out, reusing
// its slice. Bucket ids are views of b. Actions the filter cannot apply (no
// bucket id, no action, an unusable strategy) are left out; malformed input
// gives an error, never a panic.
func ParseResponse(b []byte, out *Response) error {
	out.Actions = out.Actions[:0]
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		if f != 1 || t != wire.BytesType {
			r.Skip()
			continue
		}
		var a Action
		usable, err := parseAction(r.Bytes(), &a)
		if err != nil {
			return err
		}
		if usable {
			out.Actions = append(out.Actions, a)
		}
	}
	return wrap("response", r.Err())
}

func parseAction(b []byte, a *Action) (bool, error) {
	r := wire.NewReader(b)
	hasID := false
	usable := true
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == wire.BytesType:
			a.BucketID, hasID = r.Bytes(), true
		case f == 2 && t == wire.BytesType:
			a.Kind = Assign
			ok, err := parseAssignment(r.Bytes(), a)
			if err != nil {
				return false, err
			}
			usable = ok
		case f == 3 && t == wire.BytesType:
			a.Kind, a.TTL, a.Strategy = Abandon, 0, Strategy{}
			usable = true
		default:
			r.Skip()
		}
	}
	if err := r.Err(); err != nil {
		return false, wrap("bucket_action", err)
	}
	return hasID && a.Kind != 0 && usable, nil
}

func parseAssignment(b []byte, a *Action) (bool, error) {
	r := wire.NewReader(b)
	hasStrategy := false
	usable := true
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 2 && t == wire.BytesType:
			ns, err := parseDuration(r.Bytes(), "quota_assignment_action.assignment_time_to_live")
			if err != nil {
				return false, err
			}
			a.TTL = ns
		case f == 3 && t == wire.BytesType:
			ok, err := parseStrategy(r.Bytes(), &a.Strategy)
			if err != nil {
				return false, err
			}
			hasStrategy, usable = true, ok
		default:
			r.Skip()
		}
	}
	if err := r.Err(); err != nil {
		return false, wrap("quota_assignment_action", err)
	}
	// Without a strategy the assignment is ALLOW_ALL (blanket_rule's zero
	// value); a TTL of zero or less is no assignment at all.
	if !hasStrategy {
		a.Strategy = Strategy{Rule: AllowAll}
	}
	return usable && a.TTL > 0, nil
}

// Rule is how a bucket admits requests.
type Rule uint8

// The rules.
const (
	// Pending: no assignment yet; admitted until the record expires.
	Pending Rule = iota
	AllowAll
	DenyAll
	TokenBucket
)

// Strategy is a decoded RateLimitStrategy. requests_per_time_unit is taken as
// a token bucket that holds and refills that many requests per unit.
type Strategy struct {
	Rule Rule
	// The token bucket (TokenBucket): at most Max requests, PerFill more
	// every Interval ns.
	Max, PerFill uint32
	Interval     int64
}

// Units of RateLimitStrategy.RequestsPerTimeUnit (envoy.type.v3.RateLimitUnit).
var unitNanos = [...]int64{0, 1e9, 60e9, 3600e9, 86400e9, 30 * 86400e9, 365 * 86400e9, 7 * 86400e9}

func parseStrategy(b []byte, s *Strategy) (bool, error) {
	*s = Strategy{Rule: AllowAll}
	r := wire.NewReader(b)
	usable := true
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == wire.VarintType:
			switch r.Varint() {
			case 0:
				*s = Strategy{Rule: AllowAll}
			case 1:
				*s = Strategy{Rule: DenyAll}
			default:
				usable = false
			}
		case f == 2 && t == wire.BytesType:
			var n, unit uint64
			m := wire.NewReader(r.Bytes())
			for {
				f, t, ok := m.Next()
				if !ok {
					break
				}
				switch {
				case f == 1 && t == wire.VarintType:
					n = m.Varint()
				case f == 2 && t == wire.VarintType:
					unit = m.Varint()
				default:
					m.Skip()
				}
			}
			if err := m.Err(); err != nil {
				return false, wrap("rate_limit_strategy.requests_per_time_unit", err)
			}
			if unit == 0 || unit >= uint64(len(unitNanos)) || n == 0 {
				usable = false
				continue
			}
			c := uint32(min(n, math.MaxUint32))
			*s = Strategy{Rule: TokenBucket, Max: c, PerFill: c, Interval: unitNanos[unit]}
		case f == 3 && t == wire.BytesType:
			tb := Strategy{Rule: TokenBucket, PerFill: 1} // tokens_per_fill defaults to 1
			m := wire.NewReader(r.Bytes())
			for {
				f, t, ok := m.Next()
				if !ok {
					break
				}
				switch {
				case f == 1 && t == wire.VarintType:
					tb.Max = uint32(m.Varint())
				case f == 2 && t == wire.BytesType:
					w := wire.NewReader(m.Bytes())
					tb.PerFill = 0 // a present wrapper holds its value, 0 when empty
					for {
						f, t, ok := w.Next()
						if !ok {
							break
						}
						if f == 1 && t == wire.VarintType {
							tb.PerFill = uint32(w.Varint())
						} else {
							w.Skip()
						}
					}
					if err := w.Err(); err != nil {
						return false, wrap("rate_limit_strategy.token_bucket.tokens_per_fill", err)
					}
				case f == 3 && t == wire.BytesType:
					ns, err := parseDuration(m.Bytes(), "rate_limit_strategy.token_bucket.fill_interval")
					if err != nil {
						return false, err
					}
					tb.Interval = ns
				default:
					m.Skip()
				}
			}
			if err := m.Err(); err != nil {
				return false, wrap("rate_limit_strategy.token_bucket", err)
			}
			// envoy.type.v3.TokenBucket requires max_tokens > 0, tokens_per_fill
			// > 0 and fill_interval > 0 (its validation rules).
			if tb.Max == 0 || tb.PerFill == 0 || tb.Interval <= 0 {
				usable = false
				continue
			}
			*s = tb
		default:
			r.Skip()
		}
	}
	if err := r.Err(); err != nil {
		return false, wrap("rate_limit_strategy", err)
	}
	return usable, nil
}

func parseDuration(b []byte, where string) (int64, error) {
	ns, err := wire.Duration(b)
	if err != nil {
		return 0, wrap(where, err)
	}
	return ns, nil
}

// wrap says which part of a message was malformed (never its contents).
func wrap(where string, err error) error { return wire.Wrap("rlqs", where, err) }
