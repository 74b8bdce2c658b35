package mesh

import (
	"math"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/policywire"
	"github.com/shepherd-mesh/shepherd/filter/rls"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

const testConfig = `{
  "sidecar": {"cluster": "sidecar"},
  "providers": [{"name": "a", "host": "a.example.com"}, {"name": "b", "host": "b.example.com"}, {"name": "c", "host": "c.example.com"}],
  "routes": [
    {"name": "chat", "match": {"pathPrefix": "/v1/"}, "providers": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}],
     "globalLimits": {"domain": "llm", "descriptors": ["route", "provider", "model", "consumer"], "consumerHeader": "x-tenant", "tokens": true}},
    {"name": "solo", "match": {"pathPrefix": "/"}, "provider": "c", "globalLimits": {}}
  ]}`

func testCfg(t *testing.T) *config.Config {
	cfg, err := config.Parse([]byte(testConfig), nil)
	require.NoError(t, err)
	return cfg
}

// share counts how often each provider is chosen over 1000 picks spread evenly
// over [0, 10000).
func share(o *Overlay, r *config.Route, nowMs int64) map[string]int {
	got := map[string]int{}
	for i := uint64(0); i < 1000; i++ {
		got[o.Choose(r, i*10, nowMs).Name]++
	}
	return got
}

func TestOverlayChoose(t *testing.T) {
	cfg := testCfg(t)
	chat := cfg.Routes[0]
	cases := []struct {
		name   string
		policy policywire.Policy
		want   map[string]int
	}{
		{"no policy keeps the config's weights", policywire.Policy{}, map[string]int{"a": 900, "b": 100}},
		{"canary weights override", policywire.Policy{Weights: []policywire.RouteWeight{
			{Route: "chat", Provider: "a", WeightBP: 5000}, {Route: "chat", Provider: "b", WeightBP: 5000}}},
			map[string]int{"a": 500, "b": 500}},
		{"all on the canary", policywire.Policy{Weights: []policywire.RouteWeight{
			{Route: "chat", Provider: "a", WeightBP: 0}, {Route: "chat", Provider: "b", WeightBP: 10000}}},
			map[string]int{"b": 1000}},
		{"weights of all zero are ignored", policywire.Policy{Weights: []policywire.RouteWeight{
			{Route: "chat", Provider: "a", WeightBP: 0}}}, map[string]int{"a": 900, "b": 100}},
		{"unknown routes and providers are ignored", policywire.Policy{Weights: []policywire.RouteWeight{
			{Route: "other", Provider: "a", WeightBP: 10000}, {Route: "chat", Provider: "z", WeightBP: 10000}}},
			map[string]int{"a": 900, "b": 100}},
		{"a cooling provider is skipped", policywire.Policy{Health: []policywire.ProviderHealth{
			{Provider: "a", CooldownUntilUnixMs: 2000}}}, map[string]int{"b": 1000}},
		{"an ended cooldown is not", policywire.Policy{Health: []policywire.ProviderHealth{
			{Provider: "a", CooldownUntilUnixMs: 1000}}}, map[string]int{"a": 900, "b": 100}},
		{"the other provider serves even at weight 0", policywire.Policy{
			Weights: []policywire.RouteWeight{{Route: "chat", Provider: "a", WeightBP: 10000}, {Route: "chat", Provider: "b", WeightBP: 0}},
			Health:  []policywire.ProviderHealth{{Provider: "a", CooldownUntilUnixMs: 2000}}}, map[string]int{"b": 1000}},
		{"all cooling: cooldowns ignored", policywire.Policy{Health: []policywire.ProviderHealth{
			{Provider: "a", CooldownUntilUnixMs: 2000}, {Provider: "b", CooldownUntilUnixMs: 2000}}},
			map[string]int{"a": 900, "b": 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOverlay(cfg, &tc.policy)
			require.Equal(t, tc.want, share(o, chat, 1500))
		})
	}
	var none *Overlay
	require.Equal(t, map[string]int{"a": 900, "b": 100}, share(none, chat, 0), "a nil overlay is the config")
	require.Equal(t, "c", none.Choose(cfg.Routes[1], 7, 0).Name)
}

// TestOverlayChooseAvoiding: backends the filter's own provider memory marks
// are skipped like the sidecar's cooldowns, and both combine.
func TestOverlayChooseAvoiding(t *testing.T) {
	cfg := testCfg(t)
	chat := cfg.Routes[0]
	count := func(o *Overlay, avoid uint64) map[string]int {
		got := map[string]int{}
		for i := uint64(0); i < 1000; i++ {
			got[o.ChooseAvoiding(chat, i*10, 1500, avoid).Name]++
		}
		return got
	}
	bCools := NewOverlay(cfg, &policywire.Policy{Health: []policywire.ProviderHealth{{Provider: "b", CooldownUntilUnixMs: 2000}}})
	cases := []struct {
		name  string
		o     *Overlay
		avoid uint64
		want  map[string]int
	}{
		{"nothing avoided", nil, 0, map[string]int{"a": 900, "b": 100}},
		{"a avoided", nil, 1, map[string]int{"b": 1000}},
		{"b avoided", nil, 2, map[string]int{"a": 1000}},
		{"a avoided, b cooling by policy: both ignored", bCools, 1, map[string]int{"a": 900, "b": 100}},
		{"bits past the backends mean nothing", nil, 1 << 5, map[string]int{"a": 900, "b": 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, count(tc.o, tc.avoid))
		})
	}
}

