package cooldown

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVerdicts(t *testing.T) {
	const now = int64(1_000_000)
	tests := []struct {
		name string
		s    State
		at   int64
		want Verdict
		free int64
	}{
		{"no entry", State{}, now, Free, 0},
		{"inside the pause", State{Until: now + 1}, now, Cooling, now + 1},
		{"the pause's last ms", State{Until: now + 1}, now, Cooling, now + 1},
		{"exactly at its end: half open", State{Until: now}, now, Probe, now},
		{"a probe is out", State{Until: now - 10, ProbeUntil: now + 5}, now, Cooling, now + 5},
		{"the probe's time ran out", State{Until: now - 10, ProbeUntil: now}, now, Probe, now},
		{"stale: free without a probe", State{Until: now - Stale}, now, Free, 0},
		{"soft inside", State{Until: now + 1, Soft: true}, now, Cooling, now + 1},
		{"soft after: free, no probe", State{Until: now, Soft: true}, now, Free, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.s.At(tc.at))
			require.Equal(t, tc.free, tc.s.FreeAt(tc.at))
		})
	}
}

func TestApply(t *testing.T) {
	const now = int64(5_000_000)
	var table []byte
	put := func(p string, c Change, s State, at int64) {
		table = Apply(nil, table, p, c, s, at)
	}
	get := func(p string) State {
		s, ok := Lookup(table, p)
		require.True(t, ok, p)
		return s
	}

	require.False(t, Any(table, now), "an empty table cools nothing")
	put("relay", Cool, State{Until: now + 2000, Status: 429}, now)
	require.Equal(t, State{Until: now + 2000, Status: 429}, get("relay"))
	require.True(t, Any(table, now))
	_, ok := Lookup(table, "rela")
	require.False(t, ok, "names match whole")

	// A shorter pause does not shorten a longer one; a longer one extends it.
	put("relay", Cool, State{Until: now + 1000, Status: 503}, now)
	require.Equal(t, now+2000, get("relay").Until)
	put("relay", Cool, State{Until: now + 3000, Status: 503}, now)
	require.Equal(t, State{Until: now + 3000, Status: 503}, get("relay"))

	// Headroom never overrides a refusal's pause; a refusal overrides headroom.
	put("relay", Cool, State{Until: now + 9000, Soft: true}, now)
	require.Equal(t, State{Until: now + 3000, Status: 503}, get("relay"))
	put("backup", Cool, State{Until: now + 9000, Soft: true}, now)
	put("backup", Cool, State{Until: now + 500, Status: 429}, now)
	require.Equal(t, State{Until: now + 500, Status: 429}, get("backup"))

	// Half open: one claim of the probe, then cooling until its answer.
	at := now + 3000
	require.Equal(t, Probe, get("relay").At(at))
	put("relay", ClaimProbe, State{ProbeUntil: at + 100}, at)
	require.Equal(t, Cooling, get("relay").At(at))
	require.Equal(t, at+100, get("relay").FreeAt(at))
	// A probe that never reached the provider is given back.
	put("relay", ReleaseProbe, State{}, at)
	require.Equal(t, Probe, get("relay").At(at))
	put("relay", ClaimProbe, State{ProbeUntil: at + 100}, at)
	// The probe refused again: a new pause, no probe out.
	put("relay", Cool, State{Until: at + 1000, Status: 429}, at)
	require.Equal(t, State{Until: at + 1000, Status: 429}, get("relay"))
	// The probe succeeded: forgotten.
	put("relay", Clear, State{}, at+1000)
	_, ok = Lookup(table, "relay")
	require.False(t, ok)
	require.Equal(t, State{Until: now + 500, Status: 429}, get("backup"), "other entries stay")

	// Pauses are capped.
	put("slow", Cool, State{Until: now + 100*MaxCooldown, Status: 429}, now)
	require.Equal(t, now+MaxCooldown, get("slow").Until)

	// Stale entries are dropped on the next write.
	put("other", Cool, State{Until: now + Stale + 10_000, Status: 429}, now+Stale+600)
	_, ok = Lookup(table, "backup")
	require.False(t, ok, "backup ended long ago")
}

