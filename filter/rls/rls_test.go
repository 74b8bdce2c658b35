package rls

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shepherd-mesh/shepherd/filter/wire"
	"github.com/shepherd-mesh/shepherd/filter/wire/wiretest"
)

func TestServiceNamesMatchGeneratedCode(t *testing.T) {
	require.Equal(t, rlsv3.RateLimitService_ShouldRateLimit_FullMethodName, "/"+Service+"/"+Method)
}

// toProto is the RateLimitRequest AppendRequest should produce.
func toProto(domain string, ds []Descriptor, hits uint32) *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: strings.ToValidUTF8(domain, "\uFFFD"), HitsAddend: hits}
	for _, d := range ds {
		pd := &rlcommonv3.RateLimitDescriptor{IsNegativeHits: d.IsNegativeHits}
		for _, e := range d.Entries {
			pd.Entries = append(pd.Entries, &rlcommonv3.RateLimitDescriptor_Entry{
				Key:   strings.ToValidUTF8(e.Key, "\uFFFD"),
				Value: strings.ToValidUTF8(e.Value, "\uFFFD"),
			})
		}
		if d.HitsAddend != 0 || d.HitsAddendSet {
			pd.HitsAddend = wrapperspb.UInt64(d.HitsAddend)
		}
		req.Descriptors = append(req.Descriptors, pd)
	}
	return req
}

func checkRequest(t *testing.T, domain string, ds []Descriptor, hits uint32) {
	t.Helper()
	got := AppendRequest([]byte("keep"), domain, ds, hits)
	require.Equal(t, "keep", string(got[:4]))
	got = got[4:]

	want := toProto(domain, ds, hits)
	var parsed rlsv3.RateLimitRequest
	require.NoError(t, proto.Unmarshal(got, &parsed))
	require.True(t, proto.Equal(want, &parsed), "want %v\ngot  %v", want, &parsed)

	// Byte for byte what proto.Marshal writes.
	wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	require.NoError(t, err)
	require.Equal(t, wantBytes, got)
}

func TestAppendRequestTable(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		domain string
		ds     []Descriptor
		hits   uint32
	}{
		{"empty", "", nil, 0},
		{"domain only", "shepherd", nil, 0},
		{"one entry", "shepherd", []Descriptor{{Entries: []Entry{{"route", "chat"}}}}, 1},
		{"empty descriptor", "d", []Descriptor{{}}, 0},
		{"empty key and value", "d", []Descriptor{{Entries: []Entry{{"", ""}}}}, 0},
		{"several entries", "shepherd", []Descriptor{{Entries: []Entry{{"route", "chat"}, {"consumer", "team-a"}, {"model", "gpt-4o"}}}}, 3},
		{"hits addend per descriptor", "d", []Descriptor{{Entries: []Entry{{"k", "v"}}, HitsAddend: 1500}}, 0},
		{"explicit zero hits addend", "d", []Descriptor{{Entries: []Entry{{"k", "v"}}, HitsAddendSet: true}}, 7},
		{"max hits addend", "d", []Descriptor{{HitsAddend: math.MaxUint64, IsNegativeHits: true}}, math.MaxUint32},
		{"negative hits", "d", []Descriptor{{Entries: []Entry{{"k", "v"}}, HitsAddend: 10, IsNegativeHits: true}}, 0},
		{"unicode", "домен", []Descriptor{{Entries: []Entry{{"ключ", "値🙂"}}}}, 0},
		{"invalid utf-8 repaired", "a\xffb", []Descriptor{{Entries: []Entry{{"k\xc3", "\xed\xa0\x80v\xff\xfe"}}}}, 0},
		{"long values need two-byte lengths", long, []Descriptor{{Entries: []Entry{{long, long}, {long, long}}}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkRequest(t, tt.domain, tt.ds, tt.hits) })
	}
}

func randString(rng *rand.Rand) string {
	alphabet := []string{"a", "z", "0", "-", "é", "日", "🙂", "\x00", " ", "\xff"}
	n := rng.IntN(12)
	if rng.IntN(20) == 0 {
		n = 100 + rng.IntN(300)
	}
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.WriteString(alphabet[rng.IntN(len(alphabet))])
	}
	return sb.String()
}

