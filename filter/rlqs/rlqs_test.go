package rlqs_test

import (
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shepherd-mesh/shepherd/filter/rlqs"
	"github.com/shepherd-mesh/shepherd/filter/rls"
)

func bucketID(t *testing.T, entries ...rls.Entry) []byte {
	t.Helper()
	b, err := rlqs.AppendBucketID(nil, entries)
	require.NoError(t, err)
	return b
}

// TestReportsDecodeAsGenerated: the hand-written usage report is the message
// go-control-plane's generated types read, bucket ids included.
func TestReportsDecodeAsGenerated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		domain string
		usages []rlqs.Usage
		want   *rlqsv3.RateLimitQuotaUsageReports
	}{
		{name: "empty", domain: "shepherd", want: &rlqsv3.RateLimitQuotaUsageReports{Domain: "shepherd"}},
		{
			name:   "two buckets",
			domain: "shepherd",
			usages: []rlqs.Usage{
				{BucketID: bucketID(t, rls.Entry{Key: "route", Value: "chat"}), Elapsed: 1_500_000_000, Allowed: 7, Denied: 2},
				{BucketID: bucketID(t, rls.Entry{Key: "route", Value: "chat"}, rls.Entry{Key: "consumer", Value: "team-a"}), Elapsed: 0},
			},
			want: &rlqsv3.RateLimitQuotaUsageReports{Domain: "shepherd", BucketQuotaUsages: []*rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
				{BucketId: &rlqsv3.BucketId{Bucket: map[string]string{"route": "chat"}}, TimeElapsed: durationpb.New(1500 * time.Millisecond),
					NumRequestsAllowed: 7, NumRequestsDenied: 2},
				{BucketId: &rlqsv3.BucketId{Bucket: map[string]string{"route": "chat", "consumer": "team-a"}}, TimeElapsed: &durationpb.Duration{}},
			}},
		},
		{
			name:   "invalid utf-8 repaired",
			domain: "d\xff",
			usages: []rlqs.Usage{{BucketID: bucketID(t, rls.Entry{Key: "consumer", Value: "a\xffb"}), Elapsed: 42, Allowed: 1}},
			want: &rlqsv3.RateLimitQuotaUsageReports{Domain: "d\uFFFD", BucketQuotaUsages: []*rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
				{BucketId: &rlqsv3.BucketId{Bucket: map[string]string{"consumer": "a\uFFFDb"}}, TimeElapsed: &durationpb.Duration{Nanos: 42}, NumRequestsAllowed: 1},
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got rlqsv3.RateLimitQuotaUsageReports
			require.NoError(t, proto.Unmarshal(rlqs.AppendReports(nil, tc.domain, tc.usages), &got))
			require.True(t, proto.Equal(tc.want, &got), "got %v", &got)
		})
	}
}

// TestBucketIDIsDeterministic: the filter's bucket id is the deterministic
// encoding of the generated BucketId (so the shared data key of a bucket is
// the same whichever order a server sends its map in), and a server's id in
// any order canonicalises to it.
func TestBucketIDIsDeterministic(t *testing.T) {
	entries := []rls.Entry{{Key: "route", Value: "chat"}, {Key: "model", Value: "gpt-4.1"}, {Key: "consumer", Value: "c"}, {Key: "provider", Value: "relay"}}
	ours := bucketID(t, entries...)
	gen := &rlqsv3.BucketId{Bucket: map[string]string{"route": "chat", "model": "gpt-4.1", "consumer": "c", "provider": "relay"}}
	det, err := proto.MarshalOptions{Deterministic: true}.Marshal(gen)
	require.NoError(t, err)
	require.Equal(t, det, ours)
	for range 20 { // map order varies between runs of the plain encoder
		plain, err := proto.Marshal(gen)
		require.NoError(t, err)
		canon, err := rlqs.CanonicalBucketID(nil, plain)
		require.NoError(t, err)
		require.Equal(t, ours, canon)
	}
	_, err = rlqs.AppendBucketID(nil, []rls.Entry{{Key: "consumer", Value: string(make([]byte, rlqs.MaxBucketIDBytes))}})
	require.ErrorIs(t, err, rlqs.ErrBucketIDTooLong)
}

func tb(max uint32, perFill *wrapperspb.UInt32Value, interval time.Duration) *typev3.RateLimitStrategy {
	return &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_TokenBucket{TokenBucket: &typev3.TokenBucket{
		MaxTokens: max, TokensPerFill: perFill, FillInterval: durationpb.New(interval)}}}
}

func assign(bucket map[string]string, ttl time.Duration, s *typev3.RateLimitStrategy) *rlqsv3.RateLimitQuotaResponse_BucketAction {
	return &rlqsv3.RateLimitQuotaResponse_BucketAction{BucketId: &rlqsv3.BucketId{Bucket: bucket},
		BucketAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction_{
			QuotaAssignmentAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_QuotaAssignmentAction{
				AssignmentTimeToLive: durationpb.New(ttl), RateLimitStrategy: s}}}
}

