package policy_test

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/canary"
	"github.com/shepherd-mesh/shepherd/sidecar/config"
	"github.com/shepherd-mesh/shepherd/sidecar/policy"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const secret = "sk-test-5ecr3t-value"

type fixture struct {
	clock  *clock
	logs   *testutil.SyncBuffer
	reg    *prometheus.Registry
	engine *policy.Engine
	dir    string
}

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	require.NoError(t, err)
	return c
}

const baseConfig = `
providers:
  - name: openai
    credential: {file: DIR/openai.key}
  - name: relay
    credential: {file: DIR/relay.key, header: x-api-key}
canary:
  routes:
    - route: chat
      baseline: openai
      canary: relay
      steps: [10, 50, 100]
      interval: 1m
      min_requests: 10
      max_error_rate: 0.1
budgets:
  routes:
    - {route: chat, monthly_usd: 1}
  consumers:
    - {consumer: team-a, monthly_usd: 0.5}
health:
  window: 10s
  min_requests: 5
  max_error_rate: 0.5
  cooldown: 30s
  max_cooldown: 2m
credentials:
  poll_interval: 1s
`

func newFixture(t *testing.T, store policy.Store) *fixture {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "openai.key"), []byte(secret+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "relay.key"), []byte("relay-key-1"), 0o600))
	f := &fixture{
		clock: &clock{now: time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)},
		logs:  &testutil.SyncBuffer{},
		reg:   prometheus.NewRegistry(),
		dir:   dir,
	}
	cfg := parse(t, strings.ReplaceAll(baseConfig, "DIR", dir))
	e, err := policy.New(context.Background(), cfg, policy.Options{
		Clock:      f.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: f.reg,
		Store:      store,
	})
	require.NoError(t, err)
	f.engine = e
	return f
}

func weights(p *policyv1.Policy, route string) map[string]uint32 {
	out := map[string]uint32{}
	for _, w := range p.Weights {
		if w.Route == route {
			out[w.Provider] = w.WeightBp
		}
	}
	return out
}

func outcomes(n int, o *policyv1.Outcome) []*policyv1.Outcome {
	out := make([]*policyv1.Outcome, n)
	for i := range out {
		out[i] = o
	}
	return out
}

func TestInitialPolicy(t *testing.T) {
	f := newFixture(t, nil)
	p := f.engine.Policy()
	require.Equal(t, map[string]uint32{"openai": 9000, "relay": 1000}, weights(p, "chat"))
	require.GreaterOrEqual(t, p.Version, uint64(f.clock.Now().UnixMilli()), "versions start from the clock")
	require.Len(t, p.Credentials, 2)
	require.Equal(t, "openai", p.Credentials[0].Provider)
	require.Equal(t, "authorization", p.Credentials[0].Header)
	require.Equal(t, "Bearer "+secret, p.Credentials[0].Value)
	require.Equal(t, "x-api-key", p.Credentials[1].Header)
	require.Equal(t, "relay-key-1", p.Credentials[1].Value)
	require.Len(t, p.Health, 2)
	for _, h := range p.Health {
		require.Zero(t, h.CooldownUntilUnixMs)
	}
	require.Len(t, p.Budgets, 2)
	require.Equal(t, "2026-11", p.Budgets[0].Period)
}

