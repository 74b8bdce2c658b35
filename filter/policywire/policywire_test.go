package policywire

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/shepherd-mesh/shepherd/filter/wire"
	"github.com/shepherd-mesh/shepherd/filter/wire/wiretest"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

func TestServiceNamesMatchGeneratedCode(t *testing.T) {
	require.Equal(t, policyv1.PolicyService_GetPolicy_FullMethodName, "/"+Service+"/"+MethodGetPolicy)
	require.Equal(t, policyv1.PolicyService_WatchPolicy_FullMethodName, "/"+Service+"/"+MethodWatchPolicy)
	require.Equal(t, policyv1.PolicyService_ReportOutcomes_FullMethodName, "/"+Service+"/"+MethodReportOutcomes)
}

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestAppendPolicyRequests(t *testing.T) {
	for _, v := range []uint64{0, 1, 1764222000000, math.MaxUint64} {
		got := AppendGetPolicyRequest([]byte("p"), v)
		require.Equal(t, "p", string(got[:1]))
		require.Equal(t, marshal(t, &policyv1.GetPolicyRequest{KnownVersion: v}), got[1:])
		var req policyv1.GetPolicyRequest
		require.NoError(t, proto.Unmarshal(got[1:], &req))
		require.Equal(t, v, req.KnownVersion)

		require.Equal(t, marshal(t, &policyv1.WatchPolicyRequest{KnownVersion: v}), AppendWatchPolicyRequest([]byte{}, v))
	}
}

func outcomeToProto(o Outcome) *policyv1.Outcome {
	v := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	return &policyv1.Outcome{
		Route: v(o.Route), Provider: v(o.Provider), Model: v(o.Model), Consumer: v(o.Consumer),
		StatusCode: o.StatusCode, LatencyMs: o.LatencyMs,
		InputTokens: o.InputTokens, OutputTokens: o.OutputTokens, CostMicroUsd: o.CostMicroUSD,
		HasRatelimitRemaining: o.HasRatelimitRemaining, RatelimitRemaining: o.RatelimitRemaining,
		RetryAfterMs: o.RetryAfterMs,
	}
}

func checkOutcomes(t *testing.T, outcomes []Outcome) {
	t.Helper()
	got := AppendReportOutcomesRequest([]byte("p"), outcomes)
	require.Equal(t, "p", string(got[:1]))
	got = got[1:]
	want := &policyv1.ReportOutcomesRequest{}
	for _, o := range outcomes {
		want.Outcomes = append(want.Outcomes, outcomeToProto(o))
	}
	var parsed policyv1.ReportOutcomesRequest
	require.NoError(t, proto.Unmarshal(got, &parsed))
	require.True(t, proto.Equal(want, &parsed), "want %v\ngot  %v", want, &parsed)
	require.Equal(t, marshal(t, want), got)
}

