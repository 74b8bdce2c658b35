package envoy

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// headerMap edits an ordered list of pairs with Envoy's HeaderMapImpl semantics:
// keys are lower-cased, add appends, set replaces the first entry and drops the
// other entries of that key, remove drops them all.
type headerMap struct{ ps *[]pair }

func (m headerMap) get(k string) (string, bool) {
	k = strings.ToLower(k)
	for _, p := range *m.ps {
		if p.k == k {
			return p.v, true
		}
	}
	return "", false
}

func (m headerMap) add(k, v string) { *m.ps = append(*m.ps, pair{strings.ToLower(k), v}) }

func (m headerMap) set(k, v string) {
	k = strings.ToLower(k)
	out := (*m.ps)[:0]
	done := false
	for _, p := range *m.ps {
		if p.k == k {
			if done {
				continue
			}
			p.v, done = v, true
		}
		out = append(out, p)
	}
	if !done {
		out = append(out, pair{k, v})
	}
	*m.ps = out
}

func (m headerMap) del(k string) {
	k = strings.ToLower(k)
	out := (*m.ps)[:0]
	for _, p := range *m.ps {
		if p.k != k {
			out = append(out, p)
		}
	}
	*m.ps = out
}

func (m headerMap) setAll(ps []pair) {
	out := make([]pair, 0, len(ps))
	for _, p := range ps {
		out = append(out, pair{strings.ToLower(p.k), p.v})
	}
	*m.ps = out
}

func (m headerMap) byteSize() int {
	n := 0
	for _, p := range *m.ps {
		n += len(p.k) + len(p.v)
	}
	return n
}

func getPair(ps []pair, k string) string {
	v, _ := headerMap{&ps}.get(k)
	return v
}

// hopByHop are the connection-specific headers a proxy does not forward (RFC 9110 7.6.1;
// Envoy's HTTP/1 codec and ConnectionManagerUtility strip the same set).
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "trailer": true,
}

// sortedHeaderPairs flattens a Go header into lower-cased pairs, keys sorted (Go keeps
// no wire order), hop-by-hop headers dropped.
func sortedHeaderPairs(h http.Header) []pair {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ps []pair
	for _, k := range keys {
		lk := strings.ToLower(k)
		if hopByHop[lk] {
			continue
		}
		for _, v := range h[k] {
			ps = append(ps, pair{lk, v})
		}
	}
	return ps
}

// requestPairs builds the request header map Envoy's HTTP/1 codec and connection
// manager hand to filters: :authority, :path, :method, :scheme, then the headers
// (in wire order when the connection recorded it, else sorted);
// x-forwarded-proto is set and x-request-id generated when missing
// (source/common/http/conn_manager_utility.cc mutateRequestHeaders).
func requestPairs(r *http.Request, requestID string) []pair {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ps := []pair{{":authority", r.Host}, {":path", r.URL.RequestURI()}, {":method", r.Method}, {":scheme", scheme}}
	if wire := wireOrderPairs(r); wire != nil {
		ps = append(ps, wire...) // wire order (wireorder.go)
	} else {
		ps = append(ps, sortedHeaderPairs(r.Header)...)
	}
	if _, ok := r.Header["Content-Length"]; !ok && r.ContentLength > 0 {
		// HTTP/2 requests may carry their length without the header.
		ps = append(ps, pair{"content-length", strconv.FormatInt(r.ContentLength, 10)})
	}
	m := headerMap{&ps}
	m.set("x-forwarded-proto", scheme)
	if _, ok := m.get("x-request-id"); !ok {
		m.add("x-request-id", requestID)
	}
	return ps
}

// responsePairs builds the response header map: :status first, then the headers.
func responsePairs(resp *http.Response) []pair {
	ps := []pair{{":status", strconv.Itoa(resp.StatusCode)}}
	ps = append(ps, sortedHeaderPairs(resp.Header)...)
	if resp.ContentLength >= 0 && resp.Header.Get("Content-Length") == "" {
		ps = append(ps, pair{"content-length", strconv.FormatInt(resp.ContentLength, 10)})
	}
	return ps
}

func trailerPairs(h http.Header) []pair {
	if len(h) == 0 {
		return nil
	}
	return sortedHeaderPairs(h)
}