func TestCanaryAdvancesAndRollsBackFromReports(t *testing.T) {
	f := newFixture(t, nil)
	ok := &policyv1.Outcome{Route: "chat", Provider: "relay", StatusCode: 200, LatencyMs: 100}
	base := &policyv1.Outcome{Route: "chat", Provider: "openai", StatusCode: 200, LatencyMs: 100}

	f.engine.Report(outcomes(10, ok))
	f.engine.Report(outcomes(10, base))
	v0 := f.engine.Version()
	f.engine.Tick()
	require.Equal(t, v0, f.engine.Version(), "interval not over: nothing changes")

	f.clock.Add(time.Minute)
	f.engine.Tick()
	require.Equal(t, map[string]uint32{"openai": 5000, "relay": 5000}, weights(f.engine.Policy(), "chat"))
	require.Greater(t, f.engine.Version(), v0)

	// The next step fails: 2 of 10 canary outcomes are 503s.
	f.engine.Report(outcomes(8, ok))
	f.engine.Report(outcomes(2, &policyv1.Outcome{Route: "chat", Provider: "relay", StatusCode: 503}))
	f.engine.Tick()
	require.Equal(t, map[string]uint32{"openai": 10000, "relay": 0}, weights(f.engine.Policy(), "chat"))
	st, err := f.engine.CanaryStatus("chat")
	require.NoError(t, err)
	require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, st[0].State)
	require.Equal(t, "rollback", st[0].LastVerdict)
	require.Equal(t, "canary error rate 20.00% (2 of 10) is above 10.00%", st[0].Reason)

	require.Equal(t, 1.0, counterValue(t, f.reg, "shepherd_sidecar_canary_verdicts_total", "rollback"))
}

// counterValue finds a counter series by metric name and one label value.
func counterValue(t *testing.T, reg *prometheus.Registry, name, labelValue string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetValue() == labelValue {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s series with label %q", name, labelValue)
	return 0
}

func TestCommands(t *testing.T) {
	f := newFixture(t, nil)
	st, err := f.engine.SetCanaryWeight("chat", 2500)
	require.NoError(t, err)
	require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_MANUAL, st.State)
	require.Equal(t, map[string]uint32{"openai": 7500, "relay": 2500}, weights(f.engine.Policy(), "chat"))

	_, err = f.engine.PauseRollout("chat")
	require.ErrorIs(t, err, policy.ErrInvalid)

	st, err = f.engine.PromoteCanary("chat")
	require.NoError(t, err)
	require.Equal(t, uint32(10000), st.WeightBp)
	st, err = f.engine.RollbackCanary("chat")
	require.NoError(t, err)
	require.Zero(t, st.WeightBp)
	st, err = f.engine.ResumeRollout("chat")
	require.NoError(t, err)
	require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_PROGRESSING, st.State)
	require.Equal(t, uint32(1000), st.WeightBp)
	st, err = f.engine.PauseRollout("chat")
	require.NoError(t, err)
	require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_PAUSED, st.State)

	_, err = f.engine.PromoteCanary("nope")
	require.ErrorIs(t, err, policy.ErrUnknownRoute)
	require.EqualError(t, err, `no canary plan for route "nope"`)
}

func TestBudgets(t *testing.T) {
	f := newFixture(t, nil)
	spend := func(consumer string, micro int64) {
		f.engine.Report([]*policyv1.Outcome{{Route: "chat", Provider: "openai", Consumer: consumer, StatusCode: 200, CostMicroUsd: micro}})
	}
	budget := func(route, consumer string) *policyv1.Budget {
		for _, b := range f.engine.Policy().Budgets {
			if b.Route == route && b.Consumer == consumer {
				return b
			}
		}
		t.Fatalf("no budget %s/%s", route, consumer)
		return nil
	}

	spend("team-a", 200_000)
	spend("team-b", 300_000)
	// Spend alone is published at most every 10s.
	require.Zero(t, budget("chat", "").SpentMicroUsd)
	f.clock.Add(10 * time.Second)
	f.engine.Tick()
	require.Equal(t, int64(500_000), budget("chat", "").SpentMicroUsd)
	require.Equal(t, int64(200_000), budget("", "team-a").SpentMicroUsd)
	require.False(t, budget("", "team-a").Exhausted)

	// Exhaustion is published at once.
	v := f.engine.Version()
	spend("team-a", 300_000)
	require.Greater(t, f.engine.Version(), v)
	require.True(t, budget("", "team-a").Exhausted)
	require.Equal(t, int64(500_000), budget("", "team-a").LimitMicroUsd)
	require.False(t, budget("chat", "").Exhausted)
	spend("", 500_000)
	require.True(t, budget("chat", "").Exhausted)
	require.Equal(t, int64(1_300_000), budget("chat", "").SpentMicroUsd)

	// A new month (UTC) starts from zero.
	f.clock.Add(time.Hour)
	f.engine.Tick()
	b := budget("chat", "")
	require.Equal(t, "2026-12", b.Period)
	require.Zero(t, b.SpentMicroUsd)
	require.False(t, b.Exhausted)
	require.False(t, budget("", "team-a").Exhausted)
}