func TestAppendReportOutcomesRequestTable(t *testing.T) {
	tests := []struct {
		name     string
		outcomes []Outcome
	}{
		{"none", nil},
		{"zero outcome", []Outcome{{}}},
		{"success", []Outcome{{Route: "chat", Provider: "openai", Model: "gpt-4o-mini", Consumer: "team-a",
			StatusCode: 200, LatencyMs: 812, InputTokens: 1200, OutputTokens: 300, CostMicroUSD: 4500}}},
		{"throttled", []Outcome{{Route: "chat", Provider: "relay", StatusCode: 429, HasRatelimitRemaining: true, RetryAfterMs: 30000}}},
		{"zero remaining is sent", []Outcome{{HasRatelimitRemaining: true, RatelimitRemaining: 0}}},
		{"negative and extreme values", []Outcome{{CostMicroUSD: math.MinInt64, RatelimitRemaining: -1,
			InputTokens: math.MaxUint64, OutputTokens: math.MaxUint64, StatusCode: math.MaxUint32, LatencyMs: math.MaxUint32, RetryAfterMs: math.MaxUint32}}},
		{"unicode", []Outcome{{Route: "чат", Model: "模型-🙂", Consumer: "équipe"}}},
		{"invalid utf-8 model repaired", []Outcome{{Model: "gpt\xff\xfe-4", Consumer: "\xc3"}}},
		{"long strings", []Outcome{{Route: strings.Repeat("r", 200), Model: strings.Repeat("m", 20000)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkOutcomes(t, tt.outcomes) })
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

func validString(rng *rand.Rand) string { return strings.ToValidUTF8(randString(rng), "") }

func randU64(rng *rand.Rand) uint64 { return rng.Uint64() >> rng.IntN(65) }
func randI64(rng *rand.Rand) int64 {
	v := int64(rng.Uint64() >> rng.IntN(65))
	if rng.IntN(2) == 0 {
		v = -v
	}
	return v
}

func TestAppendReportOutcomesRequestRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 1000; i++ {
		n := rng.IntN(5)
		if rng.IntN(10) == 0 {
			n = 200
		}
		outcomes := make([]Outcome, n)
		for j := range outcomes {
			outcomes[j] = Outcome{
				Route: randString(rng), Provider: randString(rng), Model: randString(rng), Consumer: randString(rng),
				StatusCode: uint32(randU64(rng)), LatencyMs: uint32(randU64(rng)),
				InputTokens: randU64(rng), OutputTokens: randU64(rng), CostMicroUSD: randI64(rng),
				HasRatelimitRemaining: rng.IntN(2) == 0, RatelimitRemaining: randI64(rng), RetryAfterMs: uint32(randU64(rng)),
			}
		}
		checkOutcomes(t, outcomes)
	}
}

// checkPolicy compares a parsed Policy with the proto it was marshalled
// from, field by field.
func checkPolicy(t *testing.T, want *policyv1.Policy, got Policy) {
	t.Helper()
	require.Equal(t, want.GetVersion(), got.Version)
	require.Equal(t, want.GetGeneratedUnixMs(), got.GeneratedUnixMs)
	require.Len(t, got.Weights, len(want.GetWeights()))
	for i, w := range want.GetWeights() {
		require.Equal(t, RouteWeight{Route: w.GetRoute(), Provider: w.GetProvider(), WeightBP: w.GetWeightBp()}, got.Weights[i])
	}
	require.Len(t, got.Health, len(want.GetHealth()))
	for i, h := range want.GetHealth() {
		require.Equal(t, ProviderHealth{Provider: h.GetProvider(), CooldownUntilUnixMs: h.GetCooldownUntilUnixMs(), Reason: h.GetReason()}, got.Health[i])
	}
	require.Len(t, got.Budgets, len(want.GetBudgets()))
	for i, b := range want.GetBudgets() {
		require.Equal(t, Budget{Route: b.GetRoute(), Consumer: b.GetConsumer(), Period: b.GetPeriod(),
			Spent: b.GetSpentMicroUsd(), Limit: b.GetLimitMicroUsd(), Exhausted: b.GetExhausted()}, got.Budgets[i])
	}
	require.Len(t, got.Credentials, len(want.GetCredentials()))
	for i, c := range want.GetCredentials() {
		require.True(t, Credential{Provider: c.GetProvider(), Header: c.GetHeader(), Value: c.GetValue()} == got.Credentials[i], "credential %d differs", i)
	}
}

func samplePolicy() *policyv1.Policy {
	return &policyv1.Policy{
		Version:         1764222000123,
		GeneratedUnixMs: 1764222000100,
		Weights: []*policyv1.RouteWeight{
			{Route: "chat", Provider: "openai", WeightBp: 7500},
			{Route: "chat", Provider: "relay", WeightBp: 2500},
			{Route: "embed", Provider: "openai", WeightBp: 10000},
		},
		Health: []*policyv1.ProviderHealth{
			{Provider: "openai"},
			{Provider: "relay", CooldownUntilUnixMs: 1764222030000, Reason: "18 of 20 outcomes failed (429/5xx) within 10s"},
		},
		Budgets: []*policyv1.Budget{
			{Route: "chat", Period: "2026-11", SpentMicroUsd: 123456789, LimitMicroUsd: 500000000},
			{Consumer: "team-a", Period: "2026-11", SpentMicroUsd: 50000000, LimitMicroUsd: 50000000, Exhausted: true},
		},
		Credentials: []*policyv1.Credential{
			{Provider: "openai", Header: "authorization", Value: "Bearer sk-secret-openai"},
			{Provider: "relay", Header: "x-api-key", Value: "relay-secret-key"},
		},
	}
}

func randPolicy(rng *rand.Rand) *policyv1.Policy {
	p := &policyv1.Policy{Version: randU64(rng), GeneratedUnixMs: randI64(rng)}
	count := func() int {
		if rng.IntN(10) == 0 {
			return 100 + rng.IntN(200)
		}
		return rng.IntN(4)
	}
	for i := count(); i > 0; i-- {
		p.Weights = append(p.Weights, &policyv1.RouteWeight{Route: validString(rng), Provider: validString(rng), WeightBp: uint32(randU64(rng))})
	}
	for i := count(); i > 0; i-- {
		p.Health = append(p.Health, &policyv1.ProviderHealth{Provider: validString(rng), CooldownUntilUnixMs: randI64(rng), Reason: validString(rng)})
	}
	for i := count(); i > 0; i-- {
		p.Budgets = append(p.Budgets, &policyv1.Budget{Route: validString(rng), Consumer: validString(rng), Period: validString(rng),
			SpentMicroUsd: randI64(rng), LimitMicroUsd: randI64(rng), Exhausted: rng.IntN(2) == 0})
	}
	for i := count(); i > 0; i-- {
		p.Credentials = append(p.Credentials, &policyv1.Credential{Provider: validString(rng), Header: validString(rng), Value: validString(rng)})
	}
	return p
}

func TestParsePolicyTableAndRandom(t *testing.T) {
	policies := []*policyv1.Policy{
		{},
		samplePolicy(),
		{Weights: []*policyv1.RouteWeight{{}}, Health: []*policyv1.ProviderHealth{{}}, Budgets: []*policyv1.Budget{{}}, Credentials: []*policyv1.Credential{{}}},
		{Version: math.MaxUint64, GeneratedUnixMs: math.MinInt64, Budgets: []*policyv1.Budget{{SpentMicroUsd: math.MaxInt64, LimitMicroUsd: -1}}},
		{Weights: []*policyv1.RouteWeight{{Route: "маршрут", Provider: "提供者🙂", WeightBp: math.MaxUint32}}},
	}
	rng := rand.New(rand.NewPCG(13, 14))
	for i := 0; i < 1000; i++ {
		policies = append(policies, randPolicy(rng))
	}
	for _, want := range policies {
		b := marshal(t, want)
		got, err := ParsePolicy(b)
		require.NoError(t, err)
		checkPolicy(t, want, got)
	}
}

func TestParseGetPolicyResponse(t *testing.T) {
	t.Run("policy", func(t *testing.T) {
		want := &policyv1.GetPolicyResponse{Policy: samplePolicy(), Version: samplePolicy().Version}
		b := marshal(t, want)
		var out PolicyResponse
		require.NoError(t, ParseGetPolicyResponse(b, &out))
		require.False(t, out.NotModified)
		require.Equal(t, want.Version, out.Version)
		checkPolicy(t, want.Policy, out.Policy)
		require.Equal(t, marshal(t, want.Policy), out.RawPolicy)

		// The raw bytes decode to the same policy (as every VM does from
		// shared data).
		again, err := ParsePolicy(out.RawPolicy)
		require.NoError(t, err)
		require.Equal(t, out.Policy, again)

		// Parsing the next response into the same value leaves the policy
		// handed out before as it was.
		kept := out.Policy
		next := &policyv1.GetPolicyResponse{Policy: &policyv1.Policy{Version: 9, Weights: []*policyv1.RouteWeight{{Route: "x"}}}, Version: 9}
		require.NoError(t, ParseGetPolicyResponse(marshal(t, next), &out))
		checkPolicy(t, next.Policy, out.Policy)
		checkPolicy(t, want.Policy, kept)
	})
	t.Run("not modified", func(t *testing.T) {
		want := &policyv1.GetPolicyResponse{NotModified: true, Version: 42}
		out := PolicyResponse{Policy: Policy{Version: 1}, RawPolicy: []byte("old")}
		require.NoError(t, ParseGetPolicyResponse(marshal(t, want), &out))
		require.Equal(t, PolicyResponse{NotModified: true, Version: 42}, out)
	})
	t.Run("empty policy is sent", func(t *testing.T) {
		want := &policyv1.GetPolicyResponse{Policy: &policyv1.Policy{}}
		var out PolicyResponse
		require.NoError(t, ParseGetPolicyResponse(marshal(t, want), &out))
		require.NotNil(t, out.RawPolicy)
		require.Empty(t, out.RawPolicy)
	})
	t.Run("empty response", func(t *testing.T) {
		var out PolicyResponse
		require.NoError(t, ParseGetPolicyResponse(nil, &out))
		require.Equal(t, PolicyResponse{}, out)
	})
	t.Run("policy in two parts merges", func(t *testing.T) {
		p1 := marshal(t, &policyv1.Policy{Version: 1, Weights: []*policyv1.RouteWeight{{Route: "a"}}})
		p2 := marshal(t, &policyv1.Policy{Version: 2, Weights: []*policyv1.RouteWeight{{Route: "b"}}})
		b := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), p1)
		b = protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType), p2)
		var want policyv1.GetPolicyResponse
		require.NoError(t, proto.Unmarshal(b, &want))
		var out PolicyResponse
		require.NoError(t, ParseGetPolicyResponse(b, &out))
		checkPolicy(t, want.Policy, out.Policy)
		require.Equal(t, uint64(2), out.Policy.Version)
		require.Len(t, out.Policy.Weights, 2)
		// The first part is not overwritten in the input.
		require.Equal(t, p1, b[2:2+len(p1)])
	})
}

