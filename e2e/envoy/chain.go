package envoy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// A chain of wasm filters (Config.Filters) runs as one Host per filter: each
// filter's stream hands the request, once its request callbacks let it go, to
// the next filter in-process, and the next filter's response comes back to it
// as the upstream's would. Envoy's filter manager
// (source/common/http/filter_manager.cc) does the same in one stream: decoder
// filters in order, encoder filters in reverse order, the router last; a local
// reply from a later filter passes through the earlier filters' response
// callbacks, as in FilterManager::sendLocalReply.

type chainKey struct{}

// chainRequest is what the filters of one request share.
type chainRequest struct {
	worker int // every filter runs the request on the same worker's VMs

	mu sync.Mutex
	// reqH is the header map the previous filter let go, in its order: a later
	// filter sees it exactly as Envoy's filters share one map.
	reqH []pair
	// What the router (the last filter) decided, seen by earlier filters'
	// properties (xds.route_name, xds.cluster_name, response.code_details ...).
	routeName, cluster, upstream, codeDetails string
	route                                     *Route
	// respH is the response header map the later filter sent back, in order.
	respH []pair
}

func chainFrom(ctx context.Context) *chainRequest {
	c, _ := ctx.Value(chainKey{}).(*chainRequest)
	return c
}

// errChainReset is a later filter's stream reset: the earlier filters reset too.
var errChainReset = errors.New("stream reset by a later filter")

// chainTransport takes a request to the next filter in-process.
type chainTransport struct{ next *Host }

func (t chainTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &chainWriter{hdr: http.Header{}, pw: pw, ready: make(chan struct{})}
	resp := &http.Response{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: pr, Trailer: http.Header{}, Request: req}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					panic(p)
				}
				w.abort()
				pw.CloseWithError(errChainReset)
				return
			}
			w.WriteHeader(http.StatusOK)
			for k, vs := range w.hdr {
				if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
					resp.Trailer[k[len(http.TrailerPrefix):]] = vs
				}
			}
			pw.Close()
		}()
		t.next.ServeHTTP(w, req)
	}()
	select {
	case <-w.ready:
	case <-req.Context().Done():
		pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
	if w.aborted {
		return nil, errChainReset
	}
	resp.StatusCode, resp.Status = w.code, strconv.Itoa(w.code)
	resp.Header = w.sent
	resp.ContentLength = -1
	if cl, err := strconv.ParseInt(w.sent.Get("Content-Length"), 10, 64); err == nil {
		resp.ContentLength = cl
	}
	return resp, nil
}

// chainWriter is the response writer of a later filter's stream: headers are
// handed over at WriteHeader, the body through the pipe.
type chainWriter struct {
	hdr     http.Header
	sent    http.Header
	code    int
	pw      *io.PipeWriter
	ready   chan struct{}
	once    sync.Once
	aborted bool
}

func (w *chainWriter) Header() http.Header { return w.hdr }

func (w *chainWriter) WriteHeader(code int) {
	w.once.Do(func() {
		w.code, w.sent = code, w.hdr.Clone()
		close(w.ready)
	})
}

func (w *chainWriter) abort() {
	w.once.Do(func() {
		w.aborted = true
		close(w.ready)
	})
}

func (w *chainWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

func (w *chainWriter) Flush() {}