func TestNamespaceOf(t *testing.T) {
	for c, want := range map[string]string{
		"team-a/chat": "team-a/*", "team-a/*": "", "team-a": "", "/chat": "", "team-a/": "", "": "",
	} {
		require.Equal(t, want, policy.NamespaceOf(c), c)
	}
}

// TestWorkloadAndNamespaceBudgets: a workload's spend counts against its own
// budget and its namespace's; either one spent is published as exhausted.
func TestWorkloadAndNamespaceBudgets(t *testing.T) {
	f := newFixture(t, nil)
	f.engine.SetConfig(parse(t, strings.ReplaceAll(strings.Replace(baseConfig, "    - {consumer: team-a, monthly_usd: 0.5}\n",
		"    - {consumer: \"team-x/*\", monthly_usd: 0.5}\n    - {consumer: team-x/chat, monthly_usd: 0.2}\n", 1), "DIR", f.dir)))
	spend := func(consumer string, micro int64) {
		f.engine.Report([]*policyv1.Outcome{{Route: "chat", Provider: "openai", Consumer: consumer, StatusCode: 200, CostMicroUsd: micro}})
	}
	budget := func(consumer string) *policyv1.Budget {
		for _, b := range f.engine.Policy().Budgets {
			if b.Route == "" && b.Consumer == consumer {
				return b
			}
		}
		t.Fatalf("no budget %s", consumer)
		return nil
	}
	spend("team-x/chat", 200_000)
	require.True(t, budget("team-x/chat").Exhausted)
	require.False(t, budget("team-x/*").Exhausted)
	require.Equal(t, int64(200_000), budget("team-x/chat").SpentMicroUsd)
	spend("team-x/batch", 300_000)
	require.True(t, budget("team-x/*").Exhausted, "the namespace's budget holds its workloads' spend")
	require.Equal(t, int64(500_000), budget("team-x/*").SpentMicroUsd)
	spend("team-y/chat", 900_000)
	require.Equal(t, int64(500_000), budget("team-x/*").SpentMicroUsd, "another namespace's spend is its own")
}

// TestBudgetSpendIsBounded (issue 15.2): an outcome reporting an absurd
// cost adds at most MaxOutcomeCostMicroUSD, negative costs add nothing, and
// the spend never wraps.
func TestBudgetSpendIsBounded(t *testing.T) {
	f := newFixture(t, nil)
	// The configurable caps (TestReportCostIsCapped) at their highest: only
	// the hard bound and saturation remain.
	f.engine.SetConfig(parse(t, strings.ReplaceAll(baseConfig, "DIR", f.dir)+"reports: {max_outcome_usd: 1000000, max_report_usd: 1000000000}\n"))
	spent := func() int64 {
		for _, b := range f.engine.Policy().Budgets {
			if b.Route == "chat" && b.Consumer == "" {
				return b.SpentMicroUsd
			}
		}
		t.Fatal("no budget chat")
		return 0
	}
	for _, c := range []int64{math.MaxInt64, math.MaxInt64, -5, math.MinInt64, 20_000_001_600_084, 7} {
		f.engine.Report([]*policyv1.Outcome{{Route: "chat", Provider: "openai", StatusCode: 200, CostMicroUsd: c}})
	}
	f.clock.Add(10 * time.Second)
	f.engine.Tick()
	require.Equal(t, int64(3*policy.MaxOutcomeCostMicroUSD+7), spent())
}

