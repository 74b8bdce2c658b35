// Package config reads and validates the shepherd-sidecar configuration file
// (YAML): the providers and their credential files, canary rollout plans per
// route, monthly budgets, and the provider health thresholds.
//
// Parse and Load return a validated *Config with every default filled in; a
// *Config is never changed afterwards and may be shared between goroutines.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration time.Duration

// badDuration marks a value that was not a duration string, so that
// validation can report it under its field name.
const badDuration = Duration(math.MinInt64)

// UnmarshalJSON accepts a duration string such as "1m30s". Anything else is
// reported by validation, which knows the field's name.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		*d = badDuration
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		*d = badDuration
		return nil
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// Config is the whole sidecar configuration.
type Config struct {
	Providers   []Provider  `json:"providers,omitempty"`
	Canary      Canary      `json:"canary,omitempty"`
	Budgets     Budgets     `json:"budgets,omitempty"`
	Health      Health      `json:"health,omitempty"`
	Credentials Credentials `json:"credentials,omitempty"`
	Reports     Reports     `json:"reports,omitempty"`
}

// Reports bound what outcome reports may do, even with a valid filter token:
// a stolen token or a buggy filter can then move budgets only so far.
type Reports struct {
	// MaxOutcomeUSD is the most one outcome may add to a budget; a larger
	// cost is clipped to it. Default 10.
	MaxOutcomeUSD float64 `json:"max_outcome_usd,omitempty"`
	// MaxReportUSD is the most one ReportOutcomes call may add to a budget
	// in total; the cost of the outcomes past it is dropped. Default 100.
	MaxReportUSD float64 `json:"max_report_usd,omitempty"`
	// PerCallerPerSecond is how many ReportOutcomes calls one caller may make
	// per second (bursts of twice as many); more are refused with
	// RESOURCE_EXHAUSTED. Default 50.
	PerCallerPerSecond float64 `json:"per_caller_per_second,omitempty"`
}

// Provider is an upstream LLM API the filter may send traffic to.
type Provider struct {
	Name       string      `json:"name"`
	Credential *Credential `json:"credential,omitempty"`
}

// Credential names a mounted secret file whose content (trimmed of
// surrounding white space) becomes the value of Header, after Prefix.
type Credential struct {
	File string `json:"file"`
	// Header defaults to "authorization".
	Header string `json:"header,omitempty"`
	// Prefix defaults to "Bearer " when Header is "authorization", else "".
	Prefix *string `json:"prefix,omitempty"`
}

// Canary holds the rollout plans.
type Canary struct {
	Routes []Plan `json:"routes,omitempty"`
}

// Plan moves a route's traffic from Baseline to Canary in Steps (percent of
// traffic on the canary), one step per Interval while the canary's outcomes
// stay within the thresholds.
type Plan struct {
	Route    string   `json:"route"`
	Baseline string   `json:"baseline"`
	Canary   string   `json:"canary"`
	Steps    []uint32 `json:"steps"`
	Interval Duration `json:"interval,omitempty"`
	// MinRequests is the number of canary outcomes a step needs before it
	// may advance. Default 50.
	MinRequests uint64 `json:"min_requests,omitempty"`
	// MaxErrorRate is the highest fraction (0..1) of canary outcomes that may
	// fail (5xx, 429 or no response). Default 0.05.
	MaxErrorRate *float64 `json:"max_error_rate,omitempty"`
	// MaxP99Ratio is the highest canary p99 latency as a multiple of the
	// baseline's. Default 1.5; 0 turns the check off.
	MaxP99Ratio *float64 `json:"max_p99_ratio,omitempty"`
	// Paused starts the rollout paused at the first step.
	Paused bool `json:"paused,omitempty"`
	// Hold keeps the canary at the last step's weight for good instead of
	// promoting it to 100% once that step's analysis passes; the analysis
	// goes on, so a failing canary is still rolled back.
	Hold bool `json:"hold,omitempty"`
}

// Budgets are monthly (UTC calendar month) spending limits.
type Budgets struct {
	Routes    []RouteBudget    `json:"routes,omitempty"`
	Consumers []ConsumerBudget `json:"consumers,omitempty"`
}

// RouteBudget limits a route's monthly spend.
type RouteBudget struct {
	Route      string  `json:"route"`
	MonthlyUSD float64 `json:"monthly_usd"`
}

// ConsumerBudget limits a consumer's monthly spend across routes.
type ConsumerBudget struct {
	Consumer   string  `json:"consumer"`
	MonthlyUSD float64 `json:"monthly_usd"`
}

// Health sets when a provider is put into cooldown.
type Health struct {
	// Window is the period over which errors are counted. Default 10s.
	Window Duration `json:"window,omitempty"`
	// MinRequests in a window before the error rate counts. Default 20.
	MinRequests uint64 `json:"min_requests,omitempty"`
	// MaxErrorRate of 429/5xx/no-response outcomes in a window. Default 0.5.
	MaxErrorRate *float64 `json:"max_error_rate,omitempty"`
	// Cooldown is how long a provider is avoided. Default 30s.
	Cooldown Duration `json:"cooldown,omitempty"`
	// MaxCooldown caps a provider's Retry-After. Default 5m.
	MaxCooldown Duration `json:"max_cooldown,omitempty"`
	// MinRatelimitRemaining: an x-ratelimit-remaining below it starts a
	// cooldown. Default 1 (only 0 remaining); a negative value turns it off.
	MinRatelimitRemaining *int64 `json:"min_ratelimit_remaining,omitempty"`
}

