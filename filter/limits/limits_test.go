package limits

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	ms     = int64(1_000_000)
	second = 1000 * ms
	minute = 60 * second
)

// t0 is an arbitrary start time in ns.
const t0 = int64(1_790_000_000) * second

func newLimiter(t testing.TB, store SharedData, r Rule) *Limiter {
	t.Helper()
	l, err := New(store, "chat", Tokens, r)
	require.NoError(t, err)
	return l
}

// flatStore is a single-goroutine SharedData that reuses its slices, so
// allocation tests measure the limiter alone (the real binding's Get allocates
// in the host's memory-allocate callback, which no guest code can avoid).
type flatStore struct {
	m   map[string]*memEntry
	ver uint32
}

func (s *flatStore) Get(key string) ([]byte, uint32, error) {
	e, ok := s.m[key]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return e.value, e.cas, nil
}

func (s *flatStore) Set(key string, value []byte, cas uint32) error {
	e, ok := s.m[key]
	if !ok {
		e = &memEntry{}
		s.m[key] = e
	} else if cas != 0 && cas != e.cas {
		return ErrCasMismatch
	}
	s.ver++
	e.value, e.cas = append(e.value[:0], value...), s.ver
	return nil
}

// contendedStore loses every compare-and-swap, as if other VMs always wrote first.
type contendedStore struct {
	MemorySharedData
	sets int
}

func (s *contendedStore) Set(string, []byte, uint32) error {
	s.sets++
	return ErrCasMismatch
}

// yieldingStore is MemorySharedData that yields the processor after every
// read, so other workers' writes land between a worker's read and its write
// far more often than they would by chance.
type yieldingStore struct{ MemorySharedData }

func (s *yieldingStore) Get(key string) ([]byte, uint32, error) {
	v, cas, err := s.MemorySharedData.Get(key)
	runtime.Gosched()
	return v, cas, err
}

// brokenStore fails every read.
type brokenStore struct{ err error }

func (s brokenStore) Get(string) ([]byte, uint32, error) { return nil, 0, s.err }
func (s brokenStore) Set(string, []byte, uint32) error   { return s.err }

func TestMemorySharedDataFollowsEnvoy(t *testing.T) {
	var s MemorySharedData
	_, cas, err := s.Get("k")
	require.ErrorIs(t, err, ErrNotFound)
	require.Zero(t, cas)

	// cas is not checked for an absent key.
	require.NoError(t, s.Set("k", []byte("a"), 12345))
	v, c1, err := s.Get("k")
	require.NoError(t, err)
	require.Equal(t, "a", string(v))
	require.NotZero(t, c1)

	require.NoError(t, s.Set("k", []byte("b"), c1))
	_, c2, _ := s.Get("k")
	require.Greater(t, c2, c1, "versions increase on every set")

	require.ErrorIs(t, s.Set("k", []byte("stale"), c1), ErrCasMismatch)
	v, _, _ = s.Get("k")
	require.Equal(t, "b", string(v))

	// cas 0 does not check.
	require.NoError(t, s.Set("k", []byte("c"), 0))
	v, c3, _ := s.Get("k")
	require.Equal(t, "c", string(v))
	require.Greater(t, c3, c2)

	// Get returns a copy; Set stores a copy.
	v[0] = 'x'
	buf := []byte("d")
	require.NoError(t, s.Set("k", buf, c3))
	buf[0] = 'y'
	v, _, _ = s.Get("k")
	require.Equal(t, "d", string(v))
}

func TestRuleValidate(t *testing.T) {
	cases := []struct {
		rule Rule
		err  string
	}{
		{Rule{PerMinute: 60}, ""},
		{Rule{PerMinute: 60, Burst: 10}, ""},
		{Rule{PerMinute: MaxPerMinute, Burst: MaxPerMinute}, ""},
		{Rule{}, "perMinute: must be between 1 and 1000000000"},
		{Rule{PerMinute: -1}, "perMinute: must be between 1 and 1000000000"},
		{Rule{PerMinute: MaxPerMinute + 1}, "perMinute: must be between 1 and 1000000000"},
		{Rule{PerMinute: 1, Burst: -1}, "burst: must be between 0 (same as perMinute) and 1000000000"},
	}
	for _, tc := range cases {
		err := tc.rule.Validate()
		if tc.err == "" {
			require.NoError(t, err)
			continue
		}
		require.EqualError(t, err, tc.err)
	}
	_, err := New(&MemorySharedData{}, "chat", Requests, Rule{})
	require.EqualError(t, err, `limits: route "chat" requests: perMinute: must be between 1 and 1000000000`)
}

