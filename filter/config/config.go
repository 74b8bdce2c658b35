// Package config validates the filter's pluginConfig into an immutable snapshot.
//
// The filter reads its configuration once per proxy_on_configure. Parse checks every
// field and answers the first problem it finds with the field's path, for example
// `routes[1].fallback.models[0]: unknown model "x"`. Unknown fields are rejected, so
// a typo is never silently ignored. Credentials given by environment variable are
// resolved here, once, through the Env function the caller passes; the resolved
// values live only in the snapshot and are never part of an error text.
//
// The same validator backs `shepherdctl validate filter`, so a config that passes
// there loads in the filter. docs/CONFIG.md documents the schema.
package config

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
	"github.com/shepherd-mesh/shepherd/filter/openai"
	"github.com/shepherd-mesh/shepherd/filter/pricing"
)

// MaxConfigSize is the largest pluginConfig Parse accepts.
const MaxConfigSize = 1 << 20

// MaxEntries bounds the models, providers and routes of a config, each:
// every one of them can become a metric label value, and the filter indexes
// its metrics by them in fixed-width fields.
const MaxEntries = 4096

// OtherModel is the metric label of models the config does not list, so client
// input cannot grow the number of metrics.
const OtherModel = "other"

// LocalProvider is the provider label of the filter's own answers (no
// provider may take the name); filter/telemetry names it too.
const LocalProvider = "shepherd"

// Config is a validated pluginConfig. It is never modified after Parse returns, so
// it can be shared by every stream of a VM.
type Config struct {
	Providers []*Provider
	Routes    []*Route
	// Models are the models the config lists, sorted by name. Each has an index
	// for per-model tables; unlisted models share the index len(Models) (OtherModel).
	Models []*Model
	// Aliases map a name clients may send to a listed model.
	Aliases map[string]*Model
	// Prices are the listed models' prices; a model without one costs nothing.
	Prices *pricing.Table
	// Sidecar is where shepherd-sidecar is reached; nil when the config has no
	// sidecar section (no global limits, policy sync or outcome reports).
	Sidecar *Sidecar

	models map[string]*Model
	index  routeIndex
}

// Model is a model the config lists.
type Model struct {
	Index int
	Name  string
	// Priced reports whether the model has a price.
	Priced bool
}

// Model returns the listed model with this name (after alias resolution), or nil.
func (c *Config) Model(name string) *Model {
	if m, ok := c.models[name]; ok {
		return m
	}
	return c.Aliases[name]
}

// ModelBytes is Model for a name held in bytes; it does not copy them.
func (c *Config) ModelBytes(name []byte) *Model {
	if m, ok := c.models[string(name)]; ok {
		return m
	}
	return c.Aliases[string(name)]
}

// ModelLabel is the metric label for a model name: its name when listed,
// OtherModel otherwise.
func (c *Config) ModelLabel(name string) string {
	if m := c.Model(name); m != nil {
		return m.Name
	}
	return OtherModel
}

// Provider is an upstream OpenAI-compatible API.
type Provider struct {
	// Index is the provider's position in Config.Providers.
	Index int
	// Name identifies the provider in routes, metrics and headers.
	Name string
	// Host is the :authority requests are rewritten to.
	Host string
	// PathPrefix replaces the route's path prefix; empty keeps the path.
	PathPrefix string
	// Cluster is the Envoy cluster for callouts to this provider. It defaults to
	// Istio's outbound cluster name for Host on port 443.
	Cluster string
	// Authorization is the complete authorization header value ("Bearer ..."),
	// empty when the provider takes no credential. It is a secret.
	Authorization string
	// CredentialSource says where the credential came from, for logs: "env NAME",
	// "inline" or "none". It never holds the credential itself.
	CredentialSource string
	// Models maps a listed model's name to the name this provider knows it by.
	Models map[string]string
	// Organization and Project are sent as OpenAI-Organization and
	// OpenAI-Project with the provider's credential; empty sends none (the
	// client's are never forwarded: they belong to the client's key).
	Organization, Project string
	// Operations are the OpenAI operations the provider serves, one bit per
	// openai.Operation; 0 (the config names none) serves every operation.
	Operations uint32
	// PausesWhole is set when every pause the provider asks for pauses all
	// its models ("pauses": "provider"), even a 429 that names one model's
	// exhausted limit: for providers whose x-ratelimit-* headers describe an
	// account-wide limit.
	PausesWhole bool
}

