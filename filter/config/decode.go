package config

import (
	"errors"
	"strconv"
	"strings"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

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

func key(path, k string) string { return path + "[" + strconv.Quote(k) + "]" }

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

// integer reads an optional integer member in [min, max]; absent gives def.
func integer(path string, obj *jsonlite.Value, name string, min, max, def int64) (int64, error) {
	v := obj.Get(name)
	if v == nil {
		return def, nil
	}
	p := join(path, name)
	if v.Kind != jsonlite.Number {
		return 0, fail(p, "must be a number, not "+v.Kind.String())
	}
	n, ok := v.Int()
	if !ok {
		return 0, fail(p, "must be a whole number, not "+v.Num)
	}
	if n < min || n > max {
		return 0, fail(p, "must be between "+strconv.FormatInt(min, 10)+" and "+strconv.FormatInt(max, 10)+", not "+v.Num)
	}
	return n, nil
}

// boolean reads an optional boolean member; absent gives def.
func boolean(path string, obj *jsonlite.Value, name string, def bool) (bool, error) {
	v := obj.Get(name)
	if v == nil {
		return def, nil
	}
	if v.Kind != jsonlite.Bool {
		return false, fail(join(path, name), "must be true or false, not "+v.Kind.String())
	}
	return v.Bool, nil
}

// stringMap reads an optional object of string values.
func stringMap(path string, obj *jsonlite.Value, name string) (map[string]string, error) {
	v := obj.Get(name)
	if v == nil {
		return nil, nil
	}
	p := join(path, name)
	if v.Kind != jsonlite.Object {
		return nil, fail(p, "must be an object, not "+v.Kind.String())
	}
	m := make(map[string]string, len(v.Members))
	for _, mem := range v.Members {
		if mem.Value.Kind != jsonlite.String {
			return nil, fail(key(p, mem.Name), "must be a string, not "+mem.Value.Kind.String())
		}
		if _, dup := m[mem.Name]; dup {
			return nil, fail(key(p, mem.Name), "appears twice")
		}
		m[mem.Name] = mem.Value.Str
	}
	return m, nil
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

// checkModel keeps model names usable in JSON and as metric label values (which
// are encoded into metric names as ";model=<name>"): at most 128 visible ASCII
// characters other than double quote, backslash, semicolon and equals sign.
func checkModel(path, s string) error {
	if s == "" {
		return fail(path, "must not be empty")
	}
	if len(s) > 128 {
		return fail(path, "longer than 128 characters")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ';' || c == '=' {
			return fail(path, strconv.Quote(s)+" may hold only visible ASCII characters other than '\"', '\\', ';' and '='")
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

// checkHeaderName accepts lowercase HTTP token characters (Envoy lowercases
// header names), not pseudo-headers.
func checkHeaderName(path, s string) error {
	if s == "" {
		return fail(path, "must not be empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fail(path, strconv.Quote(s)+" is not a lowercase header name")
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