func TestParseReportOutcomesResponse(t *testing.T) {
	for _, want := range []*policyv1.ReportOutcomesResponse{{}, {Accepted: 10000, Version: 1764222000123}, {Accepted: math.MaxUint32, Version: math.MaxUint64}} {
		b := append(marshal(t, want), wiretest.UnknownFields()...)
		accepted, version, err := ParseReportOutcomesResponse(b)
		require.NoError(t, err)
		require.Equal(t, want.Accepted, accepted)
		require.Equal(t, want.Version, version)
	}
	_, _, err := ParseReportOutcomesResponse([]byte{0x08})
	require.ErrorIs(t, err, wire.ErrTruncated)
	require.Contains(t, err.Error(), "policywire: report outcomes response: ")
}

func TestParseSkipsUnknownFields(t *testing.T) {
	want := samplePolicy()
	withUnknown := proto.Clone(want).(*policyv1.Policy)
	add := wiretest.AddUnknown
	add(withUnknown)
	for _, m := range withUnknown.Weights {
		add(m)
	}
	for _, m := range withUnknown.Health {
		add(m)
	}
	for _, m := range withUnknown.Budgets {
		add(m)
	}
	for _, m := range withUnknown.Credentials {
		add(m)
	}
	resp := &policyv1.GetPolicyResponse{Policy: withUnknown, Version: want.Version}
	add(resp)
	b := marshal(t, resp)

	var out PolicyResponse
	require.NoError(t, ParseGetPolicyResponse(b, &out))
	require.Equal(t, want.Version, out.Version)
	checkPolicy(t, want, out.Policy)

	// Known fields with an unexpected wire type are unknown fields to proto
	// too.
	var odd []byte
	odd = protowire.AppendBytes(protowire.AppendTag(odd, 1, protowire.BytesType), []byte("x"))
	odd = protowire.AppendVarint(protowire.AppendTag(odd, 3, protowire.VarintType), 5)
	odd = protowire.AppendFixed64(protowire.AppendTag(odd, 6, protowire.Fixed64Type), 5)
	var viaProto policyv1.Policy
	require.NoError(t, proto.Unmarshal(odd, &viaProto))
	got, err := ParsePolicy(odd)
	require.NoError(t, err)
	checkPolicy(t, &viaProto, got)
}

