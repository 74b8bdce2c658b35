package policy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus series. Label values come from the
// config (routes, providers, consumers), so their number is bounded.
type metrics struct {
	version     prometheus.Gauge
	weight      *prometheus.GaugeVec
	step        *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	verdicts    *prometheus.CounterVec
	spent       *prometheus.GaugeVec
	limit       *prometheus.GaugeVec
	exhausted   *prometheus.GaugeVec
	cooling     *prometheus.GaugeVec
	cooldowns   *prometheus.CounterVec
	outcomes    prometheus.Counter
	credReloads *prometheus.CounterVec
	credErrors  *prometheus.CounterVec
	saveErrors  prometheus.Counter
	clipped     *prometheus.CounterVec
	// consumerSpent is the month-to-date spend of the biggest consumers and
	// "other" (consumerSpend bounds its label values).
	consumerSpent *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns = "shepherd_sidecar"
	m := &metrics{
		version: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "policy_version",
			Help: "Version of the policy currently served."}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "canary_weight_percent",
			Help: "Share of a route's traffic sent to its canary provider."}, []string{"route", "canary"}),
		step: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "canary_step",
			Help: "Index of the rollout's current step (steps_total once promoted)."}, []string{"route"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "canary_state",
			Help: "1 for the rollout's current state."}, []string{"route", "state"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "canary_verdicts_total",
			Help: "Rollout analyses that changed the weight, by verdict (advance, rollback)."}, []string{"route", "verdict"}),
		spent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "budget_spent_usd",
			Help: "Month-to-date spend."}, []string{"scope", "name"}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "budget_limit_usd",
			Help: "Monthly budget."}, []string{"scope", "name"}),
		exhausted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "budget_exhausted",
			Help: "1 when the month's budget is spent."}, []string{"scope", "name"}),
		cooling: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "provider_cooldown",
			Help: "1 while a provider is in cooldown."}, []string{"provider"}),
		cooldowns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "provider_cooldowns_total",
			Help: "Cooldowns started, by cause."}, []string{"provider", "cause"}),
		outcomes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "outcomes_total",
			Help: "Outcomes reported by filters."}),
		credReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "credential_reloads_total",
			Help: "Credential values loaded from their files."}, []string{"provider"}),
		credErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "credential_errors_total",
			Help: "Failed reads of credential files."}, []string{"provider"}),
		saveErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "state_save_errors_total",
			Help: "Failed attempts to persist state."}),
		clipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "report_outcomes_clipped_total",
			Help: "Reported outcomes whose cost was cut, by the cap that cut it (outcome: reports.max_outcome_usd, report: reports.max_report_usd)."},
			[]string{"cap"}),
		consumerSpent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_spent_usd",
			Help: "Month-to-date spend reported for the biggest consumers (workloads, peers, claims or header values); \"other\" sums the rest."},
			[]string{"consumer"}),
	}
	m.clipped.WithLabelValues("outcome")
	m.clipped.WithLabelValues("report")
	if reg != nil {
		reg.MustRegister(m.version, m.weight, m.step, m.state, m.verdicts, m.spent, m.limit, m.exhausted,
			m.cooling, m.cooldowns, m.outcomes, m.credReloads, m.credErrors, m.saveErrors, m.clipped, m.consumerSpent)
	}
	return m
}

// update sets the gauges from the engine; called with e.mu held.
func (m *metrics) update(e *Engine, now time.Time) {
	m.version.Set(float64(e.version))
	m.weight.Reset()
	m.step.Reset()
	m.state.Reset()
	for route, r := range e.rollouts {
		m.weight.WithLabelValues(route, r.Plan().Canary).Set(float64(r.Weight()) / 100)
		m.step.WithLabelValues(route).Set(float64(r.Step()))
		m.state.WithLabelValues(route, r.State().String()).Set(1)
	}
	m.spent.Reset()
	m.limit.Reset()
	m.exhausted.Reset()
	for _, b := range e.budgets {
		scope, name := "route", b.route
		if b.consumer != "" {
			scope, name = "consumer", b.consumer
		}
		m.spent.WithLabelValues(scope, name).Set(float64(b.spent) / 1e6)
		m.limit.WithLabelValues(scope, name).Set(float64(b.limit) / 1e6)
		ex := 0.0
		if b.exhausted() {
			ex = 1
		}
		m.exhausted.WithLabelValues(scope, name).Set(ex)
	}
	m.cooling.Reset()
	for p, h := range e.health {
		v := 0.0
		if h.cooling(now) {
			v = 1
		}
		m.cooling.WithLabelValues(p).Set(v)
	}
}