func TestOverlayBudgetsAndCredentials(t *testing.T) {
	cfg := testCfg(t)
	o := NewOverlay(cfg, &policywire.Policy{
		Version: 7,
		Budgets: []policywire.Budget{
			{Route: "chat", Exhausted: true}, {Route: "solo", Exhausted: false},
			{Consumer: "team-a", Exhausted: true}, {Consumer: "team-b"}, {Route: "gone", Exhausted: true},
		},
		Credentials: []policywire.Credential{
			{Provider: "a", Header: "authorization", Value: "Bearer sk-policy"},
			{Provider: "b", Header: "x-api-key", Value: ""}, {Provider: "z", Header: "authorization", Value: "x"},
		},
	})
	require.EqualValues(t, 7, o.Version)
	require.True(t, o.RouteExhausted(cfg.Routes[0]))
	require.False(t, o.RouteExhausted(cfg.Routes[1]))
	require.True(t, o.ConsumerExhausted("team-a"))
	require.False(t, o.ConsumerExhausted("team-b"))
	require.False(t, o.ConsumerExhausted(""))
	c, ok := o.Credential(cfg.Providers[0])
	require.True(t, ok)
	require.Equal(t, Credential{Header: "authorization", Value: "Bearer sk-policy"}, c)
	_, ok = o.Credential(cfg.Providers[1])
	require.False(t, ok, "an empty value is no credential")

	var none *Overlay
	require.False(t, none.RouteExhausted(cfg.Routes[0]))
	require.False(t, none.ConsumerExhausted("team-a"))
	_, ok = none.Credential(cfg.Providers[0])
	require.False(t, ok)
}

// TestOverlayWorkloadBudgets: a workload's own budget and its namespace's
// ("team-a/*") both refuse it; other namespaces and workloads go on.
func TestOverlayWorkloadBudgets(t *testing.T) {
	cfg := testCfg(t)
	o := NewOverlay(cfg, &policywire.Policy{Version: 1, Budgets: []policywire.Budget{
		{Consumer: "team-a/*", Exhausted: true}, {Consumer: "team-b/chat", Exhausted: true},
		{Consumer: "team-c/*"}, {Consumer: "*", Exhausted: true}, {Consumer: "/*", Exhausted: true},
	}})
	for c, want := range map[string]bool{
		"team-a/chat": true, "team-a/batch": true, "team-b/chat": true,
		"team-b/batch": false, "team-c/chat": false, "team-ab/chat": false, "team-a": false,
		"team-a/": false, "unauthenticated": false,
	} {
		require.Equal(t, want, o.ConsumerExhausted(c), c)
	}
}

