// Package config validates the filter's pluginConfig into an immutable snapshot.
//
// The filter reads its configuration once per proxy_on_configure. Parse checks every
// field and answers the first problem it finds with the field's path, for example
// `routes[1].provider: unknown provider "relay2"`. Credentials given by environment
// variable are resolved here, once, through the Env function the caller passes; the
// resolved values live only in the snapshot and are never part of an error text.
//
// The same validator backs `shepherdctl validate filter`, so a config that passes
// there loads in the filter.
package config

import (
	"errors"
	"strconv"
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// MaxConfigSize is the largest pluginConfig Parse accepts.
const MaxConfigSize = 1 << 20

// Config is a validated pluginConfig. It is never modified after Parse returns, so
// it can be shared by every stream of a VM.
type Config struct {
	Providers []*Provider
	Routes    []*Route
}

// Provider is an upstream OpenAI-compatible API.
type Provider struct {
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
}

// Route matches requests by path prefix and sends them to a provider.
type Route struct {
	// Index is the route's position in Config.Routes, for per-route tables.
	Index int
	// Name identifies the route in metrics and logs.
	Name string
	// PathPrefix is matched against the request path; the first matching route wins.
	PathPrefix string
	// Provider receives the route's traffic.
	Provider *Provider
}

// Match returns the first route whose prefix the path starts with, or nil.
func (c *Config) Match(path string) *Route {
	for _, r := range c.Routes {
		if strings.HasPrefix(path, r.PathPrefix) {
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
	cfg, err := d.config(doc)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

type decoder struct {
	env Env
}

// fieldError is a validation error at a field path.
type fieldError struct {
	path string
	err  error
}

func (e *fieldError) Error() string { return e.path + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func wrap(path string, err error) error { return &fieldError{path: path, err: err} }
func fail(path, msg string) error       { return &fieldError{path: path, err: errors.New(msg)} }

// object checks v is an object whose members are all in allowed.
func object(path string, v *jsonlite.Value, allowed ...string) error {
	if v.Kind != jsonlite.Object {
		return fail(path, "must be an object, not "+v.Kind.String())
	}
	for _, m := range v.Members {
		known := false
		for _, a := range allowed {
			if m.Name == a {
				known = true
				break
			}
		}
		if !known {
			return fail(join(path, m.Name), "unknown field (known: "+strings.Join(allowed, ", ")+")")
		}
	}
	return nil
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// str reads an optional string member; absent gives "".
func str(path string, obj *jsonlite.Value, name string) (string, error) {
	v := obj.Get(name)
	if v == nil {
		return "", nil
	}
	if v.Kind != jsonlite.String {
		return "", fail(join(path, name), "must be a string, not "+v.Kind.String())
	}
	return v.Str, nil
}

func requiredStr(path string, obj *jsonlite.Value, name string) (string, error) {
	s, err := str(path, obj, name)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fail(join(path, name), "must not be empty")
	}
	return s, nil
}

func array(path string, obj *jsonlite.Value, name string) ([]*jsonlite.Value, error) {
	v := obj.Get(name)
	if v == nil {
		return nil, nil
	}
	if v.Kind != jsonlite.Array {
		return nil, fail(join(path, name), "must be an array, not "+v.Kind.String())
	}
	return v.Items, nil
}

func (d *decoder) config(doc *jsonlite.Value) (*Config, error) {
	if doc.Kind != jsonlite.Object {
		return nil, fail("config", "must be a JSON object, not "+doc.Kind.String())
	}
	if err := object("", doc, "providers", "routes"); err != nil {
		return nil, err
	}
	cfg := &Config{}
	providers, err := array("", doc, "providers")
	if err != nil {
		return nil, err
	}
	if len(providers) == 0 {
		return nil, fail("providers", "at least one provider is required")
	}
	byName := make(map[string]*Provider, len(providers))
	for i, pv := range providers {
		p, err := d.provider(index("providers", i), pv)
		if err != nil {
			return nil, err
		}
		if _, dup := byName[p.Name]; dup {
			return nil, fail(index("providers", i)+".name", "duplicate provider name "+strconv.Quote(p.Name))
		}
		byName[p.Name] = p
		cfg.Providers = append(cfg.Providers, p)
	}
	routes, err := array("", doc, "routes")
	if err != nil {
		return nil, err
	}
	if len(routes) == 0 {
		return nil, fail("routes", "at least one route is required")
	}
	seen := make(map[string]bool, len(routes))
	for i, rv := range routes {
		r, err := d.route(index("routes", i), rv, byName)
		if err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, fail(index("routes", i)+".name", "duplicate route name "+strconv.Quote(r.Name))
		}
		seen[r.Name] = true
		r.Index = i
		cfg.Routes = append(cfg.Routes, r)
	}
	return cfg, nil
}

func (d *decoder) provider(path string, v *jsonlite.Value) (*Provider, error) {
	if err := object(path, v, "name", "host", "pathPrefix", "cluster", "credential"); err != nil {
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

func (d *decoder) route(path string, v *jsonlite.Value, providers map[string]*Provider) (*Route, error) {
	if err := object(path, v, "name", "match", "provider"); err != nil {
		return nil, err
	}
	r := &Route{}
	var err error
	if r.Name, err = requiredStr(path, v, "name"); err != nil {
		return nil, err
	}
	if err := checkName(join(path, "name"), r.Name); err != nil {
		return nil, err
	}
	match := v.Get("match")
	if match == nil {
		return nil, fail(join(path, "match"), "is required")
	}
	mpath := join(path, "match")
	if err := object(mpath, match, "pathPrefix"); err != nil {
		return nil, err
	}
	if r.PathPrefix, err = requiredStr(mpath, match, "pathPrefix"); err != nil {
		return nil, err
	}
	if err := checkPath(join(mpath, "pathPrefix"), r.PathPrefix); err != nil {
		return nil, err
	}
	name, err := requiredStr(path, v, "provider")
	if err != nil {
		return nil, err
	}
	p, ok := providers[name]
	if !ok {
		return nil, fail(join(path, "provider"), "unknown provider "+strconv.Quote(name))
	}
	r.Provider = p
	return r, nil
}

// checkName keeps names usable inside metric names and tag regexes:
// lowercase letters, digits, '-' and '_', at most 64.
func checkName(path, s string) error {
	if len(s) > 64 {
		return fail(path, "longer than 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fail(path, strconv.Quote(s)+" may hold only lowercase letters, digits, '-' and '_'")
		}
	}
	return nil
}

func checkHost(path, s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return fail(path, strconv.Quote(s)+" is not a host name (letters, digits, '-', '.', optional :port)")
		}
	}
	return nil
}

func checkPath(path, s string) error {
	if s[0] != '/' {
		return fail(path, "must start with '/'")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return fail(path, "may not hold spaces, control characters, '?' or '#'")
		}
	}
	return nil
}

func checkHeaderValue(path, s string) error {
	if !validHeaderValue(s) {
		return fail(path, "holds characters not allowed in a header value")
	}
	return nil
}

// validHeaderValue reports whether s can be sent as an HTTP header value: visible
// ASCII, spaces and tabs, no CR, LF or NUL.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i]
	}
	return hostport
}

// Validate checks a pluginConfig without resolving credentials: a credential named
// by environment variable is taken as set, since the variable exists only in the
// proxy. It is what `shepherdctl validate filter` runs.
func Validate(data []byte) error {
	_, err := Parse(data, func(string) (string, bool) { return "placeholder", true })
	return err
}