func TestKeysAreDistinct(t *testing.T) {
	store := &MemorySharedData{}
	a, err := New(store, "chat", Requests, Rule{PerMinute: 1})
	require.NoError(t, err)
	b, err := New(store, "chat", Tokens, Rule{PerMinute: 1})
	require.NoError(t, err)
	c, err := New(store, "chat/requests", Requests, Rule{PerMinute: 1})
	require.NoError(t, err)
	keys := []string{
		a.Key(""), a.Key("other"), a.Key("*"), a.Key("alice"), a.OverflowKey(),
		b.Key(""), b.Key("alice"), b.OverflowKey(),
		c.Key(""), c.Key("alice"), c.OverflowKey(),
	}
	seen := map[string]bool{}
	for _, k := range keys {
		require.False(t, seen[k], "duplicate key %q", k)
		seen[k] = true
	}
}

// TestConcurrentTakesNeverOverAdmit runs 8 "worker VMs" (each its own Limiter,
// as in Envoy) against one store with the clock stopped, so exactly the
// capacity can be admitted.
func TestConcurrentTakesNeverOverAdmit(t *testing.T) {
	for _, n := range []int64{1, 7} {
		t.Run("n="+strconv.FormatInt(n, 10), func(t *testing.T) {
			store := &yieldingStore{}
			const capacity = 1000
			first := newLimiter(t, store, Rule{PerMinute: capacity})
			key := first.Key("alice")
			// Create the bucket before the race: creation is an unconditional
			// write in Envoy (see Limiter), everything after it is CAS-checked.
			d, err := first.Take(key, n, t0)
			require.NoError(t, err)
			require.True(t, d.Allowed)

			var admitted, failedOpen, denied sync.Map
			var wg sync.WaitGroup
			for w := range 8 {
				l := newLimiter(t, store, Rule{PerMinute: capacity})
				// This test checks the CAS loop, not the retry budget.
				l.maxRetries = 1 << 20
				wg.Add(1)
				go func() {
					defer wg.Done()
					var a, f, dn int64
					for range 400 {
						d, err := l.Take(key, n, t0)
						if err != nil {
							panic(err)
						}
						switch {
						case d.FailedOpen:
							f++
						case d.Allowed:
							a++
						default:
							dn++
						}
					}
					admitted.Store(w, a)
					failedOpen.Store(w, f)
					denied.Store(w, dn)
				}()
			}
			wg.Wait()
			total := int64(1)
			var fo, dn int64
			for w := range 8 {
				a, _ := admitted.Load(w)
				f, _ := failedOpen.Load(w)
				d, _ := denied.Load(w)
				total += a.(int64)
				fo += f.(int64)
				dn += d.(int64)
			}
			require.Zero(t, fo)
			require.Equal(t, int64(capacity)/n, total)
			require.Equal(t, int64(8*400+1)-total, dn)
			d, err = first.Take(key, 0, t0)
			require.NoError(t, err)
			require.Equal(t, int64(capacity)%n, d.Remaining)
		})
	}
}

