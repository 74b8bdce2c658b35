package main

import (
	"os"
	"strconv"

	"github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/filter/cooldown"
	"github.com/shepherd-mesh/shepherd/filter/fallback"
	"github.com/shepherd-mesh/shepherd/filter/limits"
	"github.com/shepherd-mesh/shepherd/filter/mesh"
	"github.com/shepherd-mesh/shepherd/filter/proxywasm"
	"github.com/shepherd-mesh/shepherd/filter/rls"
	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

const (
	// idleTickMillis is how often the plugin context wakes when nothing waits, to
	// let the collector run.
	idleTickMillis = 1000
	// busyTickMillis is the tick while fallback retries wait for their backoff.
	busyTickMillis = 10
	// gcThreshold is how many bytes may be allocated between collections. The
	// collector does not finish cycles by itself in a reactor whose callbacks never
	// block; a bound here bounds each VM's heap. Linear memory grows to the
	// heap's peak and never shrinks, so the garbage allowed between collections
	// is memory the VM keeps: admitting 30k consumers (a few hundred bytes of
	// garbage each) left a VM at 8.5 MiB with 4 MiB here, 5.5 MiB with 1 MiB.
	// Steady requests allocate nothing, so they never pay for it.
	gcThreshold = 1 << 20
	// gcCheckStreams is how many streams end between two checks of the
	// allocation counter outside the tick.
	gcCheckStreams = 64
)

// vm is the filter's VM context: one per Wasm VM (Envoy worker).
type vm struct{ types.DefaultVMContext }

// NewPluginContext is called once per plugin on this VM.
func (*vm) NewPluginContext(uint32) types.PluginContext { return &plugin{} }

// plugin holds one validated configuration with everything derived from it, and
// the retries waiting for their backoff. A reconfigure replaces the policy as a
// whole; streams keep the one they started with.
type plugin struct {
	types.DefaultPluginContext
	policy *policy
	rng    uint64
	tick   uint32
	// waiting are the streams whose next fallback attempt waits for the tick.
	waiting []*stream
	// streams counts finished streams, to pace the collector checks.
	streams uint64
	// sc is the conversation with shepherd-sidecar.
	sc sidecarState
	// quota is the quota mode's state (quota.go).
	quota quotaState
	// workload is this Envoy's "<namespace>/<service account>" from its node
	// metadata, read at configure (config.Unauthenticated without one).
	workload string

	// Reused by every stream on this VM (one callback runs at a time): the
	// header slices of the phase at hand (reqHeaders holds the request's
	// headers during its request-headers phase, and is empty otherwise), and
	// finished streams for the next ones. Allocation is the costliest thing
	// Go does in a VM.
	reqHeaders, respHeaders [][2]string
	// match is the route matcher's scratch, reused by every stream.
	match config.MatchScratch
	free  []*stream
	// bodyBuf receives request bodies rewritten for routes without fallback.
	bodyBuf []byte
	// pathBuf receives rewritten request paths.
	pathBuf []byte

	// The VM memory gauge and the ticks that pace it.
	mem        proxywasm.MetricGauge
	memDefined bool
	ticks      uint64
	// replyHeaders and replyValues receive the headers of a rate limit
	// refusal and their values.
	replyHeaders [][2]string
	replyValues  []byte
	// replyBody receives the error body of a local reply.
	replyBody []byte
	// coolBuf receives the provider memory's new value before it is stored.
	coolBuf []byte
	// coolSeen is set while this VM knows of a provider's pause: since its
	// last tick's look at the memory, since it stored one itself, or since
	// another VM's notice reached its wake-up queue.
	coolSeen bool
	// wake is this VM's wake-up queue (0 when the host gave none: the VM
	// then reads the memory on every routed request), wakeAt when it was
	// last listed (Unix ms), wakeBuf the list's new value before it is
	// stored (cooling.go).
	wake    uint32
	wakeAt  int64
	wakeBuf []byte
}

// keepReplyHeaders keeps h's array for the next refusal, its strings cleared.
func (p *plugin) keepReplyHeaders(h [][2]string) {
	clear(h)
	p.replyHeaders = h[:0]
}

// maxReusedBody bounds the request bodies a VM reads and rewrites in buffers
// it keeps between requests (the binding's scratch for reading, bodyBuf for
// the rewrite): bodies up to the default maxBodyBytes cost no allocation, and
// the two buffers hold at most 2 MiB of a VM's memory. bodyBuf holds only the
// edited start of a body (up to its last edit, usually the model near the
// start), so it stays small unless a body's edits lie far into it. A larger body (a route
// with a larger maxBodyBytes) is read and rewritten in buffers of its own.
const maxReusedBody = 1 << 20

// maxBodyBuf bounds the rewrite buffer a VM keeps between requests: a
// rewrite adds at most a model name and stream_options to the body, and
// append rounds a large buffer up to whole pages.
const maxBodyBuf = maxReusedBody + 64<<10

// keepBodyBuf keeps b's array for the next rewrite unless it grew too large.
func (p *plugin) keepBodyBuf(b []byte) {
	if cap(b) <= maxBodyBuf {
		p.bodyBuf = b[:0]
	}
}

// maxFreeStreams bounds the finished streams a VM keeps for reuse.
const maxFreeStreams = 64

// policy is a configuration and the per-VM state built from it.
type policy struct {
	cfg     *config.Config
	metrics *metrics
	routes  []routeState
	// overlay is the sidecar's policy applied to cfg, nil before the first one
	// arrives. The plugin's tick replaces it; streams read it when they route.
	overlay *mesh.Overlay
	// quotaDomains are the domains of the quota-mode global limits.
	quotaDomains []string
}

// routeState is a route's limiters and retry state on this VM.
type routeState struct {
	requests, tokens *limits.Limiter
	consumers        *limits.Consumers
	// meshConsumers bounds the consumer values sent to the sidecar as
	// descriptors: consumers when the global limits read the same header,
	// else a set of their own.
	meshConsumers *limits.Consumers
	planner       *fallback.Planner
	budget        *fallback.RetryBudget
	// byModel are the planners of fallback.byModel's chains.
	byModel map[*config.Model]*fallback.Planner
	// claimPath is the property path of the route's consumer claim.
	claimPath []string
	// quotaKey is the shared data key of the quota bucket this VM admitted
	// the route's last request against, for descriptors whose values all
	// come from the config (no consumer); quotaEntries are its entries and
	// quotaAt where its bucket id starts.
	quotaKey     string
	quotaEntries []rls.Entry
	quotaAt      int
}

// OnPluginStart validates the pluginConfig. A bad config fails the start with a
// log line naming the field; Envoy then keeps the previous configuration, or
// applies the plugin's fail_open setting when there is none.
func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCritical("shepherd: reading pluginConfig: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	cfg, err := config.Parse(data, os.LookupEnv)
	if err != nil {
		proxywasm.LogCritical("shepherd: invalid pluginConfig: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	pol, err := newPolicy(cfg)
	if err != nil {
		proxywasm.LogCritical("shepherd: invalid pluginConfig: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.policy = pol
	p.readWorkload()
	if now, err := proxywasm.GetCurrentTimeNanoseconds(); err == nil {
		p.rng ^= now | 1
	}
	p.sc.owner = p.random() | 1
	if sc := cfg.Sidecar; sc != nil {
		p.sc.outcomes = mesh.NewOutcomes(4 * sc.ReportBatch)
		p.applySharedPolicy() // a reconfigured VM keeps the sidecar's policy
	}
	if p.wake == 0 {
		p.openWake(nowNanos() / 1e6)
	}
	p.setTick(p.baseTick())
	proxywasm.LogInfo("shepherd: configured " + strconv.Itoa(len(cfg.Routes)) + " routes, " + strconv.Itoa(len(cfg.Providers)) + " providers, " + strconv.Itoa(len(cfg.Models)) + " models")
	return types.OnPluginStartStatusOK
}

func newPolicy(cfg *config.Config) (*policy, error) {
	pol := &policy{cfg: cfg, metrics: newMetrics(cfg), routes: make([]routeState, len(cfg.Routes)), quotaDomains: quotaDomains(cfg)}
	store := sharedData{}
	for i, r := range cfg.Routes {
		st := &pol.routes[i]
		var err error
		if l := r.Limits; l != nil {
			if l.Requests.PerMinute > 0 {
				if st.requests, err = limits.New(store, r.Name, limits.Requests, l.Requests); err != nil {
					return nil, err
				}
			}
			if l.Tokens.PerMinute > 0 {
				if st.tokens, err = limits.New(store, r.Name, limits.Tokens, l.Tokens); err != nil {
					return nil, err
				}
			}
			if l.PerConsumer {
				if st.consumers, err = limits.NewConsumers(store, r.Name, l.MaxConsumers); err != nil {
					return nil, err
				}
			}
		}
		if g := r.GlobalLimits; g != nil && g.PerConsumer {
			switch l := r.Limits; {
			case l != nil && l.ConsumerHeader == g.ConsumerHeader && st.consumers != nil:
				// The same consumer value (the same header, or the mesh's
				// identity for both) shares one bounded set.
				st.meshConsumers = st.consumers
			default:
				max := config.DefaultMaxConsumers
				if l != nil {
					max = l.MaxConsumers
				}
				// Route names hold no '/': this set's key differs from every
				// route's own.
				if st.meshConsumers, err = limits.NewConsumers(store, r.Name+"/global", max); err != nil {
					return nil, err
				}
			}
		}
		if r.Consumer.From == config.ConsumerFromClaim {
			st.claimPath = jwtClaimPath(r.Consumer.Claim)
		}
		if f := r.Fallback; f != nil {
			if st.planner, err = fallback.NewPlanner(f.Policy, len(f.Chain)+1); err != nil {
				return nil, err
			}
			for m, chain := range f.ByModel {
				pl, err := fallback.NewPlanner(f.Policy, len(chain)+1)
				if err != nil {
					return nil, err
				}
				if st.byModel == nil {
					st.byModel = map[*config.Model]*fallback.Planner{}
				}
				st.byModel[m] = pl
			}
			if st.budget, err = fallback.NewRetryBudget(f.Budget); err != nil {
				return nil, err
			}
		}
	}
	return pol, nil
}

func (p *plugin) setTick(ms uint32) {
	if p.tick == ms {
		return
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(ms); err != nil {
		proxywasm.LogWarn("shepherd: setting the tick: " + err.Error())
		return
	}
	p.tick = ms
}

// OnTick starts the fallback attempts whose backoff has passed and lets the
// collector run when enough has been allocated.
func (p *plugin) OnTick() {
	// Routes with nowhere else to go read the provider memory only while
	// this VM knows of a pause (cooling.go).
	nowMs := nowNanos() / 1e6
	p.coolSeen = cooldown.Any(coolTable(), nowMs)
	if p.wake != 0 && nowMs-p.wakeAt >= cooldown.WakeRefresh {
		p.enlistWake(nowMs)
	}
	if len(p.waiting) > 0 {
		now := nowNanos()
		kept := p.waiting[:0]
		for _, s := range p.waiting {
			if s.done {
				continue
			}
			if s.retryAt <= now {
				s.startAttempt()
				continue
			}
			kept = append(kept, s)
		}
		clear(p.waiting[len(kept):])
		p.waiting = kept
	}
	if p.policy != nil {
		p.sidecarTick(nowNanos())
	}
	switch {
	case len(p.waiting) > 0:
	case p.policy != nil && p.policy.cfg.Sidecar != nil && p.sc.outcomes.Full(p.policy.cfg.Sidecar.ReportBatch):
		p.setTick(busyTickMillis)
	case p.policy != nil:
		p.setTick(p.baseTick())
	default:
		p.setTick(idleTickMillis)
	}
	proxywasm.CollectGarbageIfGrown(gcThreshold)
	p.reportMemory()
}

// memoryEveryTicks is how many ticks pass between two looks at the VM's
// memory when it has not grown.
const memoryEveryTicks = 16

// reportMemory raises the VM memory gauge to this VM's figure when it grew,
// and now and then anyway (another VM may have set it lower meanwhile: the
// gauge is shared by every VM of the proxy, and shows the largest).
func (p *plugin) reportMemory() {
	p.ticks++
	if p.ticks%memoryEveryTicks != 0 && p.ticks > 1 {
		return
	}
	own := proxywasm.MemoryBytes()
	if !p.memDefined {
		p.mem, p.memDefined = proxywasm.DefineGaugeMetric(telemetry.VMMemory), true
	}
	if own > 0 && int64(own) > p.mem.Value() {
		_ = p.mem.Set(own)
	}
}

// wait parks s until its retryAt; the tick starts its next attempt.
func (p *plugin) wait(s *stream) {
	p.waiting = append(p.waiting, s)
	p.setTick(busyTickMillis)
}

// random returns the next number of a splitmix64 sequence: for backend choice and
// jitter, where unpredictability to clients does not matter.
func (p *plugin) random() uint64 {
	p.rng += 0x9e3779b97f4a7c15
	z := p.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// NewHttpContext is called for every HTTP stream.
func (p *plugin) NewHttpContext(id uint32) types.HttpContext {
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		s.reset(p, id)
		return s
	}
	return &stream{plugin: p, id: id, policy: p.policy}
}

// reset readies a finished stream for a new one, keeping its scanners'
// buffers.
func (s *stream) reset(p *plugin, id uint32) {
	*s = stream{plugin: p, id: id, policy: p.policy, responseScan: responseScan{scan: s.scan}}
}

// ReleaseHttpContext takes a stream back for reuse once the host has deleted
// it (proxywasm.HttpContextReleaser), unless something still holds it.
func (p *plugin) ReleaseHttpContext(h types.HttpContext) {
	s, ok := h.(*stream)
	if !ok || s.escaped || len(p.free) >= maxFreeStreams {
		return
	}
	if s.scan != nil {
		s.scan.sse.Release()
	}
	p.free = append(p.free, s)
}

func nowNanos() int64 {
	t, err := proxywasm.GetCurrentTimeNanoseconds()
	if err != nil {
		return 0
	}
	return int64(t)
}
