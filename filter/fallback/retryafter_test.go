package fallback

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The three HTTP-date layouts of RFC 9110 §5.6.7, for time.Format/Parse.
const (
	imfFixdate = "Mon, 02 Jan 2006 15:04:05 GMT"
	rfc850     = "Monday, 02-Jan-06 15:04:05 GMT"
	asctime    = "Mon Jan _2 15:04:05 2006"
)

func TestParseRetryAfter(t *testing.T) {
	cases := []struct {
		value string
		delay int64
		ok    bool
	}{
		{"120", 120 * second, true},
		{"0", 0, true},
		{" 5 ", 5 * second, true},
		{"007", 7 * second, true},
		{"99999999999999999999999999", MaxHint, true},
		{"31536001", MaxHint, true},
		{"Fri, 27 Nov 2026 04:00:10 GMT", 9750 * ms, true},
		{"Friday, 27-Nov-26 04:00:10 GMT", 9750 * ms, true},
		{"Fri Nov 27 04:00:10 2026", 9750 * ms, true},
		{"Sun Nov  1 04:00:10 2026", 0, true}, // past
		{"Tue, 01 Dec 2026 04:00:00 GMT", 4*24*3600*second - 250*ms, true},
		{"Thu, 01 Jan 1970 00:00:00 GMT", 0, true},
		{"Sat, 01 Jan 3000 00:00:00 GMT", MaxHint, true},
		{"", 0, false},
		{"   ", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"5s", 0, false},
		{"soon", 0, false},
		{"Fri, 27 Nov 2026 04:00:10 UTC", 0, false},
		{"Fri, 31 Nov 2026 04:00:10 GMT", 0, false},
		{"Fri, 27 Nov 2026 24:00:10 GMT", 0, false},
		{"Fri, 27 Nov 2026 04:60:10 GMT", 0, false},
		{"Fri, 27 Nov 2026 04:00:60 GMT", 0, false},
		{"Fri, 27 Foo 2026 04:00:10 GMT", 0, false},
		{"Xyz, 27 Nov 2026 04:00:10 GMT", 0, false},
		{"Friday, 27 Nov 2026 04:00:10 GMT", 0, false},
		{"Fri, 27-Nov-26 04:00:10 GMT", 0, false},
		{"Fri, 2x Nov 2026 04:00:10 GMT", 0, false},
		{"Fri Nov 27 04:00:10 20x6", 0, false},
		{"Fri,", 0, false},
		{",", 0, false},
	}
	for _, tc := range cases {
		delay, ok := ParseRetryAfter(tc.value, now)
		require.Equal(t, tc.ok, ok, "%q", tc.value)
		require.Equal(t, tc.delay, delay, "%q", tc.value)
	}
}

// TestHTTPDateMatchesTimeParse checks the hand-written date parser against the
// time package over many instants, in all three layouts.
func TestHTTPDateMatchesTimeParse(t *testing.T) {
	rnd := splitmix64(7)
	// Instants between 1977 and 2068, where RFC 850's two-digit years resolve
	// the same way under RFC 9110's rule for now (2026: 77..99 → 19xx, up to
	// 76 → 20xx) and under time.Parse's (69..99 → 19xx, 00..68 → 20xx).
	from := time.Date(1977, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	span := uint64(time.Date(2069, 1, 1, 0, 0, 0, 0, time.UTC).Unix() - from)
	for range 20000 {
		at := time.Unix(from+int64(rnd()%span), 0).UTC()
		for _, layout := range []string{imfFixdate, rfc850, asctime} {
			s := at.Format(layout)
			want, err := time.Parse(layout, s)
			require.NoError(t, err)
			got, ok := parseHTTPDate(s, now)
			require.True(t, ok, s)
			require.Equal(t, want.Unix(), got, s)
		}
	}
}

func TestRFC850TwoDigitYear(t *testing.T) {
	cases := []struct {
		value string
		year  int
	}{
		{"Sunday, 06-Nov-94 08:49:37 GMT", 1994},
		{"Monday, 01-Jan-76 00:00:00 GMT", 2076}, // 50 years ahead of 2026
		{"Thursday, 01-Jan-77 00:00:00 GMT", 1977},
		{"Friday, 27-Nov-26 04:00:10 GMT", 2026},
	}
	for _, tc := range cases {
		got, ok := parseHTTPDate(tc.value, now)
		require.True(t, ok, tc.value)
		require.Equal(t, tc.year, time.Unix(got, 0).UTC().Year(), tc.value)
	}
}

func TestParseResetHint(t *testing.T) {
	cases := []struct {
		value string
		delay int64
		ok    bool
	}{
		{"1s", second, true},
		{"6m0s", 6 * 60 * second, true},
		{"20ms", 20 * ms, true},
		{"8.64s", 8640 * ms, true},
		{" 1h2m3s ", int64(time.Hour + 2*time.Minute + 3*time.Second), true},
		{"0s", 0, true},
		{"100000h", MaxHint, true},
		{"", 0, false},
		{"-1s", 0, false},
		{"+1s", 0, false},
		{"1", 0, false},
		{"soon", 0, false},
		{"9999999999999h", 0, false},
	}
	for _, tc := range cases {
		delay, ok := ParseResetHint(tc.value)
		require.Equal(t, tc.ok, ok, "%q", tc.value)
		require.Equal(t, tc.delay, delay, "%q", tc.value)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "Fri, 27 Nov 2026 04:00:10 GMT", "Friday, 27-Nov-26 04:00:10 GMT", "Fri Nov 27 04:00:10 2026", "-1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if !ok && d != 0 {
			t.Fatalf("%q: delay %d without ok", s, d)
		}
		if d < 0 || d > MaxHint {
			t.Fatalf("%q: delay %d out of range", s, d)
		}
	})
}
