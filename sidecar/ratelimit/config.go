package ratelimit

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// Config is a validated, immutable set of rate limit domains, in the YAML
// format of envoyproxy/ratelimit. A *Config is safe for concurrent use.
// The zero value is not valid; use LoadConfig or ParseConfig.
type Config struct {
	domains     map[string]*domain
	limits      []*Limit
	hasReplaces bool
}

// Limit is one configured rate limit: RequestsPerUnit hits per Unit,
// counted in fixed windows aligned to the unix epoch. A Limit belongs to its
// Config and must not be modified.
type Limit struct {
	// FullKey names the limit by its place in the config, as
	// envoyproxy/ratelimit does: "domain.key_value.key".
	FullKey         string
	Name            string
	Unit            rlsv3.RateLimitResponse_RateLimit_Unit
	RequestsPerUnit uint32
	Unlimited       bool
	ShadowMode      bool
	// QuotaMode marks a quota rather than a limit: a quota over its count
	// makes the request OVER_LIMIT only when every quota descriptor of the
	// request is over too (envoyproxy/ratelimit's quota_mode).
	QuotaMode      bool
	DetailedMetric bool
	Replaces       []string

	id          int   // index in Config.limits; -1 for request overrides
	period      int64 // window length in seconds
	proto       *rlsv3.RateLimitResponse_RateLimit
	limitHeader string // RequestsPerUnit in decimal
}

// Period returns the length of the limit's window in seconds.
func (l *Limit) Period() int64 { return l.period }

type domain struct {
	name     string
	children levelMap
}

// keyNode holds the descriptors configured for one key at one level: the
// value-specific ones, the wildcard ones (values with '*') and the key-only
// default.
type keyNode struct {
	def       *descNode
	values    map[string]*descNode
	wildcards []wildcard
}

// wildcard is a configured value with '*' in it, split at the stars.
type wildcard struct {
	parts []string
	node  *descNode
}