func TestTruncations(t *testing.T) {
	b := marshal(t, &policyv1.GetPolicyResponse{Policy: samplePolicy(), Version: 7})
	for i := 0; i < len(b); i++ {
		prefix := b[:i]
		var viaProto policyv1.GetPolicyResponse
		protoErr := proto.Unmarshal(prefix, &viaProto)
		var out PolicyResponse
		err := ParseGetPolicyResponse(prefix, &out)
		if protoErr != nil {
			require.Error(t, err, "prefix %d", i)
			continue
		}
		require.NoError(t, err, "prefix %d", i)
		require.Equal(t, viaProto.Version, out.Version)
		checkPolicy(t, viaProto.Policy, out.Policy)
	}
	p := marshal(t, samplePolicy())
	for i := 0; i < len(p); i++ {
		var viaProto policyv1.Policy
		protoErr := proto.Unmarshal(p[:i], &viaProto)
		got, err := ParsePolicy(p[:i])
		if protoErr != nil {
			require.Error(t, err, "prefix %d", i)
			require.Equal(t, Policy{}, got)
			continue
		}
		require.NoError(t, err, "prefix %d", i)
		checkPolicy(t, &viaProto, got)
	}
}

const secret = "Bearer sk-secret-openai"

func TestRejectsMalformedInput(t *testing.T) {
	field := func(num protowire.Number, payload []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), payload)
	}
	badCred := field(6, append(field(1, []byte("openai")), field(3, []byte(secret+"\xff"))...))
	tests := []struct {
		name string
		in   []byte
		err  error
		text string
	}{
		{"overlong version", append([]byte{0x08}, strings.Repeat("\xff", 10)+"\x01"...), wire.ErrOverflow, "policywire: policy: wire: varint overflows 64 bits at offset 1"},
		{"weights past the end", field(3, []byte{0x0a, 0x05, 'a'}), wire.ErrLength, "policywire: policy.weights: "},
		{"health truncated varint", field(4, []byte{0x10, 0x80}), wire.ErrTruncated, "policywire: policy.health: "},
		{"budget group", field(5, []byte{0x0b, 0x0c}), wire.ErrGroup, "policywire: policy.budgets: "},
		{"credential bad wire type", field(6, []byte{0x0e}), wire.ErrWireType, "policywire: policy.credentials: "},
		{"invalid utf-8 route", field(3, field(1, []byte("\xff"))), wire.ErrUTF8, "policywire: policy.weights.route: "},
		{"invalid utf-8 reason", field(4, field(3, []byte("\xc3("))), wire.ErrUTF8, "policywire: policy.health.reason: "},
		{"invalid utf-8 period", field(5, field(3, []byte("\xed\xa0\x80"))), wire.ErrUTF8, "policywire: policy.budgets.period: "},
		{"invalid utf-8 credential value", badCred, wire.ErrUTF8, "policywire: policy.credentials.value: "},
		{"field zero", []byte{0x00}, wire.ErrFieldNumber, "policywire: policy: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePolicy(tt.in)
			require.ErrorIs(t, err, tt.err)
			require.Contains(t, err.Error(), tt.text)
			require.NotContains(t, err.Error(), "secret")
			require.Equal(t, Policy{}, got)
			if !errors.Is(err, wire.ErrGroup) {
				require.Error(t, proto.Unmarshal(tt.in, &policyv1.Policy{}))
			}

			// The same policy inside a GetPolicyResponse.
			var out PolicyResponse
			err = ParseGetPolicyResponse(field(2, tt.in), &out)
			require.ErrorIs(t, err, tt.err)
			require.NotContains(t, err.Error(), "secret")
		})
	}
	var out PolicyResponse
	err := ParseGetPolicyResponse([]byte{0x12, 0x05}, &out)
	require.ErrorIs(t, err, wire.ErrLength)
	require.Contains(t, err.Error(), "policywire: get policy response: ")
}