func TestCooldownFrom429Storm(t *testing.T) {
	f := newFixture(t, nil)
	throttled := &policyv1.Outcome{Route: "chat", Provider: "relay", StatusCode: 429, RetryAfterMs: 90_000}
	f.engine.Report(outcomes(4, throttled))
	require.Zero(t, health(t, f.engine.Policy(), "relay").CooldownUntilUnixMs, "below min_requests")
	f.engine.Report(outcomes(1, throttled))
	h := health(t, f.engine.Policy(), "relay")
	require.Equal(t, f.clock.Now().Add(90*time.Second).UnixMilli(), h.CooldownUntilUnixMs, "retry-after beats the 30s cooldown")
	require.Equal(t, "5 of 5 outcomes failed (429/5xx) within 10s", h.Reason)
	require.Zero(t, health(t, f.engine.Policy(), "openai").CooldownUntilUnixMs)

	f.clock.Add(91 * time.Second)
	f.engine.Tick()
	require.Zero(t, health(t, f.engine.Policy(), "relay").CooldownUntilUnixMs, "cooldown over")
}

func TestCooldownCountsPerWindow(t *testing.T) {
	f := newFixture(t, nil)
	throttled := &policyv1.Outcome{Provider: "relay", StatusCode: 429}
	// 4 failures per 10s window never reach min_requests (5) in one window.
	for i := 0; i < 5; i++ {
		f.engine.Report(outcomes(4, throttled))
		f.clock.Add(11 * time.Second)
	}
	require.Zero(t, health(t, f.engine.Policy(), "relay").CooldownUntilUnixMs)
	// Below the error rate: 3 of 7 (43%) fail.
	f.engine.Report(outcomes(4, &policyv1.Outcome{Provider: "relay", StatusCode: 200}))
	f.engine.Report(outcomes(3, throttled))
	require.Zero(t, health(t, f.engine.Policy(), "relay").CooldownUntilUnixMs)
	f.engine.Report(outcomes(1, &policyv1.Outcome{Provider: "relay", StatusCode: 502}))
	require.NotZero(t, health(t, f.engine.Policy(), "relay").CooldownUntilUnixMs, "4 of 8 reaches 50%")
}

func TestCooldownFromLowRemaining(t *testing.T) {
	f := newFixture(t, nil)
	f.engine.Report([]*policyv1.Outcome{{Provider: "openai", StatusCode: 200, HasRatelimitRemaining: true, RatelimitRemaining: 3}})
	require.Zero(t, health(t, f.engine.Policy(), "openai").CooldownUntilUnixMs)
	f.engine.Report([]*policyv1.Outcome{{Provider: "openai", StatusCode: 200, HasRatelimitRemaining: true, RatelimitRemaining: 0}})
	h := health(t, f.engine.Policy(), "openai")
	require.Equal(t, f.clock.Now().Add(30*time.Second).UnixMilli(), h.CooldownUntilUnixMs)
	require.Equal(t, "x-ratelimit-remaining 0 is below 1", h.Reason)
}

func health(t *testing.T, p *policyv1.Policy, provider string) *policyv1.ProviderHealth {
	t.Helper()
	for _, h := range p.Health {
		if h.Provider == provider {
			return h
		}
	}
	t.Fatalf("no health for %s", provider)
	return nil
}

func credential(p *policyv1.Policy, provider string) string {
	for _, c := range p.Credentials {
		if c.Provider == provider {
			return c.Value
		}
	}
	return ""
}

func TestCredentialsReloadAndStayOutOfLogs(t *testing.T) {
	f := newFixture(t, nil)
	key := filepath.Join(f.dir, "openai.key")
	v := f.engine.Version()

	const rotated = "sk-rotated-0ther-secret"
	require.NoError(t, os.WriteFile(key, []byte(rotated), 0o600))
	f.engine.Tick() // poll interval (1s) not over yet
	require.Equal(t, "Bearer "+secret, credential(f.engine.Policy(), "openai"))
	f.clock.Add(time.Second)
	f.engine.Tick()
	require.Equal(t, "Bearer "+rotated, credential(f.engine.Policy(), "openai"))
	require.Greater(t, f.engine.Version(), v)

	// A broken file keeps the last good value and logs the path only.
	require.NoError(t, os.WriteFile(key, []byte("  \n"), 0o600))
	f.clock.Add(time.Second)
	f.engine.Tick()
	require.Equal(t, "Bearer "+rotated, credential(f.engine.Policy(), "openai"))
	require.NoError(t, os.Remove(key))
	f.clock.Add(time.Second)
	f.engine.Tick()
	require.Equal(t, "Bearer "+rotated, credential(f.engine.Policy(), "openai"))

	logs := f.logs.String()
	require.Contains(t, logs, "credential reloaded")
	require.Contains(t, logs, "is empty")
	require.Contains(t, logs, "no such file")
	require.NotContains(t, logs, secret)
	require.NotContains(t, logs, rotated)
	require.NotContains(t, logs, "sk-")

	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.NotContains(t, mf.String(), "sk-")
	}
}

