// Package policywire encodes and decodes the filter's side of the sidecar's
// policy API (shepherd.policy.v1, sidecar/api/policy/v1/policy.proto) by
// hand on package wire, so the wasm module does not link the protobuf
// runtime. The messages are flat by design (see flat_test.go there), which
// is what keeps this codec small.
package policywire

import (
	"strconv"
	"unicode/utf8"

	"github.com/shepherd-mesh/shepherd/filter/wire"
)

// The gRPC service and the methods the filter calls, for proxy_grpc_call
// and proxy_grpc_stream.
const (
	Service              = "shepherd.policy.v1.PolicyService"
	MethodGetPolicy      = "GetPolicy"
	MethodWatchPolicy    = "WatchPolicy"
	MethodReportOutcomes = "ReportOutcomes"
)

// AppendGetPolicyRequest appends an encoded GetPolicyRequest: knownVersion
// is the version the filter holds, 0 for none.
func AppendGetPolicyRequest(dst []byte, knownVersion uint64) []byte {
	return wire.AppendUint64(dst, 1, knownVersion)
}

// AppendWatchPolicyRequest appends an encoded WatchPolicyRequest.
func AppendWatchPolicyRequest(dst []byte, knownVersion uint64) []byte {
	return wire.AppendUint64(dst, 1, knownVersion)
}

// Policy is one version of what the filter needs (shepherd.policy.v1.Policy).
// A parsed Policy shares nothing with the bytes it came from or with other
// Policies, so it can be kept as an immutable snapshot. Its strings are
// substrings of one copy of the encoded message, which stays alive as long
// as any of them does.
type Policy struct {
	Version         uint64
	GeneratedUnixMs int64
	Weights         []RouteWeight
	Health          []ProviderHealth
	Budgets         []Budget
	Credentials     []Credential
}

// RouteWeight is one provider's share of a route, in basis points.
type RouteWeight struct {
	Route, Provider string
	WeightBP        uint32
}

// ProviderHealth says until when a provider should be avoided (0: healthy).
type ProviderHealth struct {
	Provider            string
	CooldownUntilUnixMs int64
	Reason              string
}

// Budget is the month-to-date spend of a route or a consumer, in micro-USD.
type Budget struct {
	Route, Consumer, Period string
	Spent, Limit            int64
	Exhausted               bool
}

// Credential is the header the filter sets on requests to Provider. Value is
// a secret: String and GoString leave it out, and no error of this package
// contains it.
type Credential struct {
	Provider, Header, Value string
}

// String describes c without its value.
func (c Credential) String() string {
	return "{" + c.Provider + " " + c.Header + " [redacted]}"
}

// GoString describes c without its value, for %#v.
func (c Credential) GoString() string {
	return `policywire.Credential{Provider:"` + c.Provider + `", Header:"` + c.Header + `", Value:[redacted]}`
}

// PolicyResponse is a decoded GetPolicyResponse.
type PolicyResponse struct {
	// NotModified is true when the sidecar's version equals the known one;
	// Policy is then empty.
	NotModified bool
	// Version is the sidecar's current version, set in both cases.
	Version uint64
	Policy  Policy
	// RawPolicy is the encoded Policy as received, for storing in shared
	// data and decoding with ParsePolicy; nil when none was sent. It aliases
	// the parsed bytes unless the field was sent in several parts.
	RawPolicy []byte
}

// String describes r without the policy's contents (RawPolicy holds
// credential values).
func (r PolicyResponse) String() string {
	if r.NotModified {
		return "policy response: version " + strconv.FormatUint(r.Version, 10) + " not modified"
	}
	return "policy response: version " + strconv.FormatUint(r.Version, 10) +
		", policy version " + strconv.FormatUint(r.Policy.Version, 10) + " of " + strconv.Itoa(len(r.RawPolicy)) + " bytes"
}

// GoString is String, for %#v.
func (r PolicyResponse) GoString() string { return r.String() }

// ParseGetPolicyResponse decodes an encoded GetPolicyResponse into out,
// replacing all of it. out.Policy gets fresh slices (a Policy handed out
// before stays as it was). Unknown fields are skipped; malformed input gives
// an error, never a panic.
func ParseGetPolicyResponse(b []byte, out *PolicyResponse) error {
	*out = PolicyResponse{}
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == wire.VarintType:
			out.NotModified = r.Varint() != 0
		case f == 2 && t == wire.BytesType:
			// A message field sent in parts merges, which for the encoding
			// means concatenation.
			if out.RawPolicy == nil {
				out.RawPolicy = r.Bytes()
			} else {
				out.RawPolicy = append(out.RawPolicy[:len(out.RawPolicy):len(out.RawPolicy)], r.Bytes()...)
			}
		case f == 3 && t == wire.VarintType:
			out.Version = r.Varint()
		default:
			r.Skip()
		}
	}
	if err := r.Err(); err != nil {
		return wrap("get policy response", err)
	}
	if out.RawPolicy == nil {
		return nil
	}
	return parsePolicy(out.RawPolicy, &out.Policy)
}