func TestCredentialValuesStayOutOfFormatting(t *testing.T) {
	got, err := ParsePolicy(marshal(t, samplePolicy()))
	require.NoError(t, err)
	require.Equal(t, secret, got.Credentials[0].Value)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{got, &got, got.Credentials, got.Credentials[0], &got.Credentials[0]} {
			s := fmt.Sprintf(verb, v)
			require.NotContains(t, s, "secret", "%s of %T", verb, v)
		}
	}
	var resp PolicyResponse
	require.NoError(t, ParseGetPolicyResponse(marshal(t, &policyv1.GetPolicyResponse{Policy: samplePolicy(), Version: 9}), &resp))
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		for _, v := range []any{resp, &resp} {
			s := fmt.Sprintf(verb, v)
			require.NotContains(t, s, "secret", "%s of %T", verb, v)
		}
	}
	require.Equal(t, "policy response: version 9, policy version 1764222000123 of "+strconv.Itoa(len(marshal(t, samplePolicy())))+" bytes", resp.String())
	require.Equal(t, "policy response: version 9 not modified", PolicyResponse{NotModified: true, Version: 9}.String())
	require.Equal(t, "{openai authorization [redacted]}", got.Credentials[0].String())
	require.Equal(t, `policywire.Credential{Provider:"openai", Header:"authorization", Value:[redacted]}`, got.Credentials[0].GoString())
}