func randDescriptors(rng *rand.Rand) []Descriptor {
	n := rng.IntN(5)
	if rng.IntN(10) == 0 {
		n = 50 + rng.IntN(100)
	}
	ds := make([]Descriptor, n)
	for i := range ds {
		for j := rng.IntN(4); j > 0; j-- {
			ds[i].Entries = append(ds[i].Entries, Entry{randString(rng), randString(rng)})
		}
		switch rng.IntN(4) {
		case 0:
			ds[i].HitsAddend = rng.Uint64() >> rng.IntN(64)
		case 1:
			ds[i].HitsAddendSet = true
		}
		ds[i].IsNegativeHits = rng.IntN(4) == 0
	}
	return ds
}

func TestAppendRequestRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 2000; i++ {
		checkRequest(t, randString(rng), randDescriptors(rng), rng.Uint32()>>rng.IntN(32))
	}
}

// checkResponse parses the marshalled want with ParseResponse into out and
// compares field by field.
func checkResponse(t *testing.T, want *rlsv3.RateLimitResponse, b []byte, out *Response) {
	t.Helper()
	require.NoError(t, ParseResponse(b, out))
	require.Equal(t, Code(want.GetOverallCode()), out.Overall)
	require.Len(t, out.Statuses, len(want.GetStatuses()))
	for i, ws := range want.GetStatuses() {
		st := out.Statuses[i]
		require.Equal(t, Code(ws.GetCode()), st.Code, "status %d", i)
		require.Equal(t, ws.GetCurrentLimit() != nil, st.HasLimit, "status %d", i)
		require.Equal(t, ws.GetCurrentLimit().GetName(), st.Limit.Name, "status %d", i)
		require.Equal(t, ws.GetCurrentLimit().GetRequestsPerUnit(), st.Limit.RequestsPerUnit, "status %d", i)
		require.Equal(t, Unit(ws.GetCurrentLimit().GetUnit()), st.Limit.Unit, "status %d", i)
		require.Equal(t, ws.GetLimitRemaining(), st.LimitRemaining, "status %d", i)
		require.Equal(t, int64(ws.GetDurationUntilReset().AsDuration()), st.DurationUntilReset, "status %d", i)
	}
	checkHeaders := func(want []*corev3.HeaderValue, got [][2]string) {
		require.Len(t, got, len(want))
		for i, h := range want {
			v := h.GetValue()
			if len(h.GetRawValue()) > 0 {
				v = string(h.GetRawValue())
			}
			require.Equal(t, [2]string{h.GetKey(), v}, got[i])
		}
	}
	checkHeaders(want.GetResponseHeadersToAdd(), out.ResponseHeaders)
	checkHeaders(want.GetRequestHeadersToAdd(), out.RequestHeaders)
}

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func overLimitResponse() *rlsv3.RateLimitResponse {
	return &rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{
				Code:               rlsv3.RateLimitResponse_OK,
				CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{Name: "per-route", RequestsPerUnit: 100, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE},
				LimitRemaining:     42,
				DurationUntilReset: durationpb.New(12*time.Second + 500*time.Millisecond),
			},
			{
				Code:               rlsv3.RateLimitResponse_OVER_LIMIT,
				CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND},
				DurationUntilReset: durationpb.New(300 * time.Millisecond),
			},
		},
		ResponseHeadersToAdd: []*corev3.HeaderValue{
			{Key: "x-ratelimit-limit", Value: "10, 10;w=1"},
			{Key: "x-ratelimit-remaining", Value: "0"},
		},
	}
}