func TestSecretFormatsRedacted(t *testing.T) {
	s := policy.Secret("sk-abc")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", s)
	require.NotContains(t, buf.String(), "sk-abc")
	require.Equal(t, "[redacted]", s.String())
}

func TestWatchWakesOnChange(t *testing.T) {
	f := newFixture(t, nil)
	p, changed := f.engine.Watch()
	select {
	case <-changed:
		t.Fatal("no change yet")
	default:
	}
	_, err := f.engine.SetCanaryWeight("chat", 100)
	require.NoError(t, err)
	testutil.Receive(t, changed, 10*time.Second)
	p2, _ := f.engine.Watch()
	require.Greater(t, p2.Version, p.Version)
}

func TestUnknownRoutesAndProvidersStayBounded(t *testing.T) {
	f := newFixture(t, nil)
	for i := 0; i < 1000; i++ {
		f.engine.Report([]*policyv1.Outcome{{Route: "r" + string(rune(i)), Provider: "p" + string(rune(i)), Consumer: "c" + string(rune(i)), StatusCode: 500, CostMicroUsd: 1}})
	}
	p := f.engine.Policy()
	require.Len(t, p.Health, 2)
	require.Len(t, p.Budgets, 2)
	require.Len(t, p.Weights, 2)
}

func TestSetConfigKeepsStateAndPicksUpChanges(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.engine.SetCanaryWeight("chat", 4000)
	require.NoError(t, err)
	f.engine.Report([]*policyv1.Outcome{{Route: "chat", Consumer: "team-a", CostMicroUsd: 100}})

	looser := strings.ReplaceAll(strings.ReplaceAll(baseConfig, "DIR", f.dir), "max_error_rate: 0.1", "max_error_rate: 0.3")
	f.engine.SetConfig(parse(t, looser))
	require.Equal(t, uint32(4000), weights(f.engine.Policy(), "chat")["relay"], "thresholds changed only")
	for _, b := range f.engine.Policy().Budgets {
		require.Equal(t, int64(100), b.SpentMicroUsd)
	}

	newSteps := strings.ReplaceAll(looser, "steps: [10, 50, 100]", "steps: [20, 100]")
	f.engine.SetConfig(parse(t, newSteps))
	require.Equal(t, uint32(2000), weights(f.engine.Policy(), "chat")["relay"], "new steps restart the rollout")
}

func TestStateSurvivesRestart(t *testing.T) {
	stores := map[string]func(t *testing.T) policy.Store{
		"file": func(t *testing.T) policy.Store {
			return policy.FileStore{Path: filepath.Join(t.TempDir(), "state.json")}
		},
		"redis": func(t *testing.T) policy.Store {
			c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
			t.Cleanup(func() { c.Close() })
			return redisStore(t, c)
		},
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			st := mk(t)
			f := newFixture(t, st)
			_, err := f.engine.SetCanaryWeight("chat", 3300)
			require.NoError(t, err)
			f.engine.Report([]*policyv1.Outcome{{Route: "chat", Provider: "relay", Consumer: "team-a", StatusCode: 200, CostMicroUsd: 700_000}})
			f.engine.Report(outcomes(5, &policyv1.Outcome{Provider: "relay", StatusCode: 503}))
			f.engine.Flush()
			v := f.engine.Version()

			g := newFixture(t, st)
			p := g.engine.Policy()
			require.Greater(t, p.Version, v, "versions never repeat across restarts")
			require.Equal(t, map[string]uint32{"openai": 6700, "relay": 3300}, weights(p, "chat"))
			st2, err := g.engine.CanaryStatus("chat")
			require.NoError(t, err)
			require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_MANUAL, st2[0].State)
			for _, b := range p.Budgets {
				require.Equal(t, int64(700_000), b.SpentMicroUsd)
			}
			require.NotZero(t, health(t, p, "relay").CooldownUntilUnixMs)
		})
	}
}

