//go:build rueidis

// Package rueidisstore is an experimental rate limit store on the rueidis
// Redis client, built only with -tags rueidis, for comparing rueidis's
// automatic pipelining with the shipped store (go-redis with its own
// batching; docs/RATELIMIT.md, "Redis clients"). It counts with the
// shipped store's script and keys, so both give the same answers. It is
// not used by shepherd-sidecar.
package rueidisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

var script = rueidis.NewLuaScript(store.RedisScript)

// Store counts each decision with one script call of its own. rueidis
// writes the calls of concurrent decisions together (auto-pipelining), so
// a round trip carries many decisions without a batching layer; Redis
// still runs one script call per decision.
type Store struct {
	client rueidis.Client
	prefix string
}

// New returns a Store on client whose keys start with prefix, laid out as
// the shipped store's (store.Redis.Key), expiring a second after their
// window.
func New(client rueidis.Client, prefix string) *Store {
	return &Store{client: client, prefix: prefix}
}

func (s *Store) key(h store.Hit) string {
	return s.prefix + string(h.Key) + ":" + strconv.FormatInt(h.Window.Start, 10)
}

// Apply implements store.Store.
func (s *Store) Apply(ctx context.Context, reqs []store.Hit) ([]store.Result, error) {
	keys := make([]string, len(reqs))
	args := make([]string, 1, 1+2*len(reqs))
	args[0] = strconv.FormatInt(store.MaxCount, 10)
	for i, h := range reqs {
		keys[i] = s.key(h)
		args = append(args, strconv.FormatUint(min(h.Hits, store.MaxHits), 10), strconv.FormatInt((h.Window.Seconds+1)*1000, 10))
	}
	vals, err := script.Exec(ctx, s.client, keys, args).ToArray()
	if err != nil {
		return nil, fmt.Errorf("rueidis store: %w", err)
	}
	if len(vals) != len(reqs) {
		return nil, fmt.Errorf("rueidis store: %d counts for %d hits", len(vals), len(reqs))
	}
	out := make([]store.Result, len(reqs))
	for i := range vals {
		n, err := vals[i].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("rueidis store: hit %d: %w", i, err)
		}
		out[i] = store.Result{Count: uint64(n), Reset: reqs[i].Window.End()}
	}
	return out, nil
}

// Close implements store.Store; it closes the client.
func (s *Store) Close() error {
	s.client.Close()
	return nil
}