func TestParseResponseTable(t *testing.T) {
	tests := []struct {
		name string
		resp *rlsv3.RateLimitResponse
	}{
		{"empty", &rlsv3.RateLimitResponse{}},
		{"ok only", &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}},
		{"over limit", overLimitResponse()},
		{"empty status", &rlsv3.RateLimitResponse{Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{}}}},
		{"empty limit and duration", &rlsv3.RateLimitResponse{Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{}, DurationUntilReset: &durationpb.Duration{}},
		}}},
		{"every unit", &rlsv3.RateLimitResponse{Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Unit: rlsv3.RateLimitResponse_RateLimit_WEEK}},
			{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Unit: rlsv3.RateLimitResponse_RateLimit_YEAR}},
			{CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Unit: rlsv3.RateLimitResponse_RateLimit_MONTH, RequestsPerUnit: math.MaxUint32}},
		}}},
		{"unknown enum values", &rlsv3.RateLimitResponse{OverallCode: 77, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: -3}}}},
		{"huge and negative durations", &rlsv3.RateLimitResponse{Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{DurationUntilReset: &durationpb.Duration{Seconds: 315576000000, Nanos: 999999999}},
			{DurationUntilReset: &durationpb.Duration{Seconds: -315576000000, Nanos: -999999999}},
			{DurationUntilReset: &durationpb.Duration{Seconds: math.MaxInt64 / 1_000_000_000, Nanos: 999999999}},
			{DurationUntilReset: &durationpb.Duration{Seconds: -1, Nanos: -5}},
			{DurationUntilReset: &durationpb.Duration{Nanos: 1}},
		}}},
		{"raw header value", &rlsv3.RateLimitResponse{
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-raw", RawValue: []byte("\xff\x00bin")}, {Key: "x-empty"}},
			RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-upstream", Value: "ünïcode"}},
		}},
		{"skipped fields", &rlsv3.RateLimitResponse{
			OverallCode: rlsv3.RateLimitResponse_OK,
			RawBody:     []byte("body"),
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				"k": structpb.NewStringValue("v"),
			}},
			Quota: &rlsv3.RateLimitResponse_Quota{Requests: 5, Id: "q", ExpirationSpecifier: &rlsv3.RateLimitResponse_Quota_ValidUntil{ValidUntil: timestamppb.Now()}},
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{
				Code:         rlsv3.RateLimitResponse_OK,
				CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{Name: "n", RequestsPerUnit: 3, UnitMultiplier: wrapperspb.UInt32(5)},
				Quota:        &rlsv3.RateLimitResponse_Quota{Requests: 1},
			}},
		}},
	}
	var reused Response
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := marshal(t, tt.resp)
			var fresh Response
			checkResponse(t, tt.resp, b, &fresh)
			checkResponse(t, tt.resp, b, &reused)
		})
	}
}

func randResponse(rng *rand.Rand) *rlsv3.RateLimitResponse {
	valid := func() string { return strings.ToValidUTF8(randString(rng), "") }
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_Code(rng.IntN(3))}
	n := rng.IntN(5)
	if rng.IntN(10) == 0 {
		n = 100 + rng.IntN(100)
	}
	for i := 0; i < n; i++ {
		st := &rlsv3.RateLimitResponse_DescriptorStatus{
			Code:           rlsv3.RateLimitResponse_Code(rng.IntN(3)),
			LimitRemaining: rng.Uint32() >> rng.IntN(32),
		}
		if rng.IntN(3) > 0 {
			st.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{
				Name:            valid(),
				RequestsPerUnit: rng.Uint32() >> rng.IntN(32),
				Unit:            rlsv3.RateLimitResponse_RateLimit_Unit(rng.IntN(8)),
			}
		}
		if rng.IntN(3) > 0 {
			secs := rng.Int64N(315576000001) >> rng.IntN(40)
			nanos := rng.Int32N(1e9)
			if rng.IntN(4) == 0 {
				secs, nanos = -secs, -nanos
			}
			st.DurationUntilReset = &durationpb.Duration{Seconds: secs, Nanos: nanos}
		}
		resp.Statuses = append(resp.Statuses, st)
	}
	for i := rng.IntN(4); i > 0; i-- {
		h := &corev3.HeaderValue{Key: valid(), Value: valid()}
		if rng.IntN(4) == 0 {
			h.Value, h.RawValue = "", []byte(randString(rng))
		}
		if rng.IntN(2) == 0 {
			resp.ResponseHeadersToAdd = append(resp.ResponseHeadersToAdd, h)
		} else {
			resp.RequestHeadersToAdd = append(resp.RequestHeadersToAdd, h)
		}
	}
	return resp
}

func TestParseResponseRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var reused Response
	for i := 0; i < 2000; i++ {
		want := randResponse(rng)
		checkResponse(t, want, marshal(t, want), &reused)
	}
}