// ParsePolicy decodes an encoded Policy (as stored from
// PolicyResponse.RawPolicy, or a WatchPolicy stream message). Unknown fields
// are skipped; malformed input gives an error, never a panic.
func ParsePolicy(b []byte) (Policy, error) {
	var p Policy
	if err := parsePolicy(b, &p); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// parsePolicy decodes b into p with few allocations: one copy of b as a
// string that every string field is a substring of, and one exactly sized
// slice per repeated field.
func parsePolicy(b []byte, p *Policy) error {
	var nw, nh, nb, nc int
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		if t == wire.BytesType {
			switch f {
			case 3:
				nw++
			case 4:
				nh++
			case 5:
				nb++
			case 6:
				nc++
			}
		}
	}
	if err := r.Err(); err != nil {
		return wrap("policy", err)
	}
	if nw > 0 {
		p.Weights = make([]RouteWeight, 0, nw)
	}
	if nh > 0 {
		p.Health = make([]ProviderHealth, 0, nh)
	}
	if nb > 0 {
		p.Budgets = make([]Budget, 0, nb)
	}
	if nc > 0 {
		p.Credentials = make([]Credential, 0, nc)
	}

	var msg text
	if nw+nh+nb+nc > 0 {
		msg.s = string(b)
	}
	r.Reset(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		var err error
		switch {
		case f == 1 && t == wire.VarintType:
			p.Version = r.Varint()
		case f == 2 && t == wire.VarintType:
			p.GeneratedUnixMs = int64(r.Varint())
		case f == 3 && t == wire.BytesType:
			p.Weights = p.Weights[:len(p.Weights)+1]
			err = parseWeight(&r, msg.sub(&r), &p.Weights[len(p.Weights)-1])
		case f == 4 && t == wire.BytesType:
			p.Health = p.Health[:len(p.Health)+1]
			err = parseHealth(&r, msg.sub(&r), &p.Health[len(p.Health)-1])
		case f == 5 && t == wire.BytesType:
			p.Budgets = p.Budgets[:len(p.Budgets)+1]
			err = parseBudget(&r, msg.sub(&r), &p.Budgets[len(p.Budgets)-1])
		case f == 6 && t == wire.BytesType:
			p.Credentials = p.Credentials[:len(p.Credentials)+1]
			err = parseCredential(&r, msg.sub(&r), &p.Credentials[len(p.Credentials)-1])
		default:
			r.Skip()
		}
		if err != nil {
			return err
		}
	}
	return wrap("policy", r.Err())
}

// text is the string copy of a message, seen from an embedded message that
// starts at base.
type text struct {
	s    string
	base int
}

// sub returns the view of the embedded message parent's current field holds.
func (t text) sub(parent *wire.Reader) text {
	return text{s: t.s, base: t.base + parent.BytesOffset()}
}

// str returns the current field of r, a reader over the message t views, as
// a substring of the copy. proto3 strings must be valid UTF-8.
func (t text) str(r *wire.Reader, where string) (string, error) {
	o := t.base + r.BytesOffset()
	s := t.s[o : o+len(r.Bytes())]
	if !utf8.ValidString(s) {
		return "", wrap(where, wire.ErrUTF8)
	}
	return s, nil
}

func parseWeight(parent *wire.Reader, msg text, w *RouteWeight) error {
	r := wire.NewReader(parent.Bytes())
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		var err error
		switch {
		case f == 1 && t == wire.BytesType:
			w.Route, err = msg.str(&r, "policy.weights.route")
		case f == 2 && t == wire.BytesType:
			w.Provider, err = msg.str(&r, "policy.weights.provider")
		case f == 3 && t == wire.VarintType:
			w.WeightBP = uint32(r.Varint())
		default:
			r.Skip()
		}
		if err != nil {
			return err
		}
	}
	return wrap("policy.weights", r.Err())
}

func parseHealth(parent *wire.Reader, msg text, h *ProviderHealth) error {
	r := wire.NewReader(parent.Bytes())
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		var err error
		switch {
		case f == 1 && t == wire.BytesType:
			h.Provider, err = msg.str(&r, "policy.health.provider")
		case f == 2 && t == wire.VarintType:
			h.CooldownUntilUnixMs = int64(r.Varint())
		case f == 3 && t == wire.BytesType:
			h.Reason, err = msg.str(&r, "policy.health.reason")
		default:
			r.Skip()
		}
		if err != nil {
			return err
		}
	}
	return wrap("policy.health", r.Err())
}

