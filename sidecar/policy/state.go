package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shepherd-mesh/shepherd/sidecar/canary"
)

// Saved is the engine state that survives a restart: the policy version,
// rollouts, budget spend and provider cooldowns. Credentials are never saved.
type Saved struct {
	Version   uint64                   `json:"version"`
	Rollouts  map[string]canary.Saved  `json:"rollouts,omitempty"`
	Budgets   map[string]SavedBudget   `json:"budgets,omitempty"`
	Cooldowns map[string]SavedCooldown `json:"cooldowns,omitempty"`
}

// SavedBudget is one budget's spend in a period.
type SavedBudget struct {
	Period        string `json:"period"`
	SpentMicroUSD int64  `json:"spent_micro_usd"`
}

// SavedCooldown is one provider's cooldown.
type SavedCooldown struct {
	UntilUnixMS int64  `json:"until_unix_ms"`
	Reason      string `json:"reason"`
}

// Store persists Saved. Implementations are safe for concurrent use; the
// engine serializes its own calls.
type Store interface {
	// Load returns the saved state; a store that holds none returns an empty
	// Saved and no error.
	Load(ctx context.Context) (Saved, error)
	Save(ctx context.Context, s Saved) error
}

// SpendSharer is implemented by stores that add budget spend up across
// sidecar replicas, so that every replica publishes the same totals.
type SpendSharer interface {
	// AddSpend adds each delta to its budget's shared total for the period
	// and returns the new totals, in the same order.
	AddSpend(ctx context.Context, deltas []SpendDelta) ([]int64, error)
}

// SpendDelta is spend to add to one budget's shared total.
type SpendDelta struct {
	Budget   string // "route/<r>" or "consumer/<c>"
	Period   string // "2006-01"
	MicroUSD int64
}

// RolloutSharer is implemented by stores that let several sidecar replicas
// agree on rollouts: each rollout's state is stored with its revision
// (canary.Saved.Rev) and replaced only by a compare-and-swap.
type RolloutSharer interface {
	// Rollouts returns every stored rollout by route.
	Rollouts(ctx context.Context) (map[string]canary.Saved, error)
	// SwapRollout stores s for route if the stored revision is prev (0: none
	// stored) and reports whether it did.
	SwapRollout(ctx context.Context, route string, prev uint64, s canary.Saved) (bool, error)
}

// FileStore keeps the state in a JSON file, replaced atomically (write to a
// temporary file in the same directory, fsync, rename).
type FileStore struct {
	Path string
}

// Load reads the file; a missing file is an empty state.
func (f FileStore) Load(context.Context) (Saved, error) {
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Saved{}, nil
	}
	if err != nil {
		return Saved{}, fmt.Errorf("read state file: %w", err)
	}
	var s Saved
	if err := json.Unmarshal(data, &s); err != nil {
		return Saved{}, fmt.Errorf("state file %s: %w", f.Path, err)
	}
	return s, nil
}

// Save writes the state.
func (f FileStore) Save(_ context.Context, s Saved) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".*")
	if err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}

// DefaultRedisKey is the hash RedisStore uses unless told otherwise.
const DefaultRedisKey = "shepherd:sidecar:state"

// RedisStore keeps the state in one Redis hash: field "version", and one
// JSON field per rollout ("rollout/<route>"), budget ("budget/<key>") and
// cooldown ("cooldown/<provider>"). It shares rollouts (RolloutSharer) and
// spend (SpendSharer) between replicas.
type RedisStore struct {
	Client redis.UniversalClient
	// Key defaults to DefaultRedisKey.
	Key string
}

func (r RedisStore) key() string {
	if r.Key == "" {
		return DefaultRedisKey
	}
	return r.Key
}

