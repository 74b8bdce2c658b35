package rlqs_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/rlqs"
)

func tokenBucket(max, perFill uint32, interval, ttl int64) *rlqs.Action {
	return &rlqs.Action{Kind: rlqs.Assign, TTL: ttl, Strategy: rlqs.Strategy{Rule: rlqs.TokenBucket, Max: max, PerFill: perFill, Interval: interval}}
}

// TestRecordAdmits: each rule admits as the protocol says, counts what it
// decided, and hands an ended assignment to the failure mode.
func TestRecordAdmits(t *testing.T) {
	const s = int64(1e9)
	type step struct {
		at      int64
		want    rlqs.Verdict
		retryNs int64
	}
	for _, tc := range []struct {
		name   string
		action *rlqs.Action // applied at 0; nil keeps the new record
		steps  []step
		usage  [2]uint64
	}{
		{name: "pending until the wait ends", steps: []step{{1, rlqs.Admitted, 0}, {2*s - 1, rlqs.Admitted, 0}, {2 * s, rlqs.Expired, 0}}, usage: [2]uint64{3, 0}},
		{name: "allow all", action: &rlqs.Action{Kind: rlqs.Assign, TTL: 5 * s, Strategy: rlqs.Strategy{Rule: rlqs.AllowAll}},
			steps: []step{{1, rlqs.Admitted, 0}, {4 * s, rlqs.Admitted, 0}, {5 * s, rlqs.Expired, 0}}, usage: [2]uint64{3, 0}},
		{name: "deny all", action: &rlqs.Action{Kind: rlqs.Assign, TTL: 5 * s, Strategy: rlqs.Strategy{Rule: rlqs.DenyAll}},
			steps: []step{{1 * s, rlqs.Denied, 4 * s}, {5 * s, rlqs.Expired, 0}}, usage: [2]uint64{1, 1}},
		{name: "token bucket", action: tokenBucket(2, 1, s, 10*s),
			steps: []step{{0, rlqs.Admitted, 0}, {0, rlqs.Admitted, 0}, {0, rlqs.Denied, s}, {s / 4, rlqs.Denied, 3 * s / 4},
				{s, rlqs.Admitted, 0}, {9 * s, rlqs.Admitted, 0}, {9 * s, rlqs.Admitted, 0}, {9 * s, rlqs.Denied, s}, {10 * s, rlqs.Expired, 0}},
			usage: [2]uint64{1 + 5, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rlqs.NewRecord(0, 2*s)
			if tc.action != nil {
				r.Apply(tc.action, 0, 2*s)
			}
			for i, st := range tc.steps {
				var buf [rlqs.RecordSize]byte
				var back rlqs.Record
				require.True(t, back.Decode(r.Encode(&buf)))
				require.Equal(t, r, back)
				v, retry := r.Admit(st.at)
				require.Equal(t, st.want, v, "step %d", i)
				require.Equal(t, st.retryNs, retry, "step %d", i)
			}
			a, d := r.TakeUsage()
			require.Equal(t, tc.usage, [2]uint64{a, d})
			a, d = r.TakeUsage()
			require.Zero(t, a+d)
		})
	}
}