// Serves reports whether the provider serves operation op.
func (p *Provider) Serves(op openai.Operation) bool {
	return p.Operations == 0 || p.Operations&(1<<op) != 0
}

// ModelName is the name this provider knows model by.
func (p *Provider) ModelName(model string) string {
	if n, ok := p.Models[model]; ok {
		return n
	}
	return model
}

// Match returns the first route that matches the request, or nil. header looks up
// a request header by its lowercase name.
func (c *Config) Match(path string, header func(name string) (string, bool)) *Route {
	for _, r := range c.Routes {
		if r.matches(path, header) {
			return r
		}
	}
	return nil
}

// Env looks up an environment variable, as os.LookupEnv does.
type Env func(name string) (string, bool)

// Parse validates a pluginConfig document. env resolves credentials given by
// environment variable; nil means no variables are set.
func Parse(data []byte, env Env) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, errors.New("config: larger than " + strconv.Itoa(MaxConfigSize) + " bytes")
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("config: empty; expected a JSON object with providers and routes")
	}
	doc, err := jsonlite.Parse(data)
	if err != nil {
		return nil, wrap("config", err)
	}
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	d := decoder{env: env}
	return d.config(doc)
}

// Validate checks a pluginConfig without resolving credentials: a credential named
// by environment variable is taken as set, since the variable exists only in the
// proxy. It is what `shepherdctl validate filter` runs.
func Validate(data []byte) error {
	_, err := Parse(data, func(string) (string, bool) { return "placeholder", true })
	return err
}

type decoder struct {
	env       Env
	cfg       *Config
	providers map[string]*Provider
}

func (d *decoder) config(doc *jsonlite.Value) (*Config, error) {
	if doc.Kind != jsonlite.Object {
		return nil, fail("config", "must be a JSON object, not "+doc.Kind.String())
	}
	if err := object("", doc, "models", "aliases", "providers", "routes", "sidecar"); err != nil {
		return nil, err
	}
	d.cfg = &Config{models: map[string]*Model{}}
	if err := d.sidecar(doc); err != nil {
		return nil, err
	}
	if err := d.models(doc); err != nil {
		return nil, err
	}
	if err := d.aliases(doc); err != nil {
		return nil, err
	}

	providers, err := array("", doc, "providers")
	if err != nil {
		return nil, err
	}
	if len(providers) == 0 {
		return nil, fail("providers", "at least one provider is required")
	}
	if len(providers) > MaxEntries {
		return nil, fail("providers", tooMany(len(providers), "providers"))
	}
	d.providers = make(map[string]*Provider, len(providers))
	for i, pv := range providers {
		p, err := d.provider(index("providers", i), pv)
		if err != nil {
			return nil, err
		}
		if _, dup := d.providers[p.Name]; dup {
			return nil, fail(index("providers", i)+".name", "duplicate provider name "+strconv.Quote(p.Name))
		}
		p.Index = i
		d.providers[p.Name] = p
		d.cfg.Providers = append(d.cfg.Providers, p)
	}

	routes, err := array("", doc, "routes")
	if err != nil {
		return nil, err
	}
	if len(routes) == 0 {
		return nil, fail("routes", "at least one route is required")
	}
	if len(routes) > MaxEntries {
		return nil, fail("routes", tooMany(len(routes), "routes"))
	}
	seen := make(map[string]bool, len(routes))
	for i, rv := range routes {
		r, err := d.route(index("routes", i), rv)
		if err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, fail(index("routes", i)+".name", "duplicate route name "+strconv.Quote(r.Name))
		}
		seen[r.Name] = true
		r.Index = i
		d.cfg.Routes = append(d.cfg.Routes, r)
	}
	d.cfg.buildIndex()
	return d.cfg, nil
}

func tooMany(n int, what string) string {
	return "at most " + strconv.Itoa(MaxEntries) + " " + what + ", not " + strconv.Itoa(n)
}