// match reports whether v matches the pattern: each '*' stands for any run
// of bytes, possibly empty.
func (w *wildcard) match(v string) bool {
	first, last := w.parts[0], w.parts[len(w.parts)-1]
	if len(v) < len(first)+len(last) || v[:len(first)] != first || v[len(v)-len(last):] != last {
		return false
	}
	rest := v[len(first) : len(v)-len(last)]
	for _, p := range w.parts[1 : len(w.parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

type descNode struct {
	limit    *Limit
	children levelMap
	// share is the wildcard value of a descriptor with share_threshold:
	// every request value it matches counts in one counter, keyed by the
	// pattern instead of the value (envoyproxy/ratelimit's share_threshold).
	share string
}

// emptyConfig has no domains: every request is answered OK.
var emptyConfig = &Config{domains: map[string]*domain{}}

// EmptyConfig returns the config with no domains, under which every
// descriptor is unlimited.
func EmptyConfig() *Config { return emptyConfig }

// Domains returns the configured domain names, sorted.
func (c *Config) Domains() []string {
	out := make([]string, 0, len(c.domains))
	for name := range c.domains {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Limits returns every configured limit, in config order.
func (c *Config) Limits() []*Limit { return append([]*Limit(nil), c.limits...) }

// Lookup returns the limit that applies to a descriptor given as its
// entries' keys and values, or nil when none applies. It follows
// envoyproxy/ratelimit: at each level the entry's key and value select a
// value-specific descriptor, else the first matching wildcard value (a '*'
// matches any run of bytes), else the key-only one; a limit applies only
// when it sits at the level of the last entry.
func (c *Config) Lookup(domainName string, keys, values []string) *Limit {
	d := c.domains[domainName]
	if d == nil || len(keys) != len(values) {
		return nil
	}
	entries := make([]*commonrl.RateLimitDescriptor_Entry, len(keys))
	for i := range keys {
		entries[i] = &commonrl.RateLimitDescriptor_Entry{Key: keys[i], Value: values[i]}
	}
	l, _ := d.lookup(entries)
	return l
}

// lookup finds the limit of a request's entries (see Config.Lookup). shared
// has bit i set when entry i matched a wildcard with share_threshold and
// the limit was found: that entry counts under the wildcard, not its value
// (bits from 64 on are not kept; requests carry at most MaxEntries).
func (d *domain) lookup(entries []*commonrl.RateLimitDescriptor_Entry) (l *Limit, shared uint64) {
	level := d.children
	for i, e := range entries {
		n := level.find(e.GetKey(), e.GetValue())
		if n == nil {
			return nil, 0
		}
		if n.share != "" && i < 64 {
			shared |= 1 << i
		}
		if i == len(entries)-1 {
			if n.limit == nil {
				return nil, 0
			}
			return n.limit, shared
		}
		if len(n.children) == 0 {
			return nil, 0
		}
		level = n.children
	}
	return nil, 0
}

// sharedValue returns the value entry i counts under: the wildcard of the
// share_threshold descriptor it matched when its bit is set in shared, else
// its own value.
func (d *domain) sharedValue(entries []*commonrl.RateLimitDescriptor_Entry, shared uint64, i int) string {
	if i >= 64 || shared&(1<<i) == 0 {
		return entries[i].GetValue()
	}
	level := d.children
	for j := 0; j < i; j++ {
		level = level.find(entries[j].GetKey(), entries[j].GetValue()).children
	}
	return level.find(entries[i].GetKey(), entries[i].GetValue()).share
}

type levelMap map[string]*keyNode

// find selects the descriptor for one entry: its exact value, else the
// first matching wildcard, else the key-only default. Only a wildcard match
// can be shared, so a node with share set is returned only through one.
func (m levelMap) find(key, value string) *descNode {
	kn := m[key]
	if kn == nil {
		return nil
	}
	if n := kn.values[value]; n != nil {
		return n
	}
	for i := range kn.wildcards {
		if kn.wildcards[i].match(value) {
			return kn.wildcards[i].node
		}
	}
	return kn.def
}

// units maps the accepted unit names (case-insensitive, as in
// envoyproxy/ratelimit) to the RLS unit and its window in seconds. Month is
// 30 days and year 365 days, as in envoyproxy/ratelimit.
var units = map[string]struct {
	unit   rlsv3.RateLimitResponse_RateLimit_Unit
	period int64
}{
	"second": {rlsv3.RateLimitResponse_RateLimit_SECOND, 1},
	"minute": {rlsv3.RateLimitResponse_RateLimit_MINUTE, 60},
	"hour":   {rlsv3.RateLimitResponse_RateLimit_HOUR, 3600},
	"day":    {rlsv3.RateLimitResponse_RateLimit_DAY, 86400},
	"week":   {rlsv3.RateLimitResponse_RateLimit_WEEK, 7 * 86400},
	"month":  {rlsv3.RateLimitResponse_RateLimit_MONTH, 30 * 86400},
	"year":   {rlsv3.RateLimitResponse_RateLimit_YEAR, 365 * 86400},
}

// unitPeriod returns the window length of an RLS unit, or 0 if it has none.
func unitPeriod(u rlsv3.RateLimitResponse_RateLimit_Unit) int64 {
	for _, e := range units {
		if e.unit == u {
			return e.period
		}
	}
	return 0
}

// LoadConfig reads a config file, or every file of a directory and of its
// sub-directories, as envoyproxy/ratelimit's runtime loader does: any name
// (YAML, and so JSON too), walked in name order. Names starting with '.'
// are skipped, as there with RUNTIME_IGNOREDOTFILES=true, so a mounted
// Kubernetes ConfigMap (whose "..data" and dated directories are hidden)
// loads each file once; symlinked files are followed, symlinked
// directories are not. A domain may appear in only one file. An empty path
// gives the empty config. Errors start with the file's path.
func LoadConfig(path string) (*Config, error) {
	if path == "" {
		return EmptyConfig(), nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("rate limit config: %w", err)
	}
	if !info.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("rate limit config: %w", err)
		}
		return ParseConfig(path, data)
	}
	var files []File
	err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == path {
			return nil
		}
		hidden := strings.HasPrefix(e.Name(), ".")
		if e.IsDir() {
			if hidden {
				return filepath.SkipDir
			}
			return nil
		}
		if hidden {
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 {
			target, err := os.Stat(p)
			if err != nil {
				return err
			}
			if target.IsDir() {
				return nil
			}
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, File{Name: p, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rate limit config: %w", err)
	}
	return ParseFiles(files...)
}

// File is one named config document for ParseFiles.
type File struct {
	Name string
	Data []byte
}

// ParseConfig parses one config document; name is used in errors.
func ParseConfig(name string, data []byte) (*Config, error) {
	return ParseFiles(File{Name: name, Data: data})
}

// ParseFiles parses several config documents, one domain each, into one
// config. A domain defined twice is an error.
func ParseFiles(files ...File) (*Config, error) {
	c := &Config{domains: map[string]*domain{}}
	seen := map[string]string{}
	for _, f := range files {
		d, err := c.parseFile(f)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[d.name]; dup {
			return nil, fmt.Errorf("%s: domain: duplicate domain %q (also in %s)", f.Name, d.name, prev)
		}
		seen[d.name] = f.Name
		c.domains[d.name] = d
	}
	return c, nil
}

// fieldError is a config error at a path inside one file.
type fieldError struct {
	path string
	msg  string
}

func (e *fieldError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func errAt(path, format string, args ...any) error {
	return &fieldError{path: path, msg: fmt.Sprintf(format, args...)}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func (c *Config) parseFile(f File) (*domain, error) {
	root, err := decodeYAML(f.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid yaml: %w", f.Name, err)
	}
	d, err := c.parseRoot(root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	return d, nil
}

var (
	rootFields      = []string{"domain", "descriptors"}
	descFields      = []string{"key", "value", "rate_limit", "descriptors", "shadow_mode", "detailed_metric", "value_to_metric", "metadata", "quota_mode", "share_threshold"}
	rateLimitFields = []string{"unit", "requests_per_unit", "unlimited", "name", "replaces"}
	replacesFields  = []string{"name"}
)

func asMap(path string, v any) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		if path == "" {
			return nil, errors.New("must be a mapping with domain and descriptors")
		}
		return nil, errAt(path, "must be a mapping")
	}
	return m, nil
}

func checkFields(path string, m map[string]any, allowed []string) error {
	var unknown []string
	for k := range m {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return errAt(join(path, unknown[0]), "unknown field")
	}
	return nil
}

// getString reads a string field: a scalar's text as written (so
// `value: yes` is "yes" and `value: 0x1F` is "0x1F", as envoyproxy/ratelimit
// reads them), or "" when unset or null.
func getString(path string, m map[string]any, field string) (string, error) {
	v, ok := m[field]
	if !ok || v == nil {
		return "", nil
	}
	if sc, ok := v.(scalar); ok {
		return sc.text, nil
	}
	return "", errAt(join(path, field), "must be a string")
}

// getBool reads a bool field as YAML 1.1 does (true, yes, on, y and their
// negations, in the case forms YAML allows); unset or null is false.
func getBool(path string, m map[string]any, field string) (bool, error) {
	v, ok := m[field]
	if !ok || v == nil {
		return false, nil
	}
	if sc, ok := v.(scalar); ok && sc.plain {
		if b, ok := yamlBool(sc.text); ok {
			return b, nil
		}
	}
	return false, errAt(join(path, field), "must be true or false")
}

func getList(path string, m map[string]any, field string) ([]any, error) {
	v, ok := m[field]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, errAt(join(path, field), "must be a list")
	}
	return l, nil
}

func (c *Config) parseRoot(root any) (*domain, error) {
	m, err := asMap("", root)
	if err != nil {
		return nil, err
	}
	if err := checkFields("", m, rootFields); err != nil {
		return nil, err
	}
	name, err := getString("", m, "domain")
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errAt("domain", "must not be empty")
	}
	d := &domain{name: name}
	d.children, err = c.parseDescriptors("", name, m)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// parseDescriptors parses the "descriptors" list of m at path; fullKey is
// the parent's metric key.
func (c *Config) parseDescriptors(path, fullKey string, m map[string]any) (levelMap, error) {
	list, err := getList(path, m, "descriptors")
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	level := levelMap{}
	for i, item := range list {
		p := fmt.Sprintf("%s[%d]", join(path, "descriptors"), i)
		dm, err := asMap(p, item)
		if err != nil {
			return nil, err
		}
		if err := checkFields(p, dm, descFields); err != nil {
			return nil, err
		}
		key, err := getString(p, dm, "key")
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, errAt(join(p, "key"), "must not be empty")
		}
		value, err := getString(p, dm, "value")
		if err != nil {
			return nil, err
		}
		kn := level[key]
		if kn == nil {
			kn = &keyNode{}
			level[key] = kn
		}
		myKey := fullKey + "." + key
		if value != "" {
			myKey += "_" + value
			dup := kn.values[value] != nil
			for _, w := range kn.wildcards {
				dup = dup || strings.Join(w.parts, "*") == value
			}
			if dup {
				return nil, errAt(p, "duplicate descriptor key %q value %q", key, value)
			}
		} else if kn.def != nil {
			return nil, errAt(p, "duplicate descriptor key %q", key)
		}
		n := &descNode{}
		share, err := getBool(p, dm, "share_threshold")
		if err != nil {
			return nil, err
		}
		if share {
			if !strings.Contains(value, "*") {
				return nil, errAt(join(p, "share_threshold"), "needs a wildcard value (one with '*')")
			}
			n.share = value
		}
		if n.limit, err = c.parseRateLimit(p, myKey, dm); err != nil {
			return nil, err
		}
		if n.children, err = c.parseDescriptors(p, myKey, dm); err != nil {
			return nil, err
		}
		if strings.Contains(value, "*") {
			kn.wildcards = append(kn.wildcards, wildcard{parts: strings.Split(value, "*"), node: n})
		} else if value != "" {
			if kn.values == nil {
				kn.values = map[string]*descNode{}
			}
			kn.values[value] = n
		} else {
			kn.def = n
		}
	}
	return level, nil
}

func (c *Config) parseRateLimit(path, fullKey string, dm map[string]any) (*Limit, error) {
	shadow, err := getBool(path, dm, "shadow_mode")
	if err != nil {
		return nil, err
	}
	detailed, err := getBool(path, dm, "detailed_metric")
	if err != nil {
		return nil, err
	}
	quota, err := getBool(path, dm, "quota_mode")
	if err != nil {
		return nil, err
	}
	if _, err := getBool(path, dm, "value_to_metric"); err != nil {
		return nil, err
	}
	raw, ok := dm["rate_limit"]
	if !ok || raw == nil {
		return nil, nil
	}
	p := join(path, "rate_limit")
	rm, err := asMap(p, raw)
	if err != nil {
		return nil, err
	}
	if err := checkFields(p, rm, rateLimitFields); err != nil {
		return nil, err
	}
	l := &Limit{FullKey: fullKey, ShadowMode: shadow, QuotaMode: quota, DetailedMetric: detailed, id: len(c.limits)}
	if l.Unlimited, err = getBool(p, rm, "unlimited"); err != nil {
		return nil, err
	}
	if l.Name, err = getString(p, rm, "name"); err != nil {
		return nil, err
	}
	unitName, err := getString(p, rm, "unit")
	if err != nil {
		return nil, err
	}
	if l.Unlimited {
		if unitName != "" {
			return nil, errAt(join(p, "unit"), "must not be set when unlimited is true")
		}
	} else {
		if unitName == "" {
			return nil, errAt(join(p, "unit"), "must be set (second, minute, hour, day, week, month or year)")
		}
		u, ok := units[strings.ToLower(unitName)]
		if !ok {
			return nil, errAt(join(p, "unit"), "unknown unit %q", unitName)
		}
		l.Unit, l.period = u.unit, u.period
	}
	if v, ok := rm["requests_per_unit"]; ok && v != nil {
		sc, isScalar := v.(scalar)
		n, isInt := yamlUint32(sc.text)
		if !isScalar || !sc.plain || !isInt {
			return nil, errAt(join(p, "requests_per_unit"), "must be an integer from 0 to %d", uint32(math.MaxUint32))
		}
		l.RequestsPerUnit = n
	} else if !l.Unlimited {
		return nil, errAt(join(p, "requests_per_unit"), "must be set")
	}
	reps, err := getList(p, rm, "replaces")
	if err != nil {
		return nil, err
	}
	for i, r := range reps {
		rp := fmt.Sprintf("%s[%d]", join(p, "replaces"), i)
		m, err := asMap(rp, r)
		if err != nil {
			return nil, err
		}
		if err := checkFields(rp, m, replacesFields); err != nil {
			return nil, err
		}
		name, err := getString(rp, m, "name")
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, errAt(join(rp, "name"), "must not be empty")
		}
		if name == l.Name {
			return nil, errAt(join(rp, "name"), "must not name its own limit %q", name)
		}
		l.Replaces = append(l.Replaces, name)
		c.hasReplaces = true
	}
	l.proto = &rlsv3.RateLimitResponse_RateLimit{Name: l.Name, RequestsPerUnit: l.RequestsPerUnit, Unit: l.Unit}
	l.limitHeader = strconv.FormatUint(uint64(l.RequestsPerUnit), 10)
	c.limits = append(c.limits, l)
	return l, nil
}
