//go:build rueidis

package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/internal/rlsbench/rueidisstore"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// TestRueidisStoreAgrees: the experimental rueidis store (built with -tags
// rueidis, internal/rlsbench/rueidisstore) and the shipped
// one count in the same keys and give the same answers, in turn, on one
// server.
func TestRueidisStoreAgrees(t *testing.T) {
	addr := redistest.Start(t)
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	require.NoError(t, err)
	gc := redis.NewClient(&redis.Options{Addr: addr})
	defer gc.Close()
	prefix := "agree:" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":"
	ru := rueidisstore.New(rc, prefix)
	defer ru.Close()
	gr := store.NewRedis(gc, store.RedisOptions{Prefix: prefix})
	defer gr.Close()
	w := store.Window{Start: 60, Seconds: 60}
	want := map[string]uint64{}
	for i := range 20 {
		st := store.Store(gr)
		if i%2 == 1 {
			st = ru
		}
		a, b := "k"+strconv.Itoa(i%3), "k"+strconv.Itoa(i%5)
		hits := []store.Hit{{Key: []byte(a), Hits: uint64(i), Window: w}, {Key: []byte(b), Hits: 1, Window: w}}
		want[a] += uint64(i)
		wa := want[a]
		want[b]++
		got, err := st.Apply(context.Background(), hits)
		require.NoError(t, err, "step %d", i)
		require.Equal(t, []store.Result{{Count: wa, Reset: 120}, {Count: want[b], Reset: 120}}, got, "step %d", i)
	}
	_, err = ru.Apply(context.Background(), []store.Hit{{Key: []byte("k0"), Hits: store.MaxCount, Window: w}})
	require.NoError(t, err)
	got, err := gr.Apply(context.Background(), []store.Hit{{Key: []byte("k0"), Hits: 0, Window: w}})
	require.NoError(t, err)
	require.Equal(t, want["k0"]+store.MaxHits, got[0].Count, "hits above MaxHits count as MaxHits")
}