// models reads {"models": {"gpt-4.1": {"input": 2.0, "cachedInput": 0.5, "output": 8.0}, "m2": {}}}.
func (d *decoder) models(doc *jsonlite.Value) error {
	v := doc.Get("models")
	prices := map[string]pricing.Price{}
	if v != nil {
		if v.Kind != jsonlite.Object {
			return fail("models", "must be an object of model names, not "+v.Kind.String())
		}
		if len(v.Members) > MaxEntries {
			return fail("models", tooMany(len(v.Members), "models"))
		}
		names := make([]string, 0, len(v.Members))
		for _, m := range v.Members {
			path := key("models", m.Name)
			if err := checkModel(path, m.Name); err != nil {
				return err
			}
			if _, dup := d.cfg.models[m.Name]; dup {
				return fail(path, "appears twice")
			}
			price, priced, err := d.price(path, m.Value)
			if err != nil {
				return err
			}
			d.cfg.models[m.Name] = &Model{Name: m.Name, Priced: priced}
			if priced {
				prices[m.Name] = price
			}
			names = append(names, m.Name)
		}
		sort.Strings(names)
		for i, n := range names {
			m := d.cfg.models[n]
			m.Index = i
			d.cfg.Models = append(d.cfg.Models, m)
		}
	}
	table, err := pricing.NewTable(prices)
	if err != nil {
		return wrap("models", err)
	}
	d.cfg.Prices = table
	return nil
}

func (d *decoder) price(path string, v *jsonlite.Value) (pricing.Price, bool, error) {
	if err := object(path, v, "input", "cachedInput", "output"); err != nil {
		return pricing.Price{}, false, err
	}
	if len(v.Members) == 0 {
		return pricing.Price{}, false, nil
	}
	var p pricing.Price
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"input", &p.Input}, {"cachedInput", &p.CachedInput}, {"output", &p.Output}} {
		fv := v.Get(f.name)
		if fv == nil {
			if f.name == "cachedInput" {
				continue // defaults to the input price below
			}
			return p, false, fail(join(path, f.name), "is required when a model has prices (USD per million tokens)")
		}
		var text string
		switch fv.Kind {
		case jsonlite.Number:
			text = fv.Num
		case jsonlite.String:
			text = fv.Str
		default:
			return p, false, fail(join(path, f.name), "must be a number of USD per million tokens, not "+fv.Kind.String())
		}
		n, err := pricing.ParseUSD(text)
		if err != nil {
			return p, false, wrap(join(path, f.name), err)
		}
		*f.dst = n
	}
	if v.Get("cachedInput") == nil {
		p.CachedInput = p.Input
	}
	return p, true, nil
}

func (d *decoder) aliases(doc *jsonlite.Value) error {
	m, err := stringMap("", doc, "aliases")
	if err != nil {
		return err
	}
	d.cfg.Aliases = make(map[string]*Model, len(m))
	for alias, target := range m {
		path := key("aliases", alias)
		if err := checkModel(path, alias); err != nil {
			return err
		}
		if _, clash := d.cfg.models[alias]; clash {
			return fail(path, "is also a listed model; an alias must be a new name")
		}
		t, ok := d.cfg.models[target]
		if !ok {
			return fail(path, "unknown model "+strconv.Quote(target)+" (list it under models)")
		}
		d.cfg.Aliases[alias] = t
	}
	return nil
}

// operations reads a provider's optional list of the operations it serves.
func operations(path string, v *jsonlite.Value) (uint32, error) {
	items, err := array(path, v, "operations")
	if err != nil {
		return 0, err
	}
	if v.Get("operations") != nil && len(items) == 0 {
		return 0, fail(join(path, "operations"), "must not be empty (leave it out to serve every operation)")
	}
	var set uint32
	for i, it := range items {
		ip := index(join(path, "operations"), i)
		if it.Kind != jsonlite.String {
			return 0, fail(ip, "must be a string, not "+it.Kind.String())
		}
		op, ok := openai.ParseOperation(it.Str)
		if !ok {
			return 0, fail(ip, "unknown operation "+strconv.Quote(it.Str)+" (known: "+operationNames()+")")
		}
		if set&(1<<op) != 0 {
			return 0, fail(ip, "duplicate operation "+strconv.Quote(it.Str))
		}
		set |= 1 << op
	}
	return set, nil
}

func operationNames() string {
	var b strings.Builder
	for op := openai.Operation(0); op < openai.NumOperations; op++ {
		if op > 0 {
			b.WriteString(", ")
		}
		b.WriteString(op.String())
	}
	return b.String()
}