// redisStore returns a store on a key of the test's own, emptied first.
func redisStore(t *testing.T, c *redis.Client) policy.RedisStore {
	t.Helper()
	key := "test:" + t.Name()
	keys, err := c.Keys(context.Background(), key+"*").Result()
	require.NoError(t, err)
	if len(keys) > 0 {
		require.NoError(t, c.Del(context.Background(), keys...).Err())
	}
	return policy.RedisStore{Client: c, Key: key}
}

// TestRedisSharesSpendAcrossReplicas runs two engines on one Redis: each
// publishes the sum of both replicas' spend after a tick.
func TestRedisSharesSpendAcrossReplicas(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer c.Close()
	st := redisStore(t, c)
	a, b := newFixture(t, st), newFixture(t, st)
	budget := func(f *fixture, consumer string) *policyv1.Budget {
		for _, x := range f.engine.Policy().Budgets {
			if x.Consumer == consumer {
				return x
			}
		}
		t.Fatalf("no budget for %s", consumer)
		return nil
	}
	a.engine.Report([]*policyv1.Outcome{{Route: "chat", Consumer: "team-a", CostMicroUsd: 300_000}})
	b.engine.Report([]*policyv1.Outcome{{Route: "chat", Consumer: "team-a", CostMicroUsd: 300_000}})
	require.False(t, budget(a, "team-a").Exhausted, "each replica alone is under the 0.5 USD limit")
	require.False(t, budget(b, "team-a").Exhausted)

	a.engine.Tick()
	b.engine.Tick()
	require.True(t, budget(b, "team-a").Exhausted, "b sees a's spend at once")
	a.engine.Tick()
	require.True(t, budget(a, "team-a").Exhausted)
	a.clock.Add(10 * time.Second)
	a.engine.Tick()
	require.Equal(t, int64(600_000), budget(a, "team-a").SpentMicroUsd)

	// A third replica starting now begins from the shared total.
	c3 := newFixture(t, st)
	require.Equal(t, int64(600_000), budget(c3, "team-a").SpentMicroUsd)
	require.True(t, budget(c3, "team-a").Exhausted)
}

// TestRedisSharesRollouts runs two engines on one Redis: a command on one
// and an analysis step on the other reach both.
func TestRedisSharesRollouts(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer c.Close()
	st := redisStore(t, c)
	a, b := newFixture(t, st), newFixture(t, st)

	_, err := a.engine.SetCanaryWeight("chat", 2500)
	require.NoError(t, err)
	b.engine.Tick()
	require.Equal(t, map[string]uint32{"openai": 7500, "relay": 2500}, weights(b.engine.Policy(), "chat"))

	_, err = b.engine.ResumeRollout("chat") // manual 25% resumes at the 50% step
	require.NoError(t, err)
	a.engine.Tick()
	require.Equal(t, uint32(5000), weights(a.engine.Policy(), "chat")["relay"])

	// a sees enough healthy canary traffic and steps; b follows.
	a.engine.Report(outcomes(10, &policyv1.Outcome{Route: "chat", Provider: "relay", StatusCode: 200, LatencyMs: 10}))
	a.clock.Add(time.Minute)
	a.engine.Tick()
	require.Equal(t, uint32(10000), weights(a.engine.Policy(), "chat")["relay"])
	b.engine.Tick()
	require.Equal(t, uint32(10000), weights(b.engine.Policy(), "chat")["relay"])
	stB, err := b.engine.CanaryStatus("chat")
	require.NoError(t, err)
	require.Equal(t, policyv1.RolloutState_ROLLOUT_STATE_PROMOTED, stB[0].State)

	// b's rollback, made without a tick in between, still reaches a.
	_, err = b.engine.RollbackCanary("chat")
	require.NoError(t, err)
	_, err = a.engine.PauseRollout("chat")
	require.ErrorIs(t, err, policy.ErrInvalid, "a sees the rollback before applying its command")
	require.Equal(t, uint32(0), weights(a.engine.Policy(), "chat")["relay"])
}