func TestApplyIsBounded(t *testing.T) {
	const now = int64(1_000_000)
	var table []byte
	for i := 0; i < 3*MaxEntries; i++ {
		table = Apply(nil, table, "p"+strconv.Itoa(i), Cool, State{Until: now + 1000 + int64(i), Status: 429}, now)
	}
	n := 0
	each(table, func([]byte, State) bool { n++; return true })
	require.Equal(t, MaxEntries, n)
	_, ok := Lookup(table, "p0")
	require.False(t, ok, "the entry that ends first gave way")
	_, ok = Lookup(table, "p"+strconv.Itoa(3*MaxEntries-1))
	require.True(t, ok)
	long := string(make([]byte, 300))
	table = Apply(nil, table, long, Cool, State{Until: now + 1, Status: 429}, now)
	_, ok = Lookup(table, long[:MaxName])
	require.True(t, ok, "names are cut to MaxName")
}

func TestMalformedTablesHoldNothing(t *testing.T) {
	for _, raw := range [][]byte{nil, {}, {9, 1}, {version, 3, 1, 2}, {version, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200}} {
		_, ok := Lookup(raw, "relay")
		require.False(t, ok)
		require.False(t, Any(raw, 0))
		out := Apply(nil, raw, "relay", Cool, State{Until: 10, Status: 429}, 0)
		s, ok := Lookup(out, "relay")
		require.True(t, ok)
		require.Equal(t, int64(10), s.Until)
	}
}

func FuzzLookup(f *testing.F) {
	f.Add(Apply(nil, nil, "relay", Cool, State{Until: 10, Status: 429}, 0), "relay")
	f.Fuzz(func(t *testing.T, raw []byte, name string) {
		_, _ = Lookup(raw, name)
		_ = Any(raw, 5)
		out := Apply(nil, raw, name, Cool, State{Until: 7, Status: 503}, 5)
		s, ok := Lookup(out, name[:min(len(name), MaxName)])
		require.True(t, ok)
		require.Equal(t, Cooling, s.At(5), "a pause just learnt holds")
		require.LessOrEqual(t, s.Until, 5+MaxCooldown)
	})
}

func TestLookupAllocatesNothing(t *testing.T) {
	table := Apply(nil, nil, "relay", Cool, State{Until: 10, Status: 429}, 0)
	table = Apply(nil, table, "backup", Cool, State{Until: 20, Status: 503}, 0)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = Lookup(table, "backup")
		_ = Any(table, 5)
	})
	require.Zero(t, allocs)
}

func wakers(raw []byte, now int64) []uint32 {
	var got []uint32
	Wakers(raw, now, func(t uint32) { got = append(got, t) })
	return got
}

type listing struct {
	token uint32
	at    int64
}

func TestWakeList(t *testing.T) {
	const now = int64(7_000_000)
	tests := []struct {
		name  string
		steps []listing
		at    int64
		want  []uint32
	}{
		{"empty", nil, now, nil},
		{"one", []listing{{1, now}}, now, []uint32{1}},
		{"listed again: one entry, refreshed", []listing{{1, now}, {2, now}, {1, now + WakeStale - 1}}, now + WakeStale, []uint32{1}},
		{"stale entries receive nothing", []listing{{1, now}, {2, now + 10}}, now + WakeStale, []uint32{2}},
		{"a stale entry is dropped by the next listing", []listing{{1, now}, {2, now + WakeStale}}, now, []uint32{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var raw []byte
			for _, s := range tc.steps {
				raw = Enlist(nil, raw, s.token, s.at)
			}
			require.Equal(t, tc.want, wakers(raw, tc.at))
		})
	}
}

