package limits

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAppendDuration(t *testing.T) {
	cases := []struct {
		ns   int64
		want string
	}{
		{-5, "0s"},
		{0, "0s"},
		{1, "1ms"},
		{20 * ms, "20ms"},
		{20*ms + 1, "21ms"},
		{999 * ms, "999ms"},
		{second, "1s"},
		{1500 * ms, "1.5s"},
		{8640 * ms, "8.64s"},
		{second + ms, "1.001s"},
		{6 * minute, "6m0s"},
		{6*minute + 12*second + 340*ms, "6m12.34s"},
		{60 * minute, "1h0m0s"},
		{25*60*minute + 3*second + 4*ms, "25h0m3.004s"},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, string(AppendDuration(nil, tc.ns)), "ns=%d", tc.ns)
	}
}

// TestAppendDurationMatchesGo checks the formatter against time.Duration.String
// for whole milliseconds, the form OpenAI's headers use.
func TestAppendDurationMatchesGo(t *testing.T) {
	for _, d := range []time.Duration{
		time.Millisecond, 7 * time.Millisecond, 250 * time.Millisecond, time.Second,
		1234 * time.Millisecond, 59*time.Second + 999*time.Millisecond, time.Minute,
		61 * time.Second, 90 * time.Minute, 100*time.Hour + 1010*time.Millisecond,
	} {
		require.Equal(t, d.String(), string(AppendDuration(nil, int64(d))))
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	cases := []struct{ ns, want int64 }{
		{-second, 1}, {0, 1}, {1, 1}, {second, 1}, {second + 1, 2}, {1500 * ms, 2},
		{2 * second, 2}, {6 * minute, 360},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, RetryAfterSeconds(tc.ns), "ns=%d", tc.ns)
	}
}

func TestRetryAfterMillis(t *testing.T) {
	cases := []struct{ ns, want int64 }{
		{-second, 1000}, {0, 1000}, {1, 1}, {ms, 1}, {ms + 1, 2}, {1234 * ms, 1234},
		{1234*ms + 999_999, 1235}, {6 * minute, 360000},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, RetryAfterMillis(tc.ns), "ns=%d", tc.ns)
	}
}

func TestAppendRefusalHeaders(t *testing.T) {
	denied := Decision{Limit: 30000, Remaining: 12, ResetAfter: 6*minute + 500*ms, RetryAfter: 1200 * ms}
	got, buf := AppendRefusalHeaders(nil, nil, Tokens, denied)
	require.Equal(t, [][2]string{
		{"retry-after", "2"},
		{"retry-after-ms", "1200"},
		{"x-ratelimit-limit-tokens", "30000"},
		{"x-ratelimit-remaining-tokens", "12"},
		{"x-ratelimit-reset-tokens", "6m0.5s"},
	}, got)

	got, _ = AppendRefusalHeaders(got[:0], buf, Requests, Decision{Limit: 60, Remaining: 0, ResetAfter: second, RetryAfter: 999_999_999})
	require.Equal(t, [][2]string{
		{"retry-after", "1"},
		{"retry-after-ms", "1000"},
		{"x-ratelimit-limit-requests", "60"},
		{"x-ratelimit-remaining-requests", "0"},
		{"x-ratelimit-reset-requests", "1s"},
	}, got)

	// Every value at its longest still fits the buffer, unchanged.
	huge := Decision{Limit: 1<<63 - 1, Remaining: 1<<63 - 1, ResetAfter: 1<<63 - 1, RetryAfter: 1<<63 - 1}
	got, _ = AppendRefusalHeaders(got[:0], buf, Requests, huge)
	require.Equal(t, "9223372036854775807", got[2][1])
	require.Equal(t, "9223372037", got[0][1])
	require.Equal(t, "9223372036855", got[1][1])
	require.Equal(t, "2562047h47m16.855s", got[4][1])
}

// TestAppendRefusalHeadersAllocatesNothing: a flood of refusals costs no
// garbage once the buffers exist.
func TestAppendRefusalHeadersAllocatesNothing(t *testing.T) {
	dst := make([][2]string, 0, 8)
	buf := make([]byte, 0, 128)
	d := Decision{Limit: 600, Remaining: 0, ResetAfter: 59*second + 123*ms, RetryAfter: 99*ms + 1}
	allocs := testing.AllocsPerRun(1000, func() {
		dst, buf = AppendRefusalHeaders(dst[:0], buf, Requests, d)
	})
	require.Zero(t, allocs)
	require.Equal(t, "100", dst[1][1])
}