// Credentials sets how often credential files are checked for changes.
type Credentials struct {
	// PollInterval defaults to 5s.
	PollInterval Duration `json:"poll_interval,omitempty"`
}

// Defaults.
const (
	DefaultInterval         = Duration(5 * time.Minute)
	DefaultMinRequests      = 50
	DefaultErrorRate        = 0.05
	DefaultP99Ratio         = 1.5
	DefaultHealthWindow     = Duration(10 * time.Second)
	DefaultHealthMin        = 20
	DefaultHealthRate       = 0.5
	DefaultCooldown         = Duration(30 * time.Second)
	DefaultMaxCooldown      = Duration(5 * time.Minute)
	DefaultPollInterval     = Duration(5 * time.Second)
	DefaultMaxOutcomeUSD    = 10
	DefaultMaxReportUSD     = 100
	DefaultReportsPerSecond = 50
)

// NeedsFilterToken names the first setting that makes the policy API worth
// protecting — a provider (its credential is served, its health moved by
// reports), a canary plan or a budget (moved by reports) — or returns "" for
// a config with none, whose policy API serves and accepts nothing of value.
func (c *Config) NeedsFilterToken() string {
	for i, p := range c.Providers {
		if p.Credential != nil {
			return fmt.Sprintf("providers[%d].credential", i)
		}
	}
	switch {
	case len(c.Budgets.Routes) > 0:
		return "budgets.routes"
	case len(c.Budgets.Consumers) > 0:
		return "budgets.consumers"
	case len(c.Canary.Routes) > 0:
		return "canary.routes"
	case len(c.Providers) > 0:
		return "providers"
	}
	return ""
}

// Empty returns the configuration used when no file is given: no providers,
// no plans, no budgets, default health thresholds.
func Empty() *Config {
	c, err := Parse(nil)
	if err != nil {
		panic(err) // the empty document is valid by construction
	}
	return c
}

// Load reads and validates the file at path. Errors name the file and the
// offending field.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sidecar config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("sidecar config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML (or JSON) strictly, fills defaults and validates.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, c); err != nil {
			return nil, fmt.Errorf("parse: %w", cleanYAMLError(err))
		}
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func cleanYAMLError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: ")
	msg = strings.TrimPrefix(msg, "while decoding JSON: ")
	msg = strings.TrimPrefix(msg, "json: ")
	return errors.New(msg)
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }
func str(v string) *string   { return &v }

func (c *Config) setDefaults() {
	for i := range c.Providers {
		cr := c.Providers[i].Credential
		if cr == nil {
			continue
		}
		cr.Header = strings.ToLower(strings.TrimSpace(cr.Header))
		if cr.Header == "" {
			cr.Header = "authorization"
		}
		if cr.Prefix == nil {
			if cr.Header == "authorization" {
				cr.Prefix = str("Bearer ")
			} else {
				cr.Prefix = str("")
			}
		}
	}
	for i := range c.Canary.Routes {
		p := &c.Canary.Routes[i]
		if p.Interval == 0 {
			p.Interval = DefaultInterval
		}
		if p.MinRequests == 0 {
			p.MinRequests = DefaultMinRequests
		}
		if p.MaxErrorRate == nil {
			p.MaxErrorRate = f64(DefaultErrorRate)
		}
		if p.MaxP99Ratio == nil {
			p.MaxP99Ratio = f64(DefaultP99Ratio)
		}
	}
	h := &c.Health
	if h.Window == 0 {
		h.Window = DefaultHealthWindow
	}
	if h.MinRequests == 0 {
		h.MinRequests = DefaultHealthMin
	}
	if h.MaxErrorRate == nil {
		h.MaxErrorRate = f64(DefaultHealthRate)
	}
	if h.Cooldown == 0 {
		h.Cooldown = DefaultCooldown
	}
	if h.MaxCooldown == 0 {
		h.MaxCooldown = DefaultMaxCooldown
	}
	if h.MinRatelimitRemaining == nil {
		h.MinRatelimitRemaining = i64(1)
	}
	if c.Credentials.PollInterval == 0 {
		c.Credentials.PollInterval = DefaultPollInterval
	}
	r := &c.Reports
	if r.MaxOutcomeUSD == 0 {
		r.MaxOutcomeUSD = DefaultMaxOutcomeUSD
	}
	if r.MaxReportUSD == 0 {
		r.MaxReportUSD = DefaultMaxReportUSD
	}
	if r.PerCallerPerSecond == 0 {
		r.PerCallerPerSecond = DefaultReportsPerSecond
	}
}