func TestRedisSwapRolloutIsCompareAndSwap(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	defer c.Close()
	st := redisStore(t, c)
	ctx := context.Background()
	ok, err := st.SwapRollout(ctx, "r", 0, canary.Saved{Rev: 1, WeightBP: 100})
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = st.SwapRollout(ctx, "r", 0, canary.Saved{Rev: 1, WeightBP: 200})
	require.NoError(t, err)
	require.False(t, ok, "stale base revision")
	ok, err = st.SwapRollout(ctx, "r", 1, canary.Saved{Rev: 2, WeightBP: 300})
	require.NoError(t, err)
	require.True(t, ok)
	all, err := st.Rollouts(ctx)
	require.NoError(t, err)
	require.Equal(t, uint32(300), all["r"].WeightBP)
	require.Equal(t, uint64(2), all["r"].Rev)
}

func TestFileStoreWritesAtomically(t *testing.T) {
	dir := t.TempDir()
	fs := policy.FileStore{Path: filepath.Join(dir, "state.json")}
	s, err := fs.Load(context.Background())
	require.NoError(t, err, "a missing file is an empty state")
	require.Zero(t, s.Version)
	require.NoError(t, fs.Save(context.Background(), policy.Saved{Version: 7}))
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1, "no temporary files left behind")
	s, err = fs.Load(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(7), s.Version)

	require.NoError(t, os.WriteFile(fs.Path, []byte("{"), 0o600))
	_, err = fs.Load(context.Background())
	require.ErrorContains(t, err, "state file "+fs.Path+": ")
}

// TestReportCostIsCapped: one report of 400 forged outcomes of $100 each
// (the issue's $40,000 against a $100 budget) adds at most
// reports.max_outcome_usd per outcome and reports.max_report_usd per report;
// what was cut is counted and logged.
func TestReportCostIsCapped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reports   string
		outcomes  int
		costUSD   int64
		wantSpent int64 // micro-USD
		outcome   float64
		report    float64
	}{
		{"defaults: $10 per outcome, $100 per report", "", 400, 100, 100_000_000, 400, 390},
		{"configured caps", "reports: {max_outcome_usd: 1, max_report_usd: 5}", 400, 100, 5_000_000, 400, 395},
		{"within the caps nothing is cut", "reports: {max_outcome_usd: 1, max_report_usd: 5}", 4, 1, 4_000_000, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testutil.SyncBuffer{}
			reg := prometheus.NewRegistry()
			clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
			e, err := policy.New(context.Background(), parse(t, "budgets: {routes: [{route: chat, monthly_usd: 100000}]}\n"+tc.reports),
				policy.Options{Clock: clk.Now, Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			require.NoError(t, err)
			e.Report(outcomes(tc.outcomes, &policyv1.Outcome{Route: "chat", Provider: "p", StatusCode: 200, CostMicroUsd: tc.costUSD * 1_000_000}))
			clk.Add(11 * time.Second)
			e.Tick()
			require.Equal(t, tc.wantSpent, e.Policy().Budgets[0].SpentMicroUsd)
			require.Equal(t, tc.outcome, counterValue(t, reg, "shepherd_sidecar_report_outcomes_clipped_total", "outcome"))
			require.Equal(t, tc.report, counterValue(t, reg, "shepherd_sidecar_report_outcomes_clipped_total", "report"))
			require.Equal(t, tc.outcome+tc.report > 0, strings.Contains(logs.String(), "report clipped"), logs.String())
		})
	}
}