// TestResponseFromGenerated: responses the generated types encode decode to
// the actions the filter applies; actions it cannot apply are left out.
func TestResponseFromGenerated(t *testing.T) {
	chat := map[string]string{"route": "chat"}
	for _, tc := range []struct {
		name   string
		action *rlqsv3.RateLimitQuotaResponse_BucketAction
		want   *rlqs.Action // nil: left out
	}{
		{"token bucket", assign(chat, 5*time.Second, tb(20, wrapperspb.UInt32(10), time.Second)),
			&rlqs.Action{Kind: rlqs.Assign, TTL: 5e9, Strategy: rlqs.Strategy{Rule: rlqs.TokenBucket, Max: 20, PerFill: 10, Interval: 1e9}}},
		{"tokens_per_fill defaults to 1", assign(chat, time.Second, tb(3, nil, 100*time.Millisecond)),
			&rlqs.Action{Kind: rlqs.Assign, TTL: 1e9, Strategy: rlqs.Strategy{Rule: rlqs.TokenBucket, Max: 3, PerFill: 1, Interval: 1e8}}},
		{"deny all", assign(chat, 2*time.Second, &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_BlanketRule_{BlanketRule: typev3.RateLimitStrategy_DENY_ALL}}),
			&rlqs.Action{Kind: rlqs.Assign, TTL: 2e9, Strategy: rlqs.Strategy{Rule: rlqs.DenyAll}}},
		{"allow all", assign(chat, 2*time.Second, &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_BlanketRule_{BlanketRule: typev3.RateLimitStrategy_ALLOW_ALL}}),
			&rlqs.Action{Kind: rlqs.Assign, TTL: 2e9, Strategy: rlqs.Strategy{Rule: rlqs.AllowAll}}},
		{"requests per minute", assign(chat, time.Second, &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_RequestsPerTimeUnit_{
			RequestsPerTimeUnit: &typev3.RateLimitStrategy_RequestsPerTimeUnit{RequestsPerTimeUnit: 60, TimeUnit: typev3.RateLimitUnit_MINUTE}}}),
			&rlqs.Action{Kind: rlqs.Assign, TTL: 1e9, Strategy: rlqs.Strategy{Rule: rlqs.TokenBucket, Max: 60, PerFill: 60, Interval: 60e9}}},
		{"abandon", &rlqsv3.RateLimitQuotaResponse_BucketAction{BucketId: &rlqsv3.BucketId{Bucket: chat},
			BucketAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_AbandonAction_{AbandonAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_AbandonAction{}}},
			&rlqs.Action{Kind: rlqs.Abandon}},
		{"no ttl", assign(chat, 0, tb(20, nil, time.Second)), nil},
		{"empty token bucket", assign(chat, time.Second, tb(0, nil, time.Second)), nil},
		{"zero fill interval", assign(chat, time.Second, tb(5, nil, 0)), nil},
		{"unknown unit", assign(chat, time.Second, &typev3.RateLimitStrategy{Strategy: &typev3.RateLimitStrategy_RequestsPerTimeUnit_{
			RequestsPerTimeUnit: &typev3.RateLimitStrategy_RequestsPerTimeUnit{RequestsPerTimeUnit: 5}}}), nil},
		{"no bucket id", &rlqsv3.RateLimitQuotaResponse_BucketAction{BucketAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_AbandonAction_{
			AbandonAction: &rlqsv3.RateLimitQuotaResponse_BucketAction_AbandonAction{}}}, nil},
		{"no action", &rlqsv3.RateLimitQuotaResponse_BucketAction{BucketId: &rlqsv3.BucketId{Bucket: chat}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(&rlqsv3.RateLimitQuotaResponse{BucketAction: []*rlqsv3.RateLimitQuotaResponse_BucketAction{tc.action}})
			require.NoError(t, err)
			var got rlqs.Response
			require.NoError(t, rlqs.ParseResponse(b, &got))
			if tc.want == nil {
				require.Empty(t, got.Actions)
				return
			}
			require.Len(t, got.Actions, 1)
			a := got.Actions[0]
			// The id travels back the way the filter would key it.
			var id rlqsv3.BucketId
			require.NoError(t, proto.Unmarshal(a.BucketID, &id))
			require.Equal(t, tc.action.BucketId.Bucket, id.Bucket)
			a.BucketID = nil
			require.Equal(t, *tc.want, a)
		})
	}
}

// TestResponseRejectsGarbage: malformed messages are errors, never panics.
func TestResponseRejectsGarbage(t *testing.T) {
	good, err := proto.Marshal(&rlqsv3.RateLimitQuotaResponse{BucketAction: []*rlqsv3.RateLimitQuotaResponse_BucketAction{
		assign(map[string]string{"route": "chat"}, time.Second, tb(20, nil, time.Second))}})
	require.NoError(t, err)
	var r rlqs.Response
	for cut := 1; cut < len(good); cut++ {
		require.Error(t, rlqs.ParseResponse(good[:cut], &r), "cut at %d", cut)
	}
	require.Error(t, rlqs.ParseResponse([]byte{0x0a, 0x7f}, &r))
	_, err = rlqs.CanonicalBucketID(nil, []byte{0x0a, 0x03, 0x0a, 0x01, 0xff})
	require.Error(t, err)
}

// FuzzParseResponse: any bytes decode or fail, never panic, and every
// decoded action is one the filter can apply.
func FuzzParseResponse(f *testing.F) {
	b, _ := proto.Marshal(&rlqsv3.RateLimitQuotaResponse{BucketAction: []*rlqsv3.RateLimitQuotaResponse_BucketAction{
		assign(map[string]string{"route": "chat"}, time.Second, tb(20, nil, time.Second))}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r rlqs.Response
		if rlqs.ParseResponse(b, &r) != nil {
			return
		}
		for _, a := range r.Actions {
			require.Contains(t, []rlqs.Kind{rlqs.Assign, rlqs.Abandon}, a.Kind)
			if a.Kind == rlqs.Assign {
				require.Positive(t, a.TTL)
			}
			if a.Strategy.Rule == rlqs.TokenBucket {
				require.Positive(t, a.Strategy.Max)
				require.Positive(t, a.Strategy.Interval)
			}
			_, _ = rlqs.CanonicalBucketID(nil, a.BucketID)
		}
	})
}