func TestParseResponseSkipsUnknownFields(t *testing.T) {
	want := overLimitResponse()
	withUnknown := proto.Clone(want).(*rlsv3.RateLimitResponse)
	add := wiretest.AddUnknown
	add(withUnknown)
	for _, st := range withUnknown.Statuses {
		add(st)
		add(st.CurrentLimit)
		add(st.DurationUntilReset)
	}
	for _, h := range withUnknown.ResponseHeadersToAdd {
		add(h)
	}
	b := marshal(t, withUnknown)
	require.Greater(t, len(b), len(marshal(t, want))+4*len(wiretest.UnknownFields()))
	var out Response
	checkResponse(t, want, b, &out)

	// Known fields with an unexpected wire type are unknown fields to proto
	// too.
	var odd []byte
	odd = protowire.AppendBytes(protowire.AppendTag(odd, 1, protowire.BytesType), []byte("x"))
	odd = protowire.AppendVarint(protowire.AppendTag(odd, 2, protowire.VarintType), 5)
	odd = protowire.AppendFixed32(protowire.AppendTag(odd, 3, protowire.Fixed32Type), 5)
	var viaProto rlsv3.RateLimitResponse
	require.NoError(t, proto.Unmarshal(odd, &viaProto))
	checkResponse(t, &viaProto, odd, &out)
}

func TestParseResponseMergesRepeatedMessageFields(t *testing.T) {
	// A status whose current_limit and duration come in two parts each, as
	// a proto merge would produce.
	var st []byte
	st = protowire.AppendBytes(protowire.AppendTag(st, 2, protowire.BytesType), []byte{0x08, 0x05, 0x1a, 0x01, 'n'})
	st = protowire.AppendBytes(protowire.AppendTag(st, 2, protowire.BytesType), []byte{0x10, 0x02})
	st = protowire.AppendBytes(protowire.AppendTag(st, 4, protowire.BytesType), []byte{0x08, 0x03})
	st = protowire.AppendBytes(protowire.AppendTag(st, 4, protowire.BytesType), []byte{0x10, 0x07})
	b := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), st)
	b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), 1)
	b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), 2) // the last one wins

	var want rlsv3.RateLimitResponse
	require.NoError(t, proto.Unmarshal(b, &want))
	require.Equal(t, uint32(5), want.Statuses[0].CurrentLimit.RequestsPerUnit)
	var out Response
	checkResponse(t, &want, b, &out)
	require.Equal(t, CodeOverLimit, out.Overall)
	require.Equal(t, RateLimit{Name: "n", RequestsPerUnit: 5, Unit: UnitMinute}, out.Statuses[0].Limit)
	require.Equal(t, int64(3*time.Second+7), out.Statuses[0].DurationUntilReset)
}

func TestParseResponseTruncations(t *testing.T) {
	b := marshal(t, overLimitResponse())
	for i := 0; i < len(b); i++ {
		prefix := b[:i]
		var viaProto rlsv3.RateLimitResponse
		protoErr := proto.Unmarshal(prefix, &viaProto)
		var out Response
		err := ParseResponse(prefix, &out)
		if protoErr != nil {
			require.Error(t, err, "prefix %d", i)
			continue
		}
		// A cut between top-level fields leaves a valid, shorter message.
		require.NoError(t, err, "prefix %d", i)
		checkResponse(t, &viaProto, prefix, &out)
	}
}

func TestParseResponseRejectsMalformedInput(t *testing.T) {
	valid := marshal(t, overLimitResponse())
	status := marshal(t, overLimitResponse().Statuses[0])
	field := func(num protowire.Number, payload []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), payload)
	}
	tests := []struct {
		name string
		in   []byte
		err  error
		text string
	}{
		{"overlong varint", append([]byte{0x08}, strings.Repeat("\x80", 10)+"\x01"...), wire.ErrOverflow, "rls: response: wire: varint overflows 64 bits at offset 1"},
		{"status length past the end", append(append([]byte(nil), valid...), 0x12, 0x10, 0x08), wire.ErrLength, "rls: response: wire: length past the end"},
		{"truncated status", field(2, status[:len(status)-1]), wire.ErrLength, "rls: statuses: "},
		{"bad limit", field(2, field(2, []byte{0x08})), wire.ErrTruncated, "rls: statuses.current_limit: "},
		{"bad duration", field(2, field(4, []byte{0x08, 0xff})), wire.ErrTruncated, "rls: statuses.duration_until_reset: "},
		{"bad header", field(3, []byte{0x0a, 0x09}), wire.ErrLength, "rls: response_headers_to_add: "},
		{"bad request header", field(4, []byte{0x0f}), wire.ErrWireType, "rls: request_headers_to_add: "},
		{"group", append(append([]byte(nil), valid...), 0xa3, 0x06, 0xa4, 0x06), wire.ErrGroup, "rls: response: "},
		{"invalid utf-8 header key", field(3, field(1, []byte("\xff"))), wire.ErrUTF8, "rls: response_headers_to_add.key: "},
		{"invalid utf-8 header value", field(3, field(2, []byte("a\xc3"))), wire.ErrUTF8, "rls: response_headers_to_add.value: "},
		{"invalid utf-8 limit name", field(2, field(2, field(3, []byte("\xed\xa0\x80")))), wire.ErrUTF8, "rls: statuses.current_limit.name: "},
		{"field zero", []byte{0x00}, wire.ErrFieldNumber, "rls: response: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out Response
			err := ParseResponse(tt.in, &out)
			require.ErrorIs(t, err, tt.err)
			require.Contains(t, err.Error(), tt.text)
			if !errors.Is(err, wire.ErrGroup) {
				// proto (which keeps groups as unknown fields) rejects the
				// rest just the same.
				require.Error(t, proto.Unmarshal(tt.in, &rlsv3.RateLimitResponse{}))
			}
		})
	}
}