func TestStickyPick(t *testing.T) {
	cfg := testCfg(t)
	chat := cfg.Routes[0]
	require.Equal(t, StickyPick("user-1"), StickyPick("user-1"))
	got := map[string]int{}
	for i := 0; i < 10000; i++ {
		key := "user-" + string(rune('a'+i%26)) + itoaTest(i)
		p := (*Overlay)(nil).Choose(chat, StickyPick(key), 0)
		require.Same(t, p, (*Overlay)(nil).Choose(chat, StickyPick(key), 0), "the same key sticks")
		got[p.Name]++
	}
	require.InDelta(t, 9000, got["a"], 300, "keys spread by weight: %v", got)
}

func itoaTest(i int) string {
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestDescriptor(t *testing.T) {
	cfg := testCfg(t)
	g := cfg.Routes[0].GlobalLimits
	d := NewDescriptor(g, Values{Route: "chat", Provider: "a", Consumer: "team-a"})
	require.Equal(t, []rls.Entry{{Key: "route", Value: "chat"}, {Key: "provider", Value: "a"}, {Key: "consumer", Value: "team-a"}}, d.Requests(),
		"empty values (the model) are left out")
	require.Equal(t, []rls.Entry{{Key: "kind", Value: "tokens"}, {Key: "route", Value: "chat"}, {Key: "provider", Value: "a"}, {Key: "consumer", Value: "team-a"}}, d.Tokens())
	require.False(t, d.Empty())
	e := NewDescriptor(cfg.Routes[1].GlobalLimits, Values{Provider: "c"})
	require.True(t, e.Empty())
}

// TestAppendCheckMatchesGoControlPlane decodes the admission request with
// go-control-plane's generated types.
func TestAppendCheckMatchesGoControlPlane(t *testing.T) {
	cfg := testCfg(t)
	g := cfg.Routes[0].GlobalLimits
	d := NewDescriptor(g, Values{Route: "chat", Provider: "a", Model: "gpt-4.1", Consumer: "team-a"})
	var got rlsv3.RateLimitRequest
	require.NoError(t, proto.Unmarshal(AppendCheck(nil, g, &d, nil), &got))
	entries := func(kv ...string) []*commonrl.RateLimitDescriptor_Entry {
		var out []*commonrl.RateLimitDescriptor_Entry
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &commonrl.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	want := &rlsv3.RateLimitRequest{
		Domain:     "llm",
		HitsAddend: 1,
		Descriptors: []*commonrl.RateLimitDescriptor{
			{Entries: entries("route", "chat", "provider", "a", "model", "gpt-4.1", "consumer", "team-a")},
			{Entries: entries("kind", "tokens", "route", "chat", "provider", "a", "model", "gpt-4.1", "consumer", "team-a"),
				HitsAddend: wrapperspb.UInt64(0)},
		},
	}
	require.True(t, proto.Equal(want, &got), "got %v", &got)

	solo := cfg.Routes[1].GlobalLimits
	d2 := NewDescriptor(solo, Values{Route: "solo"})
	got.Reset()
	require.NoError(t, proto.Unmarshal(AppendCheck(nil, solo, &d2, nil), &got))
	require.True(t, proto.Equal(&rlsv3.RateLimitRequest{Domain: "shepherd", HitsAddend: 1,
		Descriptors: []*commonrl.RateLimitDescriptor{{Entries: entries("route", "solo")}}}, &got), "no token descriptor: %v", &got)
}

func TestJudge(t *testing.T) {
	limited := rls.Status{Code: rls.CodeOverLimit, HasLimit: true, Limit: rls.RateLimit{RequestsPerUnit: 20, Unit: rls.UnitMinute},
		DurationUntilReset: 30e9}
	cases := []struct {
		name string
		resp rls.Response
		v    Verdict
		kind limits.Kind
		dec  limits.Decision
	}{
		{"ok", rls.Response{Overall: rls.CodeOK}, Allow, limits.Requests, limits.Decision{Allowed: true}},
		{"requests over", rls.Response{Overall: rls.CodeOverLimit, Statuses: []rls.Status{limited, {Code: rls.CodeOK}}},
			Deny, limits.Requests, limits.Decision{Limit: 20, ResetAfter: 30e9, RetryAfter: 30e9}},
		{"tokens over", rls.Response{Overall: rls.CodeOverLimit, Statuses: []rls.Status{{Code: rls.CodeOK}, limited}},
			Deny, limits.Tokens, limits.Decision{Limit: 20, ResetAfter: 30e9, RetryAfter: 30e9}},
		{"over without statuses", rls.Response{Overall: rls.CodeOverLimit}, Deny, limits.Requests, limits.Decision{}},
		{"no overall code is a failure", rls.Response{}, Fail, limits.Requests, limits.Decision{}},
		{"an unknown code is a failure", rls.Response{Overall: 9}, Fail, limits.Requests, limits.Decision{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, kind, dec := Judge(&tc.resp)
			require.Equal(t, tc.v, v)
			require.Equal(t, tc.kind, kind)
			require.Equal(t, tc.dec, dec)
		})
	}
}

func TestTokenBatch(t *testing.T) {
	cfg := testCfg(t)
	g := cfg.Routes[0].GlobalLimits
	a := NewDescriptor(g, Values{Route: "chat", Provider: "a"})
	b := NewDescriptor(g, Values{Route: "chat", Provider: "b"})
	var tb TokenBatch
	require.True(t, tb.Add("llm", &a, 100))
	require.True(t, tb.Add("llm", &b, 5))
	require.True(t, tb.Add("llm", &a, 20))
	require.True(t, tb.Add("other", &a, 7))
	require.True(t, tb.Add("llm", &a, 0), "nothing to add")
	require.Equal(t, 3, tb.Len())

	msg, ok := tb.Next(nil, nil)
	require.True(t, ok)
	var got rlsv3.RateLimitRequest
	require.NoError(t, proto.Unmarshal(msg, &got))
	require.Equal(t, "llm", got.Domain)
	require.Len(t, got.Descriptors, 2)
	require.EqualValues(t, 120, got.Descriptors[0].HitsAddend.GetValue(), "summed per descriptor")
	require.Equal(t, "kind", got.Descriptors[0].Entries[0].Key)
	require.EqualValues(t, 5, got.Descriptors[1].HitsAddend.GetValue())
	require.Equal(t, 1, tb.Len())

	msg, ok = tb.Next(msg[:0], nil)
	require.True(t, ok)
	got.Reset()
	require.NoError(t, proto.Unmarshal(msg, &got))
	require.Equal(t, "other", got.Domain)
	require.EqualValues(t, 7, got.Descriptors[0].HitsAddend.GetValue())
	_, ok = tb.Next(nil, nil)
	require.False(t, ok)

	for i := 0; i < MaxTokenKeys; i++ {
		d := NewDescriptor(g, Values{Route: "chat", Consumer: "c" + itoaTest(i+1)})
		require.True(t, tb.Add("llm", &d, 1))
	}
	d := NewDescriptor(g, Values{Route: "chat", Consumer: "one-too-many"})
	require.False(t, tb.Add("llm", &d, 1), "bounded")
	first := NewDescriptor(g, Values{Route: "chat", Consumer: "c1"})
	require.True(t, tb.Add("llm", &first, 1), "a known key still adds")
}

func TestOutcomes(t *testing.T) {
	q := NewOutcomes(3)
	for i := 0; i < 3; i++ {
		require.True(t, q.Add(policywire.Outcome{Route: "chat", Provider: "a", StatusCode: uint32(200 + i)}))
	}
	require.False(t, q.Add(policywire.Outcome{Route: "chat"}), "bounded")
	require.True(t, q.Full(2))
	msg := q.Take(nil, 2)
	var got policyv1.ReportOutcomesRequest
	require.NoError(t, proto.Unmarshal(msg, &got))
	require.Len(t, got.Outcomes, 2)
	require.EqualValues(t, 200, got.Outcomes[0].StatusCode)
	require.EqualValues(t, 201, got.Outcomes[1].StatusCode)
	require.Equal(t, 1, q.Len())
	got.Reset()
	require.NoError(t, proto.Unmarshal(q.Take(nil, 2), &got))
	require.EqualValues(t, 202, got.Outcomes[0].StatusCode)
	require.Equal(t, 0, q.Len())
}

func TestLease(t *testing.T) {
	lease := AppendLease(nil, 42, 1000)
	require.Len(t, lease, 16)
	cases := []struct {
		name  string
		lease []byte
		owner uint64
		now   int64
		want  bool
	}{
		{"absent", nil, 7, 0, true},
		{"malformed", []byte{1, 2, 3}, 7, 0, true},
		{"held by another", lease, 7, 999, false},
		{"expired", lease, 7, 1000, true},
		{"held by me", lease, 42, 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Claim(tc.lease, tc.owner, tc.now))
		})
	}
	v, ok := Uint64(AppendUint64(nil, 0x0102030405060708))
	require.True(t, ok)
	require.EqualValues(t, 0x0102030405060708, v)
	_, ok = Uint64([]byte{1})
	require.False(t, ok)
}

