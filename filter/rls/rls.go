// Package rls encodes the filter's requests to a rate limit service and
// decodes its answers: Envoy's envoy.service.ratelimit.v3 messages
// (RateLimitRequest, RateLimitResponse), as served by shepherd-sidecar and
// by envoyproxy/ratelimit, written by hand on package wire so the wasm
// module does not link the protobuf runtime.
//
// Field numbers follow go-control-plane/envoy v1.40
// (envoy/service/ratelimit/v3/rls.proto and
// envoy/extensions/common/ratelimit/v3/ratelimit.proto).
package rls

import (
	"unicode/utf8"

	"github.com/shepherd-mesh/shepherd/filter/wire"
)

// The gRPC service and method of ShouldRateLimit, for proxy_grpc_call.
const (
	Service = "envoy.service.ratelimit.v3.RateLimitService"
	Method  = "ShouldRateLimit"
)

// Entry is one key/value pair of a descriptor
// (envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry).
type Entry struct {
	Key, Value string
}

// Descriptor is one rate limit descriptor
// (envoy.extensions.common.ratelimit.v3.RateLimitDescriptor). Its limit
// override (field 2) is not supported.
type Descriptor struct {
	Entries []Entry
	// HitsAddend overrides the request's hits_addend for this descriptor.
	// It travels as a google.protobuf.UInt64Value: it is sent when it is not
	// zero or when HitsAddendSet is true (to send an explicit 0).
	HitsAddend    uint64
	HitsAddendSet bool
	// IsNegativeHits makes the hits refill the limit instead of consuming it.
	IsNegativeHits bool
}

// AppendRequest appends an encoded RateLimitRequest to dst and returns the
// extended slice. hitsAddend 0 means 1 to the service. Strings that are not
// valid UTF-8 (header values copied into descriptors) are sent with each
// invalid run replaced by U+FFFD, since the service would reject the
// request otherwise. With a dst of enough capacity it does not allocate.
func AppendRequest(dst []byte, domain string, descriptors []Descriptor, hitsAddend uint32) []byte {
	dst = wire.AppendValidString(dst, 1, domain)
	for i := range descriptors {
		d := &descriptors[i]
		var dm wire.Mark
		dst, dm = wire.OpenMessage(dst, 2)
		for j := range d.Entries {
			e := &d.Entries[j]
			var em wire.Mark
			dst, em = wire.OpenMessage(dst, 1)
			dst = wire.AppendValidString(dst, 1, e.Key)
			dst = wire.AppendValidString(dst, 2, e.Value)
			dst = wire.CloseMessage(dst, em)
		}
		if d.HitsAddend != 0 || d.HitsAddendSet {
			var hm wire.Mark
			dst, hm = wire.OpenMessage(dst, 3)
			dst = wire.AppendUint64(dst, 1, d.HitsAddend)
			dst = wire.CloseMessage(dst, hm)
		}
		dst = wire.AppendBool(dst, 4, d.IsNegativeHits)
		dst = wire.CloseMessage(dst, dm)
	}
	return wire.AppendUint64(dst, 3, uint64(hitsAddend))
}

// Code is a RateLimitResponse.Code.
type Code int32

// The response codes. CodeUnknown is what a response without overall_code
// decodes to; treat it as the service failing.
const (
	CodeUnknown   Code = 0
	CodeOK        Code = 1
	CodeOverLimit Code = 2
)

// Unit is a RateLimitResponse.RateLimit.Unit.
type Unit int32

// The units of a limit (note WEEK's number, added last).
const (
	UnitUnknown Unit = 0
	UnitSecond  Unit = 1
	UnitMinute  Unit = 2
	UnitHour    Unit = 3
	UnitDay     Unit = 4
	UnitMonth   Unit = 5
	UnitYear    Unit = 6
	UnitWeek    Unit = 7
)

// RateLimit is the limit the service applied to a descriptor
// (RateLimitResponse.RateLimit, without unit_multiplier).
type RateLimit struct {
	Name            string
	RequestsPerUnit uint32
	Unit            Unit
}

// Status is the answer for one descriptor
// (RateLimitResponse.DescriptorStatus, without quota).
type Status struct {
	Code Code
	// Limit is valid when HasLimit is true (current_limit was sent).
	Limit          RateLimit
	HasLimit       bool
	LimitRemaining uint32
	// DurationUntilReset is duration_until_reset in nanoseconds (seconds
	// and nanos combined, saturating at the int64 range); 0 when absent.
	DurationUntilReset int64
}

