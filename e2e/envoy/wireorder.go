package envoy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// Go's HTTP server keeps a request's headers in a map, so their order on the
// wire is lost; Envoy's HTTP/1 codec hands filters the header map in wire order
// (source/common/http/http1/codec_impl.cc onHeaderField/onHeaderValue append to
// the map as they are parsed). WireOrderListener records the order: it watches
// the bytes of each plain HTTP/1.1 connection, notes the header names of every
// request head (skipping bodies by their framing), and ServeHTTP takes the
// names of its request from the connection (WireOrderConnContext). It only
// observes: when what it noted does not match the request Go parsed (a framing
// it cannot follow, an upgrade, a head over 1 MiB), the headers are sorted as
// before. TLS and HTTP/2 connections are not watched.

// WireOrderListener wraps a plain-text listener so that its HTTP/1.1 requests
// reach the plugin with their headers in wire order; the server must set
// ConnContext to WireOrderConnContext.
func WireOrderListener(l net.Listener) net.Listener { return wireListener{l} }

// WireOrderConnContext is the http.Server ConnContext that goes with
// WireOrderListener.
func WireOrderConnContext(ctx context.Context, c net.Conn) context.Context {
	if wc, ok := c.(*wireConn); ok {
		return context.WithValue(ctx, wireKey{}, wc)
	}
	return ctx
}

type wireKey struct{}

type wireListener struct{ net.Listener }

func (l wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: c}, nil
}

// maxWireHead bounds one request head the recorder holds (Go's default
// MaxHeaderBytes).
const maxWireHead = 1 << 20

const (
	wireHead = iota
	wireBody
	wireChunkSize
	wireChunkData
	wireChunkEnd
	wireTrailers
	wireLost // desynchronised: record nothing more
)

// wireConn notes the header names of each request head read from the conn.
type wireConn struct {
	net.Conn
	mu      sync.Mutex
	state   int
	line    []byte
	names   []string
	inHead  bool // the request line was seen
	te, cl  string
	left    int64
	pending [][]string // heads not yet taken by ServeHTTP, oldest first
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.feed(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// take returns the names of the oldest head not yet served, or nil.
func (c *wireConn) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	names := c.pending[0]
	c.pending = c.pending[1:]
	return names
}

func (c *wireConn) feed(b []byte) {
	for len(b) > 0 {
		switch c.state {
		case wireLost:
			return
		case wireBody, wireChunkData:
			k := int64(len(b))
			if k > c.left {
				k = c.left
			}
			c.left -= k
			b = b[k:]
			if c.left == 0 {
				if c.state == wireBody {
					c.state = wireHead
				} else {
					c.state = wireChunkEnd
				}
			}
		default:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				c.line = append(c.line, b...)
				if len(c.line) > maxWireHead {
					c.state = wireLost
				}
				return
			}
			c.line = append(c.line, b[:i]...)
			b = b[i+1:]
			line := strings.TrimSuffix(string(c.line), "\r")
			c.line = c.line[:0]
			c.onLine(line)
		}
	}
}

// onLine takes one line of a head, a chunk size or a trailer.
func (c *wireConn) onLine(line string) {
	switch c.state {
	case wireHead:
		if !c.inHead {
			if line != "" {
				c.inHead, c.names, c.te, c.cl = true, nil, "", ""
			}
			return
		}
		if line != "" {
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || line[0] == ' ' || line[0] == '\t' {
				c.state = wireLost // obsolete folding or garbage: leave it to Go
				return
			}
			name = strings.ToLower(name)
			c.names = append(c.names, name)
			switch name {
			case "transfer-encoding":
				c.te = strings.ToLower(strings.TrimSpace(value))
			case "content-length":
				c.cl = strings.TrimSpace(value)
			case "upgrade":
				c.state = wireLost // the connection stops being HTTP/1.1
			}
			return
		}
		c.inHead = false
		c.pending = append(c.pending, c.names)
		switch {
		case c.te != "":
			if c.te != "chunked" {
				c.state = wireLost
				return
			}
			c.state = wireChunkSize
		case c.cl != "":
			n, err := strconv.ParseInt(c.cl, 10, 64)
			if err != nil || n < 0 {
				c.state = wireLost
				return
			}
			if n > 0 {
				c.state, c.left = wireBody, n
			}
		}
	case wireChunkSize:
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			c.state = wireLost
			return
		}
		if n == 0 {
			c.state = wireTrailers
			return
		}
		c.state, c.left = wireChunkData, n
	case wireChunkEnd:
		if line != "" {
			c.state = wireLost
			return
		}
		c.state = wireChunkSize
	case wireTrailers:
		if line == "" {
			c.state = wireHead
		}
	}
}

// wireOrderPairs returns the request's headers in the order its connection
// recorded, or nil when nothing was recorded or it does not match what Go
// parsed.
func wireOrderPairs(r *http.Request) []pair {
	wc, _ := r.Context().Value(wireKey{}).(*wireConn)
	if wc == nil || r.ProtoMajor != 1 {
		return nil
	}
	names := wc.take()
	if names == nil {
		return nil
	}
	used := make(map[string]int, len(r.Header))
	ps := make([]pair, 0, len(names))
	for _, n := range names {
		key := textproto.CanonicalMIMEHeaderKey(n)
		vs, ok := r.Header[key]
		if !ok {
			continue // a header Go keeps elsewhere (Host, Transfer-Encoding)
		}
		i := used[key]
		if i >= len(vs) {
			return nil
		}
		used[key] = i + 1
		if !hopByHop[n] {
			ps = append(ps, pair{n, vs[i]})
		}
	}
	for k, vs := range r.Header {
		if used[k] != len(vs) {
			return nil
		}
	}
	return ps
}