// TestImportsStayLight keeps the package free of fmt, reflect, encoding/json
// and the protobuf runtime in the filter's build.
func TestImportsStayLight(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.Output()
	require.NoError(t, err)
	for _, dep := range strings.Fields(string(out)) {
		require.NotContains(t, []string{"fmt", "reflect", "encoding/json", "encoding/binary"}, dep)
		require.False(t, strings.HasPrefix(dep, "google.golang.org/protobuf"), "depends on %s", dep)
	}
}

func TestOverlayChooseAllocatesNothing(t *testing.T) {
	cfg := testCfg(t)
	o := NewOverlay(cfg, &policywire.Policy{Weights: []policywire.RouteWeight{{Route: "chat", Provider: "b", WeightBP: 10000}}})
	chat := cfg.Routes[0]
	var d Descriptor
	allocs := testing.AllocsPerRun(100, func() {
		_ = o.Choose(chat, StickyPick("user-1"), 5)
		_ = o.ChooseAvoiding(chat, StickyPick("user-1"), 5, 1)
		d = NewDescriptor(chat.GlobalLimits, Values{Route: "chat", Provider: "b"})
	})
	require.Zero(t, allocs)
	require.False(t, d.Empty())
}

// TestTokenBatchSaturates: sums of hostile or huge usage stop at
// MaxHitsAddend, the most the sidecar accepts, and agree with exact
// big-integer arithmetic.
func TestTokenBatchSaturates(t *testing.T) {
	cfg := testCfg(t)
	g := cfg.Routes[0].GlobalLimits
	a := NewDescriptor(g, Values{Route: "chat", Provider: "a"})
	cases := [][]uint64{
		{math.MaxUint64, 1},
		{1 << 63, 1 << 63},
		{MaxHitsAddend - 1, 1, 1},
		{1 << 31, 1 << 31, 5},
		{3, 4},
	}
	for _, adds := range cases {
		var tb TokenBatch
		exact := new(big.Int)
		for _, n := range adds {
			require.True(t, tb.Add("llm", &a, n))
			exact.Add(exact, new(big.Int).SetUint64(n))
		}
		if exact.Cmp(big.NewInt(MaxHitsAddend)) > 0 {
			exact.SetInt64(MaxHitsAddend)
		}
		msg, ok := tb.Next(nil, nil)
		require.True(t, ok)
		var got rlsv3.RateLimitRequest
		require.NoError(t, proto.Unmarshal(msg, &got))
		require.Equal(t, exact.Uint64(), got.Descriptors[0].HitsAddend.GetValue(), "%v", adds)
	}
}
