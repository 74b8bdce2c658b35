package store_test

import (
	"context"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// TestStoresSaturate drives every store with the hit counts an attacker
// would send: each answers, the count saturates at MaxCount (never wraps,
// never fails), and the key keeps answering afterwards.
func TestStoresSaturate(t *testing.T) {
	type step struct {
		hits uint64
		want uint64
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{
			// Issue 15: 2^64-301 on a counter at 300 wrapped it back to 0.
			name:  "2^64-301 on a counter at 300",
			steps: []step{{300, 300}, {math.MaxUint64 - 300, 300 + store.MaxHits}, {0, 300 + store.MaxHits}, {1, 301 + store.MaxHits}},
		},
		{
			// Issue 21: 2^63-1 on a fresh Redis key left it at 2^63-1 and
			// every later INCRBY failed.
			name:  "2^63-1 on a fresh key, then single hits",
			steps: []step{{math.MaxInt64, store.MaxHits}, {1, store.MaxHits + 1}, {1, store.MaxHits + 2}},
		},
		{
			name:  "MaxHits exactly",
			steps: []step{{store.MaxHits, store.MaxHits}, {store.MaxHits, 2 * store.MaxHits}},
		},
		{
			name: "the count stops at MaxCount and keeps answering",
			steps: func() []step {
				var s []step
				for n := uint64(1); n <= 257; n++ {
					s = append(s, step{math.MaxUint64, min(n*store.MaxHits, store.MaxCount)})
				}
				return append(s, step{1, store.MaxCount}, step{0, store.MaxCount})
			}(),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, st := range stores(t) {
				for i, s := range tc.steps {
					got, err := st.Apply(context.Background(), []store.Hit{hit("k", s.hits, 0, 60)})
					require.NoError(t, err, "%s step %d", name, i)
					require.Equal(t, []store.Result{{Count: s.want, Reset: 60}}, got, "%s step %d", name, i)
				}
			}
		})
	}
}

// TestRedisHealsACounterOutOfRange: a key written beyond the bound (by an
// older sidecar that let INCRBY reach 2^63-1, or by hand) answers from the
// bound instead of failing every hit until it expires.
func TestRedisHealsACounterOutOfRange(t *testing.T) {
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	rs := store.NewRedis(client, store.RedisOptions{Prefix: "heal:"})
	ctx := context.Background()
	cases := []struct {
		stored string
		want   uint64
	}{
		{strconv.FormatInt(math.MaxInt64, 10), store.MaxCount},
		{strconv.FormatInt(store.MaxCount, 10), store.MaxCount},
		{"-5", 1},
		{strconv.FormatInt(math.MinInt64, 10), 1},
		{"7", 8},
		{"5.0", 6},  // a whole number INCRBY refuses is stored as an integer
		{"1.5", 1},  // a fraction starts again from the hits
		{"-5.5", 1}, // so does a negative fraction
		{"1e300", store.MaxCount},
	}
	for i, tc := range cases {
		key := "k" + strconv.Itoa(i)
		require.NoError(t, client.Set(ctx, "heal:"+key+":0", tc.stored, 0).Err())
		var last uint64
		for range 3 {
			got, err := rs.Apply(ctx, []store.Hit{hit(key, 1, 0, 60)})
			require.NoError(t, err, tc.stored)
			require.Equal(t, tc.want, got[0].Count, tc.stored)
			last, tc.want = tc.want, min(tc.want+1, store.MaxCount)
		}
		ttl, err := client.PTTL(ctx, "heal:"+key+":0").Result()
		require.NoError(t, err)
		require.Greater(t, ttl.Milliseconds(), int64(0), "%s: the healed key still expires", tc.stored)
		v, err := client.Get(ctx, "heal:"+key+":0").Result()
		require.NoError(t, err)
		require.Equal(t, strconv.FormatUint(last, 10), v, "%s: stored as a plain integer", tc.stored)
	}
}

// TestStoresAgreeWithExactArithmetic is a property test: random sequences
// of hits, small and extreme, on a few keys, answered the same by every
// store and by exact big-integer arithmetic (the count is the sum of the
// hits, each taken as at most MaxHits, clipped at MaxCount).
func TestStoresAgreeWithExactArithmetic(t *testing.T) {
	extremes := []uint64{0, 1, 2, store.MaxHits - 1, store.MaxHits, store.MaxHits + 1,
		store.MaxCount - 1, store.MaxCount, math.MaxInt64 - 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64 - 300, math.MaxUint64}
	sts := stores(t)
	rng := rand.New(rand.NewPCG(15, 21))
	for round := range 20 {
		keys := []string{"r" + strconv.Itoa(round) + "a", "r" + strconv.Itoa(round) + "b", "r" + strconv.Itoa(round) + "c"}
		exact := map[string]*big.Int{}
		for _, k := range keys {
			exact[k] = new(big.Int)
		}
		for step := range 40 {
			var hits []store.Hit
			var want []store.Result
			for range 1 + rng.IntN(3) {
				k := keys[rng.IntN(len(keys))]
				var h uint64
				switch rng.IntN(3) {
				case 0:
					h = extremes[rng.IntN(len(extremes))]
				case 1:
					h = rng.Uint64()
				default:
					h = rng.Uint64N(1000)
				}
				hb := new(big.Int).SetUint64(h)
				if hb.Cmp(big.NewInt(store.MaxHits)) > 0 {
					hb.SetInt64(store.MaxHits)
				}
				sum := exact[k].Add(exact[k], hb)
				if sum.Cmp(big.NewInt(store.MaxCount)) > 0 {
					sum.SetInt64(store.MaxCount)
				}
				hits = append(hits, hit(k, h, 0, 3600))
				want = append(want, store.Result{Count: sum.Uint64(), Reset: 3600})
			}
			for name, st := range sts {
				got, err := st.Apply(context.Background(), hits)
				require.NoError(t, err, "%s round %d step %d", name, round, step)
				require.Equal(t, want, got, "%s round %d step %d", name, round, step)
			}
		}
	}
}