// Load reads the hash.
func (r RedisStore) Load(ctx context.Context) (Saved, error) {
	m, err := r.Client.HGetAll(ctx, r.key()).Result()
	if err != nil {
		return Saved{}, fmt.Errorf("load state from redis: %w", err)
	}
	s := Saved{Rollouts: map[string]canary.Saved{}, Budgets: map[string]SavedBudget{}, Cooldowns: map[string]SavedCooldown{}}
	for field, v := range m {
		var err error
		switch {
		case field == "version":
			s.Version, err = strconv.ParseUint(v, 10, 64)
		case strings.HasPrefix(field, "rollout/"):
			var x canary.Saved
			err = json.Unmarshal([]byte(v), &x)
			s.Rollouts[strings.TrimPrefix(field, "rollout/")] = x
		case strings.HasPrefix(field, "budget/"):
			var x SavedBudget
			err = json.Unmarshal([]byte(v), &x)
			s.Budgets[strings.TrimPrefix(field, "budget/")] = x
		case strings.HasPrefix(field, "cooldown/"):
			var x SavedCooldown
			err = json.Unmarshal([]byte(v), &x)
			s.Cooldowns[strings.TrimPrefix(field, "cooldown/")] = x
		}
		if err != nil {
			return Saved{}, fmt.Errorf("state in redis hash %s, field %s: %w", r.key(), field, err)
		}
	}
	return s, nil
}

// spendTTL keeps a month's shared spend a while after the month ends.
const spendTTL = 62 * 24 * time.Hour

// AddSpend adds the deltas to the hash "<key>:spend:<period>" (one field per
// budget, expiring after two months) in one pipeline and returns the totals.
func (r RedisStore) AddSpend(ctx context.Context, deltas []SpendDelta) ([]int64, error) {
	cmds := make([]*redis.IntCmd, len(deltas))
	_, err := r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		expired := map[string]bool{}
		for i, d := range deltas {
			k := r.key() + ":spend:" + d.Period
			cmds[i] = p.HIncrBy(ctx, k, d.Budget, d.MicroUSD)
			if !expired[k] {
				expired[k] = true
				p.Expire(ctx, k, spendTTL)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("add spend in redis: %w", err)
	}
	totals := make([]int64, len(deltas))
	for i, c := range cmds {
		totals[i] = c.Val()
	}
	return totals, nil
}

// Save writes the version, budgets and cooldowns into the hash. Rollouts are
// written only by SwapRollout, so a replica never overwrites another's
// newer rollout.
func (r RedisStore) Save(ctx context.Context, s Saved) error {
	fields := []any{"version", strconv.FormatUint(s.Version, 10)}
	add := func(name string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		fields = append(fields, name, string(b))
		return nil
	}
	for k, v := range s.Budgets {
		if err := add("budget/"+k, v); err != nil {
			return fmt.Errorf("encode state: %w", err)
		}
	}
	for k, v := range s.Cooldowns {
		if err := add("cooldown/"+k, v); err != nil {
			return fmt.Errorf("encode state: %w", err)
		}
	}
	if err := r.Client.HSet(ctx, r.key(), fields...).Err(); err != nil {
		return fmt.Errorf("save state to redis: %w", err)
	}
	return nil
}

// Rollouts reads the rollout fields of the hash.
func (r RedisStore) Rollouts(ctx context.Context) (map[string]canary.Saved, error) {
	s, err := r.Load(ctx)
	if err != nil {
		return nil, err
	}
	return s.Rollouts, nil
}

// swapScript replaces a rollout field only when its stored "rev" is ARGV[2].
var swapScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local rev = 0
if cur then
  rev = tonumber(cjson.decode(cur)['rev'] or 0)
end
if rev ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// SwapRollout implements RolloutSharer with a Lua compare-and-swap.
func (r RedisStore) SwapRollout(ctx context.Context, route string, prev uint64, s canary.Saved) (bool, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return false, fmt.Errorf("encode rollout: %w", err)
	}
	n, err := swapScript.Run(ctx, r.Client, []string{r.key()}, "rollout/"+route, strconv.FormatUint(prev, 10), string(b)).Int()
	if err != nil {
		return false, fmt.Errorf("swap rollout %q in redis: %w", route, err)
	}
	return n == 1, nil
}
