package limits

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSettleAgreesWithExactArithmetic is a property test of Settle against
// big-integer arithmetic over every count a provider or caller could send:
// negative counts are taken as 0 (so no settlement refunds more than its
// reservation), the adjustment is clamped to one bucket of refund and two of
// charge, and the bucket stays within [-capacity, capacity].
func TestSettleAgreesWithExactArithmetic(t *testing.T) {
	extremes := []int64{math.MinInt64, -1 << 62, -1, 0, 1, 59, 60, 61, 1 << 40, math.MaxInt64 - 1, math.MaxInt64}
	rng := rand.New(rand.NewPCG(15, 2))
	pick := func() int64 {
		if rng.IntN(2) == 0 {
			return extremes[rng.IntN(len(extremes))]
		}
		return rng.Int64N(200) - 50
	}
	for range 3000 {
		perMinute := 1 + rng.Int64N(MaxPerMinute)
		if rng.IntN(2) == 0 {
			perMinute = 1 + rng.Int64N(100)
		}
		store := &MemorySharedData{}
		l := newLimiter(t, store, Rule{PerMinute: perMinute})
		take := rng.Int64N(perMinute + 1)
		d, err := l.Take("k", take, t0)
		require.NoError(t, err)
		require.True(t, d.Allowed)
		before, _, err := l.load("k", t0)
		require.NoError(t, err)

		reserved, actual := pick(), pick()
		require.NoError(t, l.Settle("k", reserved, actual, t0))
		after, _, err := l.load("k", t0)
		require.NoError(t, err)

		limit := big.NewInt(perMinute)
		diff := new(big.Int).Sub(big.NewInt(max(reserved, 0)), big.NewInt(max(actual, 0)))
		if diff.Cmp(limit) > 0 {
			diff.Set(limit)
		}
		if lo := new(big.Int).Mul(limit, big.NewInt(-2)); diff.Cmp(lo) < 0 {
			diff.Set(lo)
		}
		capMicro := new(big.Int).Mul(limit, big.NewInt(unit))
		want := new(big.Int).Add(big.NewInt(before.tokens), diff.Mul(diff, big.NewInt(unit)))
		if want.Cmp(capMicro) > 0 {
			want.Set(capMicro)
		}
		if lo := new(big.Int).Neg(capMicro); want.Cmp(lo) < 0 {
			want.Set(lo)
		}
		require.Equal(t, want.Int64(), after.tokens, "perMinute %d take %d reserved %d actual %d", perMinute, take, reserved, actual)
		refund := new(big.Int).Sub(big.NewInt(after.tokens), big.NewInt(before.tokens))
		most := new(big.Int).Mul(big.NewInt(max(reserved, 0)), big.NewInt(unit))
		require.LessOrEqual(t, refund.Cmp(most), 0, "reserved %d actual %d: refund beyond the reservation", reserved, actual)
	}
}