func parseBudget(parent *wire.Reader, msg text, bu *Budget) error {
	r := wire.NewReader(parent.Bytes())
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		var err error
		switch {
		case f == 1 && t == wire.BytesType:
			bu.Route, err = msg.str(&r, "policy.budgets.route")
		case f == 2 && t == wire.BytesType:
			bu.Consumer, err = msg.str(&r, "policy.budgets.consumer")
		case f == 3 && t == wire.BytesType:
			bu.Period, err = msg.str(&r, "policy.budgets.period")
		case f == 4 && t == wire.VarintType:
			bu.Spent = int64(r.Varint())
		case f == 5 && t == wire.VarintType:
			bu.Limit = int64(r.Varint())
		case f == 6 && t == wire.VarintType:
			bu.Exhausted = r.Varint() != 0
		default:
			r.Skip()
		}
		if err != nil {
			return err
		}
	}
	return wrap("policy.budgets", r.Err())
}

func parseCredential(parent *wire.Reader, msg text, c *Credential) error {
	r := wire.NewReader(parent.Bytes())
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		var err error
		switch {
		case f == 1 && t == wire.BytesType:
			c.Provider, err = msg.str(&r, "policy.credentials.provider")
		case f == 2 && t == wire.BytesType:
			c.Header, err = msg.str(&r, "policy.credentials.header")
		case f == 3 && t == wire.BytesType:
			// The error names the field only, never the content.
			c.Value, err = msg.str(&r, "policy.credentials.value")
		default:
			r.Skip()
		}
		if err != nil {
			return err
		}
	}
	return wrap("policy.credentials", r.Err())
}

// Outcome is one finished upstream attempt (shepherd.policy.v1.Outcome).
type Outcome struct {
	Route, Provider, Model, Consumer string
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode   uint32
	LatencyMs    uint32
	InputTokens  uint64
	OutputTokens uint64
	CostMicroUSD int64
	// RatelimitRemaining is the provider's x-ratelimit-remaining-requests,
	// valid when HasRatelimitRemaining is true.
	HasRatelimitRemaining bool
	RatelimitRemaining    int64
	// RetryAfterMs is the provider's Retry-After, 0 when none.
	RetryAfterMs uint32
}

// AppendReportOutcomesRequest appends an encoded ReportOutcomesRequest.
// Strings that are not valid UTF-8 (a model name from a request body) are
// sent with each invalid run replaced by U+FFFD, since the sidecar would
// reject the request otherwise. With a dst of enough capacity it does not
// allocate.
func AppendReportOutcomesRequest(dst []byte, outcomes []Outcome) []byte {
	for i := range outcomes {
		o := &outcomes[i]
		var m wire.Mark
		dst, m = wire.OpenMessage(dst, 1)
		dst = wire.AppendValidString(dst, 1, o.Route)
		dst = wire.AppendValidString(dst, 2, o.Provider)
		dst = wire.AppendValidString(dst, 3, o.Model)
		dst = wire.AppendValidString(dst, 4, o.Consumer)
		dst = wire.AppendUint64(dst, 5, uint64(o.StatusCode))
		dst = wire.AppendUint64(dst, 6, uint64(o.LatencyMs))
		dst = wire.AppendUint64(dst, 7, o.InputTokens)
		dst = wire.AppendUint64(dst, 8, o.OutputTokens)
		dst = wire.AppendInt64(dst, 9, o.CostMicroUSD)
		dst = wire.AppendBool(dst, 10, o.HasRatelimitRemaining)
		dst = wire.AppendInt64(dst, 11, o.RatelimitRemaining)
		dst = wire.AppendUint64(dst, 12, uint64(o.RetryAfterMs))
		dst = wire.CloseMessage(dst, m)
	}
	return dst
}

// ParseReportOutcomesResponse decodes an encoded ReportOutcomesResponse: how
// many outcomes the sidecar accepted and its policy version afterwards.
func ParseReportOutcomesResponse(b []byte) (accepted uint32, version uint64, err error) {
	r := wire.NewReader(b)
	for {
		f, t, ok := r.Next()
		if !ok {
			break
		}
		switch {
		case f == 1 && t == wire.VarintType:
			accepted = uint32(r.Varint())
		case f == 2 && t == wire.VarintType:
			version = r.Varint()
		default:
			r.Skip()
		}
	}
	if err := r.Err(); err != nil {
		return 0, 0, wrap("report outcomes response", err)
	}
	return accepted, version, nil
}

// wrap says which part of a message was malformed (never its contents).
func wrap(where string, err error) error { return wire.Wrap("policywire", where, err) }