func TestRefillOverInjectedTime(t *testing.T) {
	l := newLimiter(t, &MemorySharedData{}, Rule{PerMinute: 60})
	key := l.Key("")
	steps := []struct {
		name       string
		at         int64
		n          int64
		allowed    bool
		remaining  int64
		resetAfter int64
		retryAfter int64
	}{
		{"fresh bucket is full", t0, 60, true, 0, minute, 0},
		{"empty bucket denies", t0, 1, false, 0, minute, second},
		{"half a token earned", t0 + 500*ms, 1, false, 0, minute - 500*ms, 500 * ms},
		{"one token earned", t0 + second, 1, true, 0, minute, 0},
		{"clock going back earns nothing", t0, 1, false, 0, minute, second},
		{"ten seconds", t0 + 11*second, 10, true, 0, minute, 0},
		{"a long wait fills only to capacity", t0 + 3600*second, 1, true, 59, second, 0},
		{"n above remaining waits for the difference", t0 + 3600*second, 60, false, 59, second, second},
	}
	for _, s := range steps {
		d, err := l.Take(key, s.n, s.at)
		require.NoError(t, err, s.name)
		require.Equal(t, Decision{
			Allowed: s.allowed, Limit: 60, Remaining: s.remaining,
			ResetAfter: s.resetAfter, RetryAfter: s.retryAfter,
		}, d, s.name)
	}
}

func TestBurstAboveRate(t *testing.T) {
	l := newLimiter(t, &MemorySharedData{}, Rule{PerMinute: 6, Burst: 12})
	d, err := l.Take("k", 12, t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Equal(t, int64(12), d.Limit)
	require.Equal(t, 2*minute, d.ResetAfter)
	d, err = l.Take("k", 1, t0+5*second)
	require.NoError(t, err)
	require.False(t, d.Allowed)
	require.Equal(t, 5*second, d.RetryAfter)
}

func TestTooLarge(t *testing.T) {
	l := newLimiter(t, &MemorySharedData{}, Rule{PerMinute: 60})
	_, err := l.Take("k", 30, t0)
	require.NoError(t, err)
	d, err := l.Take("k", 61, t0)
	require.NoError(t, err)
	require.Equal(t, Decision{TooLarge: true, Limit: 60, Remaining: 30, ResetAfter: 30 * second, RetryAfter: 30 * second}, d)
}

func TestSettle(t *testing.T) {
	cases := []struct {
		name             string
		take             int64
		reserved, actual int64
		repeat           int
		remaining        int64 // whole tokens right after settling
		retry1           int64 // RetryAfter for one more token, 0 if available
	}{
		{"refund unused reservation", 50, 50, 10, 1, 50, 0},
		{"refund is capped at capacity", 10, 10, 0, 3, 60, 0},
		{"charge usage above reservation", 10, 10, 40, 1, 20, 0},
		{"exact reservation changes nothing", 10, 10, 10, 1, 50, 0},
		{"debt delays later admissions", 60, 60, 120, 1, 0, 61 * second},
		{"debt is capped at one bucket", 60, 60, 1_000_000, 1, 0, 61 * second},
		{"charge without reservation", 0, 0, 30, 1, 30, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, &MemorySharedData{}, Rule{PerMinute: 60})
			d, err := l.Take("k", tc.take, t0)
			require.NoError(t, err)
			require.True(t, d.Allowed)
			for range tc.repeat {
				require.NoError(t, l.Settle("k", tc.reserved, tc.actual, t0))
			}
			d, err = l.Take("k", 0, t0)
			require.NoError(t, err)
			require.Equal(t, tc.remaining, d.Remaining)
			d, err = l.Take("k", 1, t0)
			require.NoError(t, err)
			require.Equal(t, tc.retry1 == 0, d.Allowed)
			require.Equal(t, tc.retry1, d.RetryAfter)
		})
	}
}

func TestDebtIsPaidBackByRefill(t *testing.T) {
	l := newLimiter(t, &MemorySharedData{}, Rule{PerMinute: 60})
	_, err := l.Take("k", 60, t0)
	require.NoError(t, err)
	require.NoError(t, l.Settle("k", 60, 90, t0)) // 30 tokens of debt
	d, err := l.Take("k", 1, t0+30*second)
	require.NoError(t, err)
	require.False(t, d.Allowed, "30 s only pays the debt back")
	require.Equal(t, second, d.RetryAfter)
	require.Equal(t, minute, d.ResetAfter)
	d, err = l.Take("k", 1, t0+31*second)
	require.NoError(t, err)
	require.True(t, d.Allowed)
}

