package envoy

import "strings"

// PathOptions are the connection manager's path handling, applied to :path
// before routing and before the plugin sees it
// (source/common/http/conn_manager_utility.cc maybeNormalizePath).
type PathOptions struct {
	// Normalize is normalize_path: percent-encoded unreserved characters are
	// decoded, '\' becomes '/', and dot segments are removed (RFC 3986 5.2.4),
	// as Envoy's PathUtil::canonicalPath does.
	Normalize bool
	// MergeSlashes is merge_slashes: runs of '/' become one.
	MergeSlashes bool
	// RejectEscapedSlashes is path_with_escaped_slashes_action REJECT_REQUEST: a
	// path with %2F or %5C (any case) is answered 400 before the filters.
	RejectEscapedSlashes bool
}

func (o PathOptions) any() bool { return o.Normalize || o.MergeSlashes || o.RejectEscapedSlashes }

// apply returns the :path after the options, or ok false when it is refused.
// The query is left as it is.
func (o PathOptions) apply(p string) (string, bool) {
	path, query := p, ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		path, query = p[:i], p[i:]
	}
	if o.RejectEscapedSlashes {
		l := strings.ToLower(path)
		if strings.Contains(l, "%2f") || strings.Contains(l, "%5c") {
			return "", false
		}
	}
	if o.Normalize {
		path = removeDotSegments(strings.ReplaceAll(decodeUnreserved(path), "\\", "/"))
	}
	if o.MergeSlashes {
		for strings.Contains(path, "//") {
			path = strings.ReplaceAll(path, "//", "/")
		}
	}
	return path + query, true
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeUnreserved decodes %XX escapes of unreserved characters only.
func decodeUnreserved(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			hi, ok1 := unhex(p[i+1])
			lo, ok2 := unhex(p[i+2])
			if c := hi<<4 | lo; ok1 && ok2 && unreserved(c) {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// removeDotSegments is RFC 3986 5.2.4 on an absolute path.
func removeDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	r := strings.Join(out, "/")
	if !strings.HasPrefix(r, "/") {
		r = "/" + r
	}
	return r
}