// Provider returns the named provider and whether it exists.
func (c *Config) Provider(name string) (Provider, bool) {
	for _, p := range c.Providers {
		if p.Name == name {
			return p, true
		}
	}
	return Provider{}, false
}

func (c *Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	duration := func(field string, d Duration) {
		switch {
		case d == badDuration:
			bad(field, "must be a duration string such as \"30s\"")
		case d < 0:
			bad(field, "must not be negative")
		}
	}
	providers := map[string]bool{}
	for i, p := range c.Providers {
		f := fmt.Sprintf("providers[%d]", i)
		switch {
		case p.Name == "":
			bad(f+".name", "must not be empty")
		case !validName(p.Name):
			bad(f+".name", "must use only letters, digits, '-', '_' and '.'")
		case providers[p.Name]:
			bad(f+".name", "duplicate provider %q", p.Name)
		}
		providers[p.Name] = true
		if p.Credential != nil {
			if p.Credential.File == "" {
				bad(f+".credential.file", "must not be empty")
			}
			if !validHeader(p.Credential.Header) {
				bad(f+".credential.header", "must be a valid HTTP header name")
			}
		}
	}
	routes := map[string]bool{}
	for i, p := range c.Canary.Routes {
		f := fmt.Sprintf("canary.routes[%d]", i)
		switch {
		case p.Route == "":
			bad(f+".route", "must not be empty")
		case routes[p.Route]:
			bad(f+".route", "duplicate route %q", p.Route)
		}
		routes[p.Route] = true
		for _, side := range []struct{ field, name string }{{"baseline", p.Baseline}, {"canary", p.Canary}} {
			switch {
			case side.name == "":
				bad(f+"."+side.field, "must not be empty")
			case !providers[side.name]:
				bad(f+"."+side.field, "unknown provider %q", side.name)
			}
		}
		if p.Baseline != "" && p.Baseline == p.Canary {
			bad(f+".canary", "must differ from baseline")
		}
		if len(p.Steps) == 0 {
			bad(f+".steps", "must not be empty")
		}
		for j, s := range p.Steps {
			sf := fmt.Sprintf("%s.steps[%d]", f, j)
			switch {
			case s < 1 || s > 100:
				bad(sf, "must be between 1 and 100")
			case j > 0 && s <= p.Steps[j-1]:
				bad(sf, "must be greater than the previous step")
			}
		}
		duration(f+".interval", p.Interval)
		if r := *p.MaxErrorRate; r < 0 || r > 1 {
			bad(f+".max_error_rate", "must be between 0 and 1")
		}
		if r := *p.MaxP99Ratio; r < 0 || (r > 0 && r < 1) {
			bad(f+".max_p99_ratio", "must be 0 (off) or at least 1")
		}
	}
	seen := map[string]bool{}
	for i, b := range c.Budgets.Routes {
		f := fmt.Sprintf("budgets.routes[%d]", i)
		switch {
		case b.Route == "":
			bad(f+".route", "must not be empty")
		case seen[b.Route]:
			bad(f+".route", "duplicate route %q", b.Route)
		}
		seen[b.Route] = true
		if b.MonthlyUSD <= 0 {
			bad(f+".monthly_usd", "must be greater than 0")
		}
	}
	seen = map[string]bool{}
	for i, b := range c.Budgets.Consumers {
		f := fmt.Sprintf("budgets.consumers[%d]", i)
		switch {
		case b.Consumer == "":
			bad(f+".consumer", "must not be empty")
		case seen[b.Consumer]:
			bad(f+".consumer", "duplicate consumer %q", b.Consumer)
		}
		seen[b.Consumer] = true
		if b.MonthlyUSD <= 0 {
			bad(f+".monthly_usd", "must be greater than 0")
		}
	}
	h := c.Health
	duration("health.window", h.Window)
	if r := *h.MaxErrorRate; r <= 0 || r > 1 {
		bad("health.max_error_rate", "must be greater than 0 and at most 1")
	}
	duration("health.cooldown", h.Cooldown)
	duration("health.max_cooldown", h.MaxCooldown)
	if h.MaxCooldown >= 0 && h.Cooldown >= 0 && h.MaxCooldown < h.Cooldown {
		bad("health.max_cooldown", "must not be less than health.cooldown")
	}
	duration("credentials.poll_interval", c.Credentials.PollInterval)
	r := c.Reports
	if !(r.MaxOutcomeUSD > 0 && r.MaxOutcomeUSD <= 1e6) {
		bad("reports.max_outcome_usd", "must be greater than 0 and at most 1000000")
	}
	if !(r.MaxReportUSD > 0 && r.MaxReportUSD <= 1e9) {
		bad("reports.max_report_usd", "must be greater than 0 and at most 1000000000")
	} else if r.MaxReportUSD < r.MaxOutcomeUSD {
		bad("reports.max_report_usd", "must not be less than reports.max_outcome_usd")
	}
	if !(r.PerCallerPerSecond > 0 && r.PerCallerPerSecond <= 1e6) {
		bad("reports.per_caller_per_second", "must be greater than 0 and at most 1000000")
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

func validHeader(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}
