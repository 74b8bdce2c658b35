package envoy

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// VirtualHost is one of an HTTP connection manager's route_config.virtual_hosts: the
// domains it serves and its routes, tried in order.
type VirtualHost struct {
	Name    string
	Domains []string // exact ("a.example"), suffix ("*.example", "*-canary"), prefix ("a.*") or "*"
	Routes  []Route
}

// Route is one route of a virtual host. Exactly one of Prefix, Path and Regex is
// the match (an empty Prefix matches every path); exactly one of Cluster and Direct
// is the action.
type Route struct {
	Name   string
	Prefix string // match.prefix: the :path starts with it
	Path   string // match.path: the path without its query equals it
	Regex  string // match.safe_regex.regex (RE2): matches the whole path without its query
	// Cluster is route.cluster.
	Cluster string
	// Timeout is route.timeout; nil means Config.RouteTimeout, 0 disables it.
	Timeout *time.Duration
	// Metadata is the route's metadata as a serialized envoy.config.core.v3.Metadata,
	// which the plugin reads as the route_metadata / xds.route_metadata property.
	Metadata []byte
	// Direct is route.direct_response: the proxy answers itself.
	Direct *DirectResponse

	re *regexp.Regexp
}

// DirectResponse is a route's direct_response.
type DirectResponse struct {
	Status int
	Body   []byte
}

// routeTable is a compiled route_config, looked up like Envoy's RouteMatcher
// (source/common/router/config_impl.cc findVirtualHost): an exact domain first, then
// the longest suffix wildcard, then the longest prefix wildcard, then "*". The host
// is compared lower-cased, port included; a wildcard stands for at least one
// character.
type routeTable struct {
	exact    map[string]*VirtualHost
	suffixes []wildcard // longest first
	prefixes []wildcard // longest first
	any      *VirtualHost
}

type wildcard struct {
	part string
	vh   *VirtualHost
}

func compileRoutes(vhs []VirtualHost, clusters map[string]string) (*routeTable, error) {
	t := &routeTable{exact: map[string]*VirtualHost{}}
	seen := map[string]bool{}
	for i := range vhs {
		vh := &vhs[i]
		where := fmt.Sprintf("config.virtual_hosts[%d]", i)
		if len(vh.Domains) == 0 {
			return nil, fmt.Errorf("%s.domains: must not be empty", where)
		}
		for j, d := range vh.Domains {
			d = strings.ToLower(d)
			if seen[d] {
				// Envoy refuses a domain served by two virtual hosts.
				return nil, fmt.Errorf("%s.domains[%d]: %q is already served by another virtual host", where, j, d)
			}
			seen[d] = true
			switch {
			case d == "*":
				t.any = vh
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildcard{d[:len(d)-1], vh})
			case strings.Contains(d, "*"):
				return nil, fmt.Errorf("%s.domains[%d]: a wildcard must be the first or last character: %q", where, j, d)
			default:
				t.exact[d] = vh
			}
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			rw := fmt.Sprintf("%s.routes[%d]", where, j)
			n := 0
			for _, m := range []string{r.Path, r.Regex} {
				if m != "" {
					n++
				}
			}
			if n > 1 || (n == 1 && r.Prefix != "") {
				return nil, fmt.Errorf("%s.match: set one of prefix, path and safe_regex", rw)
			}
			if r.Regex != "" {
				re, err := regexp.Compile("^(?:" + r.Regex + ")$")
				if err != nil {
					return nil, fmt.Errorf("%s.match.safe_regex.regex: %w", rw, err)
				}
				r.re = re
			}
			switch {
			case r.Direct != nil && r.Cluster != "":
				return nil, fmt.Errorf("%s: set one of route and direct_response", rw)
			case r.Direct != nil:
				if r.Direct.Status < 200 || r.Direct.Status > 599 {
					return nil, fmt.Errorf("%s.direct_response.status: %d is not in [200, 599]", rw, r.Direct.Status)
				}
			case r.Cluster == "":
				return nil, fmt.Errorf("%s.route.cluster: must not be empty", rw)
			default:
				if _, ok := clusters[r.Cluster]; !ok {
					return nil, fmt.Errorf("%s.route.cluster: unknown cluster %q", rw, r.Cluster)
				}
			}
			if r.Timeout != nil && *r.Timeout < 0 {
				return nil, fmt.Errorf("%s.route.timeout: must not be negative", rw)
			}
		}
	}
	longestFirst := func(ws []wildcard) {
		sort.SliceStable(ws, func(a, b int) bool { return len(ws[a].part) > len(ws[b].part) })
	}
	longestFirst(t.suffixes)
	longestFirst(t.prefixes)
	return t, nil
}

var errNoVirtualHost = errors.New("no virtual host")

// find picks the virtual host for an :authority, then the first route whose match
// holds for the :path (prefix against the whole path; path and regex against the
// path without its query, as Envoy's PathRouteEntryImpl and RegexRouteEntryImpl do).
func (t *routeTable) find(authority, path string) (*VirtualHost, *Route, error) {
	vh := t.virtualHost(strings.ToLower(authority))
	if vh == nil {
		return nil, nil, errNoVirtualHost
	}
	bare := path
	if i := strings.IndexAny(bare, "?#"); i >= 0 {
		bare = bare[:i]
	}
	for i := range vh.Routes {
		r := &vh.Routes[i]
		switch {
		case r.Path != "":
			if bare == r.Path {
				return vh, r, nil
			}
		case r.re != nil:
			if r.re.MatchString(bare) {
				return vh, r, nil
			}
		case strings.HasPrefix(path, r.Prefix):
			return vh, r, nil
		}
	}
	return vh, nil, nil
}

func (t *routeTable) virtualHost(host string) *VirtualHost {
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if len(host) > len(w.part) && strings.HasSuffix(host, w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefixes {
		if len(host) > len(w.part) && strings.HasPrefix(host, w.part) {
			return w.vh
		}
	}
	return t.any
}