func TestAppendRequestAllocatesNothing(t *testing.T) {
	ds := []Descriptor{
		{Entries: []Entry{{"route", "chat"}, {"consumer", "team-a"}}},
		{Entries: []Entry{{"route", "chat"}, {"model", "gpt-4o-mini"}}, HitsAddend: 1200},
	}
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendRequest(buf[:0], "shepherd", ds, 1)
	})
	require.Zero(t, allocs)
}

func TestParseResponseIntoReusedResponseAllocatesNothing(t *testing.T) {
	b := marshal(t, overLimitResponse())
	var out Response
	require.NoError(t, ParseResponse(b, &out))
	allocs := testing.AllocsPerRun(1000, func() {
		if err := ParseResponse(b, &out); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
	checkResponse(t, overLimitResponse(), b, &out)

	// A response with fewer statuses and headers reuses the same slices.
	small := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK}}}
	sb := marshal(t, small)
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = ParseResponse(sb, &out) }))
	checkResponse(t, small, sb, &out)
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{})
	f.Add(marshal(f, overLimitResponse()))
	rng := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 8; i++ {
		if r := randResponse(rng); proto.Size(r) < 1000 { // small inputs mutate faster
			f.Add(marshal(f, r))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out Response
		err := ParseResponse(b, &out)
		var viaProto rlsv3.RateLimitResponse
		if proto.Unmarshal(b, &viaProto) != nil {
			return // ParseResponse skips fields proto checks; either answer is fine
		}
		if errors.Is(err, wire.ErrGroup) {
			return // proto keeps groups as unknown fields; Reader rejects them
		}
		require.NoError(t, err)
		checkResponse(t, &viaProto, b, &out)
	})
}

func benchDescriptors() []Descriptor {
	return []Descriptor{
		{Entries: []Entry{{"route", "chat"}, {"consumer", "team-a"}}},
		{Entries: []Entry{{"route", "chat"}, {"model", "gpt-4o-mini"}}, HitsAddend: 1200},
		{Entries: []Entry{{"generic_key", "global"}}},
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	ds := benchDescriptors()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendRequest(buf[:0], "shepherd", ds, 1)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkAppendRequestProto is the same request through proto.Marshal,
// for comparison.
func BenchmarkAppendRequestProto(b *testing.B) {
	req := toProto("shepherd", benchDescriptors(), 1)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var err error
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], req)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	msg := marshal(b, overLimitResponse())
	var out Response
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := ParseResponse(msg, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseResponseProto is the same response through proto.Unmarshal,
// for comparison.
func BenchmarkParseResponseProto(b *testing.B) {
	msg := marshal(b, overLimitResponse())
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var out rlsv3.RateLimitResponse
		if err := proto.Unmarshal(msg, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequestManyDescriptors(b *testing.B) {
	ds := make([]Descriptor, 64)
	for i := range ds {
		ds[i] = Descriptor{Entries: []Entry{{"route", "r" + strconv.Itoa(i)}, {"consumer", strings.Repeat("c", 150)}}}
	}
	buf := make([]byte, 0, 16<<10)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendRequest(buf[:0], "shepherd", ds, 1)
	}
	b.SetBytes(int64(len(buf)))
}