func TestCasExhaustionFailsOpen(t *testing.T) {
	store := &contendedStore{}
	l := newLimiter(t, store, Rule{PerMinute: 60})
	d, err := l.Take("k", 1, t0)
	require.NoError(t, err)
	require.Equal(t, Decision{Allowed: true, FailedOpen: true, Limit: 60}, d)
	require.Equal(t, DefaultMaxRetries, store.sets)

	store.sets = 0
	require.ErrorIs(t, l.Settle("k", 10, 0, t0), ErrContended)
	require.Equal(t, DefaultMaxRetries, store.sets)
}

func TestStoreErrorFailsOpen(t *testing.T) {
	boom := errors.New("host: internal failure")
	l := newLimiter(t, brokenStore{boom}, Rule{PerMinute: 60})
	d, err := l.Take("k", 1, t0)
	require.ErrorIs(t, err, boom)
	require.EqualError(t, err, "limits: read bucket: host: internal failure")
	require.True(t, d.Allowed)
	require.True(t, d.FailedOpen)
	require.ErrorIs(t, l.Settle("k", 1, 0, t0), boom)
}

func TestForeignValueIsReplaced(t *testing.T) {
	store := &MemorySharedData{}
	require.NoError(t, store.Set("k", []byte("garbage"), 0))
	l := newLimiter(t, store, Rule{PerMinute: 60})
	d, err := l.Take("k", 1, t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Equal(t, int64(59), d.Remaining)
}

func TestSmallerCapacityAppliesAtOnce(t *testing.T) {
	store := &MemorySharedData{}
	big := newLimiter(t, store, Rule{PerMinute: 600})
	_, err := big.Take("k", 1, t0)
	require.NoError(t, err)
	small := newLimiter(t, store, Rule{PerMinute: 60})
	d, err := small.Take("k", 1, t0)
	require.NoError(t, err)
	require.Equal(t, int64(59), d.Remaining)
}

func TestLargeBucketsDoNotOverflow(t *testing.T) {
	l := newLimiter(t, &MemorySharedData{}, Rule{PerMinute: MaxPerMinute, Burst: MaxPerMinute})
	d, err := l.Take("k", MaxPerMinute, t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.NoError(t, l.Settle("k", 0, 3*MaxPerMinute, t0))
	d, err = l.Take("k", 1, t0+1<<62)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Equal(t, int64(MaxPerMinute-1), d.Remaining)
}

func TestDecisionPathAllocatesNothing(t *testing.T) {
	store := &flatStore{m: map[string]*memEntry{}}
	l := newLimiter(t, store, Rule{PerMinute: 1_000_000})
	key := l.Key("alice")
	now := t0
	allocs := testing.AllocsPerRun(1000, func() {
		now += ms
		d, err := l.Take(key, 100, now)
		if err != nil || !d.Allowed {
			panic("unexpected decision")
		}
		if err := l.Settle(key, 100, 40, now); err != nil {
			panic(err)
		}
		_ = l.Key("")
	})
	require.Zero(t, allocs)
}

func BenchmarkTake(b *testing.B) {
	for _, tc := range []struct {
		name  string
		store SharedData
	}{
		{"flat", &flatStore{m: map[string]*memEntry{}}},
		{"memory", &MemorySharedData{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newLimiter(b, tc.store, Rule{PerMinute: MaxPerMinute})
			key := l.Key("alice")
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now += ms
				if _, err := l.Take(key, 1, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSettle(b *testing.B) {
	l := newLimiter(b, &flatStore{m: map[string]*memEntry{}}, Rule{PerMinute: MaxPerMinute})
	key := l.Key("alice")
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now += ms
		if err := l.Settle(key, 100, 40, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKey(b *testing.B) {
	l := newLimiter(b, &MemorySharedData{}, Rule{PerMinute: 1})
	consumer := "team-payments"
	b.Run("route", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = l.Key("")
		}
	})
	b.Run("consumer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = l.Key(consumer)
		}
	})
}

// TestSlowBucketRefillsUnderFrequentWrites writes a 1-per-minute bucket every
// 50 µs, less than the 60 µs one micro-unit takes to refill: refill must still
// accrue instead of being rounded away at every write.
func TestSlowBucketRefillsUnderFrequentWrites(t *testing.T) {
	l := newLimiter(t, &MemorySharedData{}, Rule{PerMinute: 1, Burst: 2})
	d, err := l.Take("k", 2, t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	at := t0
	for at < t0+6*second {
		at += 50_000
		require.NoError(t, l.Settle("k", 1, 0, at)) // refund one
		require.NoError(t, l.Settle("k", 0, 1, at)) // and charge it back
	}
	d, err = l.Take("k", 1, at)
	require.NoError(t, err)
	require.False(t, d.Allowed)
	// A tenth of a token earned in 6 s; each write may lose under 1 ns.
	require.InDelta(t, 54*second, d.RetryAfter, float64(ms))
}

// TestConcurrentSettlesAreExact has 8 VMs reserve 5 and settle at 2 many times
// over one bucket with the clock stopped: every refund must land exactly once.
func TestConcurrentSettlesAreExact(t *testing.T) {
	store := &yieldingStore{}
	const capacity, vms, rounds = 10_000, 8, 200
	first := newLimiter(t, store, Rule{PerMinute: capacity})
	// Create the bucket before the race (see TestConcurrentTakesNeverOverAdmit).
	d, err := first.Take("k", 1, t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.NoError(t, first.Settle("k", 1, 0, t0))

	var wg sync.WaitGroup
	for range vms {
		l := newLimiter(t, store, Rule{PerMinute: capacity})
		l.maxRetries = 1 << 20
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				d, err := l.Take("k", 5, t0)
				if err != nil || !d.Allowed || d.FailedOpen {
					panic("take failed")
				}
				if err := l.Settle("k", 5, 2, t0); err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	d, err = first.Take("k", 0, t0)
	require.NoError(t, err)
	require.Equal(t, int64(capacity-vms*rounds*2), d.Remaining)
}

func FuzzConsumersForeignCount(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 5, 'a', 'l', 'i', 'c', 'e'}, "alice")
	f.Add([]byte{0, 0, 0, 9, 9, 'x'}, "bob")
	f.Add([]byte{0, 0, 0, 2}, "carol")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, stored []byte, value string) {
		store := &MemorySharedData{}
		c := newConsumers(t, store, 2)
		require.NoError(t, store.Set(c.countKey, stored, 0))
		first, err := c.Resolve(value)
		require.NoError(t, err)
		again, err := newConsumers(t, store, 2).Resolve(value)
		require.NoError(t, err)
		require.Equal(t, first, again, "VMs disagree")
		if value == "" || len(value) > MaxConsumerLen {
			require.False(t, first)
			return // never tracked, the store is not read
		}
		v, _, err := store.Get(c.countKey)
		require.NoError(t, err)
		if _, _, ok := decodeCount(v); !ok && first {
			t.Fatalf("count %q is not valid after admitting %q", v, value)
		}
	})
}

// mulDiv agrees with exact big-integer arithmetic, on both of its paths (a
// product that fits a word and one that does not), rounding and saturation
// included.
func TestMulDivIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	vals := []int64{0, 1, 2, 3, 59, 60_000_000, 1 << 31, 1<<32 + 1, 1 << 40, math.MaxInt64 / 3, math.MaxInt64}
	for range 2000 {
		vals = append(vals, rng.Int64N(math.MaxInt64), rng.Int64N(1<<33))
	}
	maxInt := big.NewInt(math.MaxInt64)
	for i := 0; i+2 < len(vals); i++ {
		a, b, c := vals[i], vals[i+1], vals[i+2]
		if c == 0 {
			c = 1
		}
		for _, up := range []bool{false, true} {
			q, r := new(big.Int).QuoRem(new(big.Int).Mul(big.NewInt(a), big.NewInt(b)), big.NewInt(c), new(big.Int))
			if up && r.Sign() != 0 {
				q.Add(q, big.NewInt(1))
			}
			if q.Cmp(maxInt) > 0 {
				q = maxInt
			}
			require.Equal(t, q.Int64(), mulDiv(a, b, c, up), "mulDiv(%d, %d, %d, %v)", a, b, c, up)
		}
	}
}