// model resolves a model reference in the config: a listed model or an alias.
func (d *decoder) model(path, name string) (*Model, error) {
	if err := checkModel(path, name); err != nil {
		return nil, err
	}
	if m := d.cfg.Model(name); m != nil {
		return m, nil
	}
	return nil, fail(path, "unknown model "+strconv.Quote(name)+" (list it under models)")
}

func (d *decoder) provider(path string, v *jsonlite.Value) (*Provider, error) {
	if err := object(path, v, "name", "host", "pathPrefix", "cluster", "credential", "models", "operations",
		"organization", "project", "pauses"); err != nil {
		return nil, err
	}
	p := &Provider{}
	var err error
	if p.Name, err = requiredStr(path, v, "name"); err != nil {
		return nil, err
	}
	if err := checkName(join(path, "name"), p.Name); err != nil {
		return nil, err
	}
	if p.Name == LocalProvider {
		return nil, fail(join(path, "name"), strconv.Quote(LocalProvider)+" is reserved for the filter's own answers in metrics")
	}
	if p.Host, err = requiredStr(path, v, "host"); err != nil {
		return nil, err
	}
	if err := checkHost(join(path, "host"), p.Host); err != nil {
		return nil, err
	}
	if p.PathPrefix, err = str(path, v, "pathPrefix"); err != nil {
		return nil, err
	}
	if p.PathPrefix != "" {
		if err := checkPath(join(path, "pathPrefix"), p.PathPrefix); err != nil {
			return nil, err
		}
	}
	if p.Cluster, err = str(path, v, "cluster"); err != nil {
		return nil, err
	}
	if p.Cluster == "" {
		p.Cluster = "outbound|443||" + hostOnly(p.Host)
	} else if err := checkHeaderValue(join(path, "cluster"), p.Cluster); err != nil {
		return nil, err
	}
	models, err := stringMap(path, v, "models")
	if err != nil {
		return nil, err
	}
	for public, own := range models {
		mp := key(join(path, "models"), public)
		m, err := d.model(mp, public)
		if err != nil {
			return nil, err
		}
		if m.Name != public {
			return nil, fail(mp, "is an alias; map the model "+strconv.Quote(m.Name)+" instead")
		}
		if err := checkModel(mp, own); err != nil {
			return nil, err
		}
	}
	p.Models = models
	if p.Operations, err = operations(path, v); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"organization", &p.Organization}, {"project", &p.Project}} {
		if *f.dst, err = str(path, v, f.name); err != nil {
			return nil, err
		}
		if err := checkHeaderValue(join(path, f.name), *f.dst); err != nil {
			return nil, err
		}
	}
	pauses, err := str(path, v, "pauses")
	if err != nil {
		return nil, err
	}
	switch pauses {
	case "", "model":
	case "provider":
		p.PausesWhole = true
	default:
		return nil, fail(join(path, "pauses"), "unknown scope "+strconv.Quote(pauses)+" (known: model, provider)")
	}
	cred, source, err := d.credential(join(path, "credential"), v.Get("credential"))
	if err != nil {
		return nil, err
	}
	if cred != "" {
		p.Authorization = "Bearer " + cred
	}
	p.CredentialSource = source
	return p, nil
}

// credential resolves {"env": NAME} or {"inline": VALUE}. Error texts never hold
// the value.
func (d *decoder) credential(path string, v *jsonlite.Value) (value, source string, err error) {
	if v == nil {
		return "", "none", nil
	}
	if err := object(path, v, "env", "inline"); err != nil {
		return "", "", err
	}
	envName, err := str(path, v, "env")
	if err != nil {
		return "", "", err
	}
	inline, err := str(path, v, "inline")
	if err != nil {
		return "", "", err
	}
	switch {
	case envName != "" && inline != "":
		return "", "", fail(path, "set either env or inline, not both")
	case envName != "":
		val, ok := d.env(envName)
		if !ok || val == "" {
			return "", "", fail(join(path, "env"), "environment variable "+strconv.Quote(envName)+" is not set or empty")
		}
		if !validHeaderValue(val) {
			return "", "", fail(join(path, "env"), "environment variable "+strconv.Quote(envName)+" holds characters not allowed in a header value")
		}
		return val, "env " + envName, nil
	case inline != "":
		if !validHeaderValue(inline) {
			return "", "", fail(join(path, "inline"), "holds characters not allowed in a header value")
		}
		return inline, "inline", nil
	}
	return "", "", fail(path, "set env or inline")
}