func TestWakeListIsBounded(t *testing.T) {
	const now = int64(9_000_000)
	var raw []byte
	for i := range MaxWake + 10 {
		raw = Enlist(nil, raw, uint32(i+1), now+int64(i))
	}
	got := wakers(raw, now+MaxWake+10)
	require.Len(t, got, MaxWake, "full: the oldest gave way")
	require.Equal(t, uint32(11), got[0], "the ten listed longest ago are gone")
	require.Equal(t, uint32(MaxWake+10), got[len(got)-1])
	require.Len(t, raw, wakeHeader+MaxWake*wakeEntry)

	// A time from the future counts as now, so it ages like any other.
	raw = Enlist(nil, nil, 1, now+1_000_000)
	raw = Enlist(nil, raw, 2, now)
	require.Equal(t, []uint32{1, 2}, wakers(raw, now))
	require.Equal(t, []uint32{3}, wakers(Enlist(nil, raw, 3, now+WakeStale-1), now+WakeStale), "1 aged from now, not from its future time")
}

func TestWakeListMalformed(t *testing.T) {
	for _, raw := range [][]byte{nil, {}, {2, 1, 0}, {wakeVersion}, {wakeVersion, 5, 0, 1, 2, 3}} {
		require.Empty(t, wakers(raw, 0), "%v", raw)
		out := Enlist(nil, raw, 9, 100)
		require.Equal(t, []uint32{9}, wakers(out, 100), "%v", raw)
	}
}

func TestScopeOf(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		headers bool
		model   string
		want    Scope
	}{
		{"429 naming an exhausted limit of the model: the model", 429, true, "gpt-4.1", ScopeModel},
		{"429 with a bare Retry-After: the provider", 429, false, "gpt-4.1", ScopeProvider},
		{"503: the provider", 503, true, "gpt-4.1", ScopeProvider},
		{"model unknown (body not read): the provider", 429, true, "", ScopeProvider},
		{"headroom on a success: the provider", 200, true, "gpt-4.1", ScopeProvider},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ScopeOf(tc.status, tc.headers, tc.model))
		})
	}
}

func TestModelEntries(t *testing.T) {
	const now = int64(3_000_000)
	var table []byte
	table = Apply(nil, table, ModelKey("relay", "gpt-4.1"), Cool, State{Until: now + 2000, Status: 429}, now)
	table = Apply(nil, table, "backup", Cool, State{Until: now + 1000, Status: 503}, now)

	s, ok := LookupModel(table, "relay", "gpt-4.1")
	require.True(t, ok)
	require.Equal(t, Cooling, s.At(now))
	for _, miss := range [][2]string{{"relay", "gpt-4.1-mini"}, {"relay", "gpt-4"}, {"rela", "y\x00gpt-4.1"}, {"backup", ""}} {
		_, ok := LookupModel(table, miss[0], miss[1])
		require.False(t, ok, "%q", miss)
	}
	_, ok = Lookup(table, "relay")
	require.False(t, ok, "a model's pause is not the provider's")
	s, ok = Lookup(table, "backup")
	require.True(t, ok)
	require.Equal(t, Cooling, s.At(now))

	// Names longer than MaxName are cut, and found cut.
	long := strings.Repeat("x", 300)
	table = Apply(nil, table, ModelKey("relay", long), Cool, State{Until: now + 10, Status: 429}, now)
	_, ok = LookupModel(table, "relay", long)
	require.True(t, ok)
	require.Len(t, ModelKey("relay", long), MaxName)

	tests := []struct {
		a, b, want Verdict
	}{
		{Free, Free, Free}, {Free, Probe, Probe}, {Probe, Free, Probe},
		{Probe, Cooling, Cooling}, {Cooling, Free, Cooling}, {Free, Cooling, Cooling},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, Worst(tc.a, tc.b), "%v %v", tc.a, tc.b)
	}
}