// TestRecordKeepsItsBucket: a repeated assignment of the same token bucket
// only moves the expiry (the tokens spent stay spent), another one keeps the
// tokens left (at most its size), and abandon starts the bucket over.
func TestRecordKeepsItsBucket(t *testing.T) {
	const s = int64(1e9)
	r := rlqs.NewRecord(0, s)
	r.Apply(tokenBucket(3, 3, 60*s, 2*s), 0, s)
	for range 3 {
		v, _ := r.Admit(0)
		require.Equal(t, rlqs.Admitted, v)
	}
	r.Apply(tokenBucket(3, 3, 60*s, 2*s), s, s)
	v, _ := r.Admit(s)
	require.Equal(t, rlqs.Denied, v, "the same assignment does not refill the bucket")
	require.Equal(t, 3*s, r.Expiry)
	r.Apply(tokenBucket(5, 5, 60*s, 60*s), s, s)
	v, _ = r.Admit(s)
	require.Equal(t, rlqs.Denied, v, "a larger share adds no tokens by itself")
	require.EqualValues(t, 5, r.Limit())
	v, _ = r.Admit(13 * s)
	require.Equal(t, rlqs.Admitted, v, "it refills at its own rate: 5 a minute")
	r.Apply(tokenBucket(2, 2, 60*s, 60*s), 13*s, s)
	require.LessOrEqual(t, r.Tokens, int64(2_000_000), "a smaller share caps what is left")
	r.Apply(&rlqs.Action{Kind: rlqs.Assign, TTL: 2 * s, Strategy: rlqs.Strategy{Rule: rlqs.AllowAll}}, s, s)
	r.Apply(tokenBucket(2, 2, 60*s, 2*s), s, s)
	v, _ = r.Admit(s)
	require.Equal(t, rlqs.Admitted, v, "a token bucket after another rule starts full")
	r.Apply(&rlqs.Action{Kind: rlqs.Abandon}, 2*s, s)
	require.Equal(t, rlqs.Pending, r.Rule)
	v, _ = r.Admit(2 * s)
	require.Equal(t, rlqs.Admitted, v)
	v, _ = r.Admit(3 * s)
	require.Equal(t, rlqs.Expired, v)
	// An expired bucket given the same assignment again starts full.
	r.Apply(tokenBucket(1, 1, 60*s, s), 0, s)
	r.Apply(tokenBucket(1, 1, 60*s, s), 5*s, s)
	v, _ = r.Admit(5 * s)
	require.Equal(t, rlqs.Admitted, v)
}

// TestRecordSaturates: counts, refills and expiries saturate.
func TestRecordSaturates(t *testing.T) {
	r := rlqs.Record{Rule: rlqs.AllowAll, Expiry: 1 << 62, Allowed: ^uint64(0)}
	v, _ := r.Admit(1)
	require.Equal(t, rlqs.Admitted, v)
	require.Equal(t, ^uint64(0), r.Allowed)
	r = rlqs.NewRecord(1<<62, 1<<62)
	require.Equal(t, int64(^uint64(0)>>1), r.Expiry)
	r.Apply(tokenBucket(^uint32(0), ^uint32(0), 1, 1<<62), 1<<62, 1)
	v, _ = r.Admit(1<<62 + 1<<61)
	require.Equal(t, rlqs.Admitted, v)
	require.LessOrEqual(t, r.Tokens, r.Max)
	require.False(t, (&rlqs.Record{}).Decode(make([]byte, rlqs.RecordSize-1)))
	bad := make([]byte, rlqs.RecordSize)
	bad[0] = 9
	require.False(t, (&rlqs.Record{}).Decode(bad))
}

// TestRecordChargesTokens: Peek admits while a token is left without taking
// it; Charge takes the real usage into debt (at most one bucket's worth),
// which the refill pays back before the next request starts.
func TestRecordChargesTokens(t *testing.T) {
	const s = int64(1e9)
	r := rlqs.NewRecord(0, s)
	r.Allowed = 0
	r.Apply(tokenBucket(10, 10, 10*s, 60*s), 0, s)
	v, _ := r.Peek(0)
	require.Equal(t, rlqs.Admitted, v)
	require.EqualValues(t, 10_000_000, r.Tokens, "peek takes nothing")
	r.Charge(0, 25)
	require.EqualValues(t, -10_000_000, r.Tokens, "debt is capped at one bucket")
	v, retry := r.Peek(s)
	require.Equal(t, rlqs.Denied, v)
	require.Equal(t, 10*s, retry, "9 tokens of debt and 1 to start: 10 s at 1 a second")
	v, _ = r.Peek(11 * s)
	require.Equal(t, rlqs.Admitted, v)
	a, d := r.TakeUsage()
	require.Equal(t, [2]uint64{25, 1}, [2]uint64{a, d})
	r.Charge(11*s, 1<<40)
	require.EqualValues(t, -10_000_000, r.Tokens)
	a, _ = r.TakeUsage()
	require.EqualValues(t, 1<<32, a, "one charge is bounded")
}