// Response is a decoded RateLimitResponse. Fields not listed (raw_body,
// dynamic_metadata, quota) are skipped.
type Response struct {
	Overall  Code
	Statuses []Status
	// ResponseHeaders are response_headers_to_add and RequestHeaders
	// request_headers_to_add, as key/value pairs; a header's raw_value wins
	// over its value when set.
	ResponseHeaders [][2]string
	RequestHeaders  [][2]string
}

// ParseResponse decodes an encoded RateLimitResponse into out, replacing its
// contents. It reuses out's slices, and keeps a string of out that equals
// the new one instead of allocating, so parsing responses of the same shape
// into one Response allocates nothing. Unknown fields are skipped; malformed
// input gives an error (and leaves out partly filled), never a panic.
func ParseResponse(b []byte, out *Response) error {
	out.Overall = CodeUnknown
	out.Statuses = out.Statuses[:0]
	out.ResponseHeaders = out.ResponseHeaders[:0]
	out.RequestHeaders = out.RequestHeaders[:0]
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == wire.VarintType:
			out.Overall = Code(int32(r.Varint()))
		case f == 2 && t == wire.BytesType:
			var st *Status
			out.Statuses, st = grow(out.Statuses)
			name := st.Limit.Name
			*st = Status{}
			if err := parseStatus(r.Bytes(), st, name); err != nil {
				return err
			}
		case (f == 3 || f == 4) && t == wire.BytesType:
			hs := &out.ResponseHeaders
			where := "response_headers_to_add"
			if f == 4 {
				hs, where = &out.RequestHeaders, "request_headers_to_add"
			}
			var h *[2]string
			*hs, h = grow(*hs)
			if err := parseHeader(r.Bytes(), h, where); err != nil {
				return err
			}
		default:
			r.Skip()
		}
	}
	return wrap("response", r.Err())
}

// grow extends s by one element, reusing its capacity (and the old element
// there, whose strings the parsers compare against) when it has some.
func grow[T any](s []T) ([]T, *T) {
	if len(s) < cap(s) {
		s = s[:len(s)+1]
	} else {
		var zero T
		s = append(s, zero)
	}
	return s, &s[len(s)-1]
}

func parseStatus(b []byte, st *Status, oldName string) error {
	var secs, nanos int64
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == wire.VarintType:
			st.Code = Code(int32(r.Varint()))
		case f == 2 && t == wire.BytesType:
			st.HasLimit = true
			if err := parseLimit(r.Bytes(), &st.Limit, oldName); err != nil {
				return err
			}
		case f == 3 && t == wire.VarintType:
			st.LimitRemaining = uint32(r.Varint())
		case f == 4 && t == wire.BytesType:
			if err := wire.MergeDuration(r.Bytes(), &secs, &nanos); err != nil {
				return wrap("statuses.duration_until_reset", err)
			}
		default:
			r.Skip()
		}
	}
	st.DurationUntilReset = wire.DurationNanos(secs, nanos)
	return wrap("statuses", r.Err())
}

func parseLimit(b []byte, l *RateLimit, oldName string) error {
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == wire.VarintType:
			l.RequestsPerUnit = uint32(r.Varint())
		case f == 2 && t == wire.VarintType:
			l.Unit = Unit(int32(r.Varint()))
		case f == 3 && t == wire.BytesType:
			s := r.Bytes()
			if !utf8.Valid(s) {
				return wrap("statuses.current_limit.name", wire.ErrUTF8)
			}
			l.Name = reuse(oldName, s)
		default:
			r.Skip()
		}
	}
	return wrap("statuses.current_limit", r.Err())
}

// parseHeader decodes an envoy.config.core.v3.HeaderValue into h, whose old
// strings it reuses when equal.
func parseHeader(b []byte, h *[2]string, where string) error {
	old := *h
	*h = [2]string{}
	var value, raw []byte
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		if t != wire.BytesType {
			r.Skip()
			continue
		}
		switch f {
		case 1:
			if !utf8.Valid(r.Bytes()) {
				return wrap(where+".key", wire.ErrUTF8)
			}
			h[0] = reuse(old[0], r.Bytes())
		case 2:
			if !utf8.Valid(r.Bytes()) {
				return wrap(where+".value", wire.ErrUTF8)
			}
			value = r.Bytes()
		case 3:
			raw = r.Bytes()
		default:
			r.Skip()
		}
	}
	if len(raw) > 0 {
		value = raw
	}
	h[1] = reuse(old[1], value)
	return wrap(where, r.Err())
}

// reuse returns old when it holds the bytes b, else a new string.
func reuse(old string, b []byte) string {
	if old == string(b) {
		return old
	}
	return string(b)
}

// wrap says which part of a message was malformed (never its contents).
func wrap(where string, err error) error { return wire.Wrap("rls", where, err) }