func TestAppendReportOutcomesRequestAllocatesNothing(t *testing.T) {
	outcomes := benchOutcomes()
	buf := make([]byte, 0, 4096)
	require.Zero(t, testing.AllocsPerRun(1000, func() { buf = AppendReportOutcomesRequest(buf[:0], outcomes) }))
	require.Zero(t, testing.AllocsPerRun(1000, func() { buf = AppendGetPolicyRequest(buf[:0], 1764222000123) }))
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte{})
	f.Add(marshal(f, samplePolicy()))
	rng := rand.New(rand.NewPCG(15, 16))
	for i := 0; i < 8; i++ {
		if p := randPolicy(rng); proto.Size(p) < 1000 { // small inputs mutate faster
			f.Add(marshal(f, p))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParsePolicy(b)
		var viaProto policyv1.Policy
		protoErr := proto.Unmarshal(b, &viaProto)
		if errors.Is(err, wire.ErrGroup) {
			return // proto keeps groups as unknown fields; Reader rejects them
		}
		// Every field of Policy is decoded, so both accept the same input.
		require.Equal(t, protoErr == nil, err == nil, "proto: %v, ours: %v", protoErr, err)
		if err == nil {
			checkPolicy(t, &viaProto, got)
		}
		var out PolicyResponse
		wrapped := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), b)
		require.Equal(t, err == nil, ParseGetPolicyResponse(wrapped, &out) == nil)
	})
}

func benchOutcomes() []Outcome {
	outcomes := make([]Outcome, 32)
	for i := range outcomes {
		outcomes[i] = Outcome{Route: "chat", Provider: "openai", Model: "gpt-4o-mini", Consumer: "team-a",
			StatusCode: 200, LatencyMs: 812, InputTokens: 1200, OutputTokens: 300, CostMicroUSD: 4500,
			HasRatelimitRemaining: true, RatelimitRemaining: 9000}
	}
	return outcomes
}

func BenchmarkAppendReportOutcomesRequest(b *testing.B) {
	outcomes := benchOutcomes()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendReportOutcomesRequest(buf[:0], outcomes)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkParseGetPolicyResponse(b *testing.B) {
	msg := marshal(b, &policyv1.GetPolicyResponse{Policy: samplePolicy(), Version: 7})
	var out PolicyResponse
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := ParseGetPolicyResponse(msg, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseGetPolicyResponseNotModified(b *testing.B) {
	msg := marshal(b, &policyv1.GetPolicyResponse{NotModified: true, Version: 1764222000123})
	var out PolicyResponse
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := ParseGetPolicyResponse(msg, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseGetPolicyResponseProto is the same response through
// proto.Unmarshal, for comparison.
func BenchmarkParseGetPolicyResponseProto(b *testing.B) {
	msg := marshal(b, &policyv1.GetPolicyResponse{Policy: samplePolicy(), Version: 7})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var out policyv1.GetPolicyResponse
		if err := proto.Unmarshal(msg, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParsePolicyCopiesOnceAndKeepsNoAlias(t *testing.T) {
	b := marshal(t, samplePolicy())
	got, err := ParsePolicy(b)
	require.NoError(t, err)
	for i := range b {
		b[i] = 'X'
	}
	checkPolicy(t, samplePolicy(), got)

	// One string copy of the message plus one slice per repeated field.
	b = marshal(t, samplePolicy())
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParsePolicy(b); err != nil {
			t.Fatal(err)
		}
	})
	require.Equal(t, 5.0, allocs)
	require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = ParsePolicy(marshalledVersionOnly) }))
}

var marshalledVersionOnly = []byte{0x08, 0x07}

func BenchmarkParsePolicy(b *testing.B) {
	msg := marshal(b, samplePolicy())
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParsePolicy(msg); err != nil {
			b.Fatal(err)
		}
	}
}
