package envoy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// stream is one HTTP request through the plugin: Envoy's wasm HTTP filter context
// (source/extensions/common/wasm/context.cc decodeHeaders ... onDestroy) followed by
// the router. Fields below wake are guarded by the VM's mutex.
type stream struct {
	h  *Host
	v  *vm
	id uint32
	// rootID is the root context of the stream's plugin on its VM.
	rootID uint32
	w      http.ResponseWriter
	r      *http.Request
	wake   chan struct{}
	start  time.Time
	conn   uint64

	created  bool
	ended    bool        // finish ran; guarded by the VM mutex
	disabled atomic.Bool // fail-open after the VM failed: the plugin is no longer called
	failSent atomic.Bool // fail-closed 503 sent (Envoy's failure_local_reply_sent_)

	reqH, reqT, respH, respT              []pair
	reqHOpen, reqTOpen, respHOpen         bool
	respTOpen, logPhase                   bool
	reqBody, respBody                     []byte
	reqBase, respBase                     []byte // the arrays reqBody and respBody lie in (bodybuf.go)
	reqBodyOpen, respBodyOpen             bool
	continueReq, continueResp, resetAsked bool
	headersReleased                       bool // request headers may go upstream
	local                                 *localReply
	routeCleared                          bool

	routeName, cluster, upstream string
	route                        *Route // the matched route of Config.VirtualHosts
	respCode                     int
	codeDetails                  string
	reqBytes, respBytes          int64
	filterState                  map[string][]byte
	headersSent                  bool

	// The route timeout (Envoy's router: armed once the downstream request is
	// complete, source/common/router/router.cc onRequestComplete). Guarded by the
	// VM mutex, timedOut excepted.
	reqComplete   bool
	routeTimeout  time.Duration
	timeoutCancel context.CancelFunc
	timer         *time.Timer
	timedOut      atomic.Bool
}

// requestComplete notes the downstream request has ended (headers only, or its
// body and trailers passed to the upstream request).
func (s *stream) requestComplete() {
	s.lock()
	s.reqComplete = true
	s.armLocked()
	s.unlock()
}

// armRouteTimeout sets the route's timeout once the route is chosen; cancel ends
// the upstream request when it fires.
func (s *stream) armRouteTimeout(d time.Duration, cancel context.CancelFunc) {
	s.lock()
	s.routeTimeout, s.timeoutCancel = d, cancel
	s.armLocked()
	s.unlock()
}

func (s *stream) armLocked() {
	if s.timer != nil || !s.reqComplete || s.routeTimeout <= 0 || s.timeoutCancel == nil {
		return
	}
	cancel := s.timeoutCancel
	s.timer = time.AfterFunc(s.routeTimeout, func() {
		s.timedOut.Store(true)
		cancel()
	})
}

func (s *stream) stopRouteTimer() {
	s.lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.unlock()
}

// localReply is a pending proxy_send_local_response.
type localReply struct {
	code       int
	body       []byte
	headers    []pair
	details    string
	grpcStatus int32
}

var connSeq atomic.Uint64

// lock takes the VM for a stream callback, after the calls other workers
// posted to it (shared queues, shared.go post).
func (s *stream) lock() {
	s.v.mu.Lock()
	s.v.h.queues.runPosted(s.v)
}
func (s *stream) unlock() { s.v.mu.Unlock() }

func (s *stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// headersStop tells whether a headers callback result stops iteration. Envoy converts
// StopIteration into StopAllIterationAndWatermark for ABI 0.2.x
// (proxy-wasm-cpp-host src/context.cc convertVmCallResultToFilterHeadersStatus);
// ContinueAndEndStream (2) maps to Continue in Envoy's convertFilterHeadersStatus.
func headersStop(res uint64) bool { return res != actionContinue && res != 2 }

// dataStop tells whether a body callback result stops iteration. Every stop status
// buffers here; Envoy's StopIterationNoBuffer (3) would leave buffering to the plugin.
func dataStop(res uint64) bool { return res != actionContinue }

// call runs a stream callback. ok is false when the VM has failed (now or before).
func (s *stream) call(name string, args ...uint64) (uint64, bool) {
	if s.disabled.Load() || s.failSent.Load() {
		return 0, false
	}
	s.lock()
	if s.ended {
		s.unlock()
		return 0, false
	}
	res, err := s.v.callLocked(s.id, name, args...)
	s.unlock()
	if err != nil && !errors.Is(err, errMissingExport) {
		return 0, false
	}
	return res, true
}

// onFail applies fail_open after a failed callback, like proxy-wasm-cpp-host's
// CHECK_FAIL_HTTP: open lets the stream continue without the plugin; closed sends a
// 503 local reply (details wasm_fail_stream, Envoy's Context::failStream) once and the
// plugin sees nothing more of the stream. It reports whether the stream is finished.
func (s *stream) onFail() bool {
	if s.h.cfg.FailOpen {
		s.disabled.Store(true)
		return false
	}
	if !s.failSent.Load() {
		s.failSent.Store(true)
		if s.headersSent {
			panic(http.ErrAbortHandler)
		}
		s.writeLocal(&localReply{code: http.StatusServiceUnavailable, details: "wasm_fail_stream"})
	}
	return true
}

// wait blocks until cond holds, a local reply or reset is pending, or the VM failed.
// It returns false when the client went away. A wait longer than the stream idle
// timeout ends with Envoy's 408 local reply (HCM stream_idle_timeout, 5 min by default).
func (s *stream) wait(cond func() bool) bool {
	var timeout <-chan time.Time
	if d := s.h.idleTimeout; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.lock()
		done := cond() || s.local != nil || s.resetAsked || s.v.failed.Load()
		s.unlock()
		if done {
			return true
		}
		select {
		case <-s.wake:
		case <-timeout:
			s.lock()
			if s.local == nil {
				s.local = &localReply{code: http.StatusRequestTimeout, body: []byte("stream timeout"), details: "stream_idle_timeout"}
			}
			s.unlock()
			return true
		case <-s.r.Context().Done():
			return false
		}
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	x := hex.EncodeToString(b[:])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// ServeHTTP runs a request through the plugin and routes it like Envoy's filter chain
// followed by the router filter.
func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var cr *chainRequest
	var worker int
	if h.first != nil {
		// A later filter of a chain: the request's worker and header map are the
		// previous filter's.
		if cr = chainFrom(r.Context()); cr != nil {
			worker = cr.worker
		}
	} else {
		worker = int(h.rr.Add(1) - 1)
		if h.next != nil {
			cr = &chainRequest{worker: worker}
			r = r.WithContext(context.WithValue(r.Context(), chainKey{}, cr))
		}
	}
	v := h.pickVM(worker)
	s := &stream{h: h, v: v, w: w, r: r, wake: make(chan struct{}, 1), start: time.Now(),
		conn: connSeq.Add(1), filterState: map[string][]byte{}}
	if h.first != nil && cr != nil && cr.reqH != nil {
		cr.mu.Lock()
		s.reqH = cr.reqH
		cr.mu.Unlock()
	} else {
		s.reqH = requestPairs(r, newRequestID())
	}
	h.inflight.Add(1)
	defer h.inflight.Done()
	s.create()
	defer s.finish()
	s.serve()
}

// create registers the stream context; proxy_on_context_create runs unless the VM has
// failed (proxy-wasm-cpp-host ContextBase::onCreate).
func (s *stream) create() {
	s.lock()
	defer s.unlock()
	s.id = s.v.newContextID()
	s.rootID = s.v.rootOf[s.h]
	s.v.streams[s.id] = s
	if s.v.failed.Load() || s.v.closed {
		return
	}
	s.created = true
	_, _ = s.v.callLocked(s.id, "proxy_on_context_create", uint64(s.id), uint64(s.rootID))
}

// finish runs the access-log and destroy callbacks, once. Envoy logs the stream before
// its filters are destroyed, so the order is proxy_on_log, proxy_on_done,
// proxy_on_delete; none runs on a failed VM. It runs before the last bytes of the
// response are written: Envoy completes the stream (and logs it) on the worker before
// the event loop writes the final bytes to the socket, so a client that has the whole
// response also sees the plugin's access-log work (metrics) done.
func (s *stream) finish() {
	s.lock()
	defer s.unlock()
	if s.ended {
		return
	}
	s.ended = true
	if s.created && !s.v.failed.Load() && !s.v.closed {
		s.logPhase = true
		_, _ = s.v.callLocked(s.id, "proxy_on_log", uint64(s.id))
		s.logPhase = false
		if !s.v.failed.Load() {
			_, _ = s.v.callLocked(s.id, "proxy_on_done", uint64(s.id))
		}
		if !s.v.failed.Load() {
			_, _ = s.v.callLocked(s.id, "proxy_on_delete", uint64(s.id))
		}
	}
	delete(s.v.streams, s.id)
}

func (s *stream) takeLocal() (*localReply, bool) {
	s.lock()
	defer s.unlock()
	l, reset := s.local, s.resetAsked
	s.local = nil
	return l, reset
}

func (s *stream) serve() {
	r := s.r
	// Headers end the stream when there is no body (Content-Length 0 or none at all).
	eos := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var body io.Reader
	var pw *io.PipeWriter
	if !eos {
		pr, w := io.Pipe()
		body, pw = pr, w
		// Unblocks the body goroutine if the request never goes upstream.
		defer pr.CloseWithError(errStreamDone)
	}
	pumping := false
	if s.h.cfg.Paths.any() {
		s.lock()
		p, ok := s.h.cfg.Paths.apply(getPair(s.reqH, ":path"))
		if ok {
			headerMap{&s.reqH}.set(":path", p)
		}
		s.unlock()
		if !ok {
			// The connection manager refuses the path before the filters see the
			// request (conn_manager_impl.cc decodeHeaders, maybeNormalizePath).
			s.writeLocal(&localReply{code: http.StatusBadRequest, details: "path_normalization_failed"})
			return
		}
	}
	if eos {
		s.requestComplete()
	}
	defer s.stopRouteTimer()

	// Request headers.
	s.lock()
	s.reqHOpen = true
	n := len(s.reqH)
	s.unlock()
	res, ok := s.call("proxy_on_request_headers", uint64(s.id), uint64(n), b2u(eos))
	if !ok {
		if s.onFail() {
			return
		}
	} else if headersStop(res) {
		if s.h.cfg.AllowOnHeadersStopIteration && res == actionPause && !eos {
			// Envoy 1.35+ with allow_on_headers_stop_iteration: StopIteration holds the
			// headers while body callbacks run; the first body callback that continues
			// (or proxy_continue_stream) releases headers and body together.
			pumping = true
			go s.pumpRequestBody(pw, cancel)
		}
		if !s.wait(func() bool { return s.continueReq || s.headersReleased }) {
			return
		}
		if s.v.failed.Load() && !s.disabled.Load() && s.onFail() {
			return
		}
	}
	if !pumping {
		s.lock()
		s.continueReq = false
		s.unlock()
	}
	s.lock()
	s.reqHOpen, s.headersReleased = false, true
	s.unlock()
	if l, reset := s.takeLocal(); reset {
		panic(http.ErrAbortHandler)
	} else if l != nil {
		s.respondLocal(l)
		return
	}

	// Route by the (possibly rewritten) :authority: the route cache was cleared by any
	// request header change, and Envoy's router picks the route after the filter continues.
	s.lock()
	authority, path, method := getPair(s.reqH, ":authority"), getPair(s.reqH, ":path"), getPair(s.reqH, ":method")
	s.unlock()
	timeout := s.h.routeTimeout
	var cluster string
	var chain *chainRequest
	if s.h.next != nil {
		chain = chainFrom(s.r.Context())
	}
	chained := chain != nil
	if chained {
		timeout = 0 // the router, after the last filter, times the upstream
	} else if s.h.routes != nil {
		_, rt, _ := s.h.routes.find(authority, path)
		if rt == nil {
			// Envoy: no route matched → 404 with details route_not_found.
			s.respondLocal(&localReply{code: http.StatusNotFound, details: "route_not_found"})
			return
		}
		s.lock()
		s.route, s.routeName = rt, rt.Name
		s.unlock()
		if rt.Direct != nil {
			// The router answers a direct_response route with a local reply
			// (source/common/router/router.cc decodeHeaders), which passes through
			// the plugin's response callbacks like any local reply.
			s.respondLocal(&localReply{code: rt.Direct.Status, body: rt.Direct.Body, details: "direct_response"})
			return
		}
		cluster = rt.Cluster
		if rt.Timeout != nil {
			timeout = *rt.Timeout
		}
	} else {
		c, routeName, found := s.h.route(authority)
		s.routeName = routeName
		if !found {
			// Envoy: no route matched → 404 with details route_not_found.
			s.respondLocal(&localReply{code: http.StatusNotFound, details: "route_not_found"})
			return
		}
		cluster = c
	}
	var addr, scheme string
	var transport http.RoundTripper
	if chained {
		// The next filter takes the request in-process (chain.go).
		addr, scheme, transport = "chain", "http://", chainTransport{s.h.next}
	} else {
		s.cluster = cluster
		var ok bool
		addr, ok = s.h.cfg.Clusters[cluster]
		if !ok {
			// Envoy: the route's cluster is unknown → 503 with details cluster_not_found.
			s.respondLocal(&localReply{code: http.StatusServiceUnavailable, details: "cluster_not_found"})
			return
		}
		s.upstream = addr
		scheme, transport = s.h.upstream(cluster)
	}

	if !eos && !pumping {
		go s.pumpRequestBody(pw, cancel)
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+addr+path, body)
	if err != nil {
		s.respondLocal(&localReply{code: http.StatusBadRequest, details: "invalid_path"})
		return
	}
	req.Host = authority
	if chained {
		req.TLS, req.RemoteAddr = s.r.TLS, s.r.RemoteAddr
		s.lock()
		chain.mu.Lock()
		chain.reqH = append([]pair(nil), s.reqH...)
		chain.mu.Unlock()
		s.unlock()
	}
	s.lock()
	for _, p := range s.reqH {
		if strings.HasPrefix(p.k, ":") || hopByHop[p.k] || p.k == "host" {
			continue
		}
		if p.k == "content-length" {
			if cl, err := strconv.ParseInt(p.v, 10, 64); err == nil {
				req.ContentLength = cl
			}
			continue
		}
		req.Header.Add(p.k, p.v)
	}
	s.unlock()
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil // a proxy adds no user agent of its own
	}
	if body != nil && req.ContentLength == 0 {
		req.ContentLength = -1
	}
	s.armRouteTimeout(timeout, cancel)
	sent := time.Now()
	resp, err := transport.RoundTrip(req)
	if l, reset := s.takeLocal(); reset {
		if resp != nil {
			resp.Body.Close()
		}
		panic(http.ErrAbortHandler)
	} else if l != nil {
		if resp != nil {
			resp.Body.Close()
		}
		s.respondLocal(l)
		return
	}
	if s.failSent.Load() {
		if resp != nil {
			resp.Body.Close()
		}
		return
	}
	if err != nil {
		if errors.Is(err, errChainReset) {
			panic(http.ErrAbortHandler)
		}
		if s.timedOut.Load() {
			// The route's timeout ended the request before the upstream answered:
			// Envoy's router answers 504 (router.cc onResponseTimeout →
			// onUpstreamAbort), through the plugin's response callbacks.
			s.respondLocal(&localReply{code: http.StatusGatewayTimeout, body: []byte("upstream request timeout"),
				details: "upstream_response_timeout"})
			return
		}
		if r.Context().Err() != nil {
			return
		}
		// Envoy's router answers a failed upstream connection with a 503 local reply
		// (source/common/router/router.cc onUpstreamReset).
		s.respondLocal(&localReply{code: http.StatusServiceUnavailable,
			body:    []byte("upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
			details: "upstream_reset_before_response_started{connection_failure}"})
		return
	}
	defer resp.Body.Close()
	s.lock()
	if chained {
		// The later filters' response, with what the router decided.
		chain.mu.Lock()
		s.respH = append([]pair(nil), chain.respH...)
		s.routeName, s.route, s.cluster, s.upstream = chain.routeName, chain.route, chain.cluster, chain.upstream
		s.codeDetails = chain.codeDetails
		chain.mu.Unlock()
	} else {
		s.respH = responsePairs(resp)
		// The router adds the upstream's time to headers in milliseconds before the
		// encoder filters run (router.cc onUpstreamHeaders, setEnvoyUpstreamServiceTime).
		s.respH = append(s.respH, pair{"x-envoy-upstream-service-time", strconv.FormatInt(time.Since(sent).Milliseconds(), 10)})
		s.codeDetails = "via_upstream"
	}
	s.respCode = resp.StatusCode
	s.unlock()
	respEOS := resp.ContentLength == 0 || method == http.MethodHead
	var respBody io.Reader = resp.Body
	if resp.ContentLength > 0 {
		respBody = &lengthReader{r: resp.Body, left: resp.ContentLength}
	}
	s.processResponse(respBody, respEOS, func() http.Header { return resp.Trailer }, true)
}

// pumpRequestBody feeds the request body through proxy_on_request_body into the
// upstream request. A Pause buffers the data and the next call sees everything buffered
// so far (Envoy's StopIterationAndBuffer); a Pause at end_of_stream holds the body until
// proxy_continue_stream(request).
func (s *stream) pumpRequestBody(pw *io.PipeWriter, cancel context.CancelFunc) {
	r := s.r
	buf := make([]byte, 32<<10)
	var pending, base []byte // base: the array pending lies in (appendBody)
	abort := func(err error) {
		pw.CloseWithError(err)
		cancel()
	}
	for {
		n, err := r.Body.Read(buf)
		if err != nil && err != io.EOF {
			abort(err)
			return
		}
		eof := err == io.EOF
		if n == 0 && !eof {
			continue
		}
		s.lock()
		s.reqBytes += int64(n)
		s.unlock()
		hasTrailers := eof && len(r.Trailer) > 0
		bodyEOS := eof && !hasTrailers
		buffering := pending != nil
		var data []byte
		base, data = appendBody(base, pending, buf[:n])
		if buffering && len(data) > s.h.bufferLimit {
			// Envoy: a buffered request body over the buffer limit ends the stream with 413
			// (FilterManager, request_payload_too_large).
			s.lock()
			if s.local == nil {
				s.local = &localReply{code: http.StatusRequestEntityTooLarge, body: []byte("Payload Too Large"), details: "request_payload_too_large"}
			}
			s.unlock()
			abort(errStreamDone)
			return
		}
		pending = nil
		if !s.disabled.Load() && !s.failSent.Load() {
			s.lock()
			s.reqBody, s.reqBase, s.reqBodyOpen = data, base, true
			s.unlock()
			res, ok := s.call("proxy_on_request_body", uint64(s.id), uint64(len(data)), b2u(bodyEOS))
			s.lock()
			data, base = s.reqBody, s.reqBase
			l, reset := s.local, s.resetAsked
			s.unlock()
			if !ok {
				s.lock()
				ended := s.ended
				s.unlock()
				if ended || s.onFailBody() {
					abort(errStreamDone)
					return
				}
			} else if l != nil || reset {
				abort(errStreamDone)
				return
			} else if dataStop(res) {
				if !bodyEOS {
					s.lock()
					cont := s.continueReq
					s.continueReq = false
					if !cont {
						pending = data
					} else {
						s.reqBodyOpen = false
					}
					s.unlock()
					if !cont {
						if eof {
							goto trailers
						}
						continue
					}
				} else {
					if !s.wait(func() bool { return s.continueReq }) {
						abort(errStreamDone)
						return
					}
					s.lock()
					data, base = s.reqBody, s.reqBase
					l, reset = s.local, s.resetAsked
					s.continueReq = false
					s.unlock()
					if l != nil || reset || (s.v.failed.Load() && !s.disabled.Load() && s.onFailBody()) {
						abort(errStreamDone)
						return
					}
				}
			}
			s.lock()
			s.reqBodyOpen = false
			s.unlock()
		}
		s.releaseHeaders()
		if len(data) > 0 {
			if _, err := pw.Write(data); err != nil {
				cancel()
				return
			}
		}
	trailers:
		if eof {
			s.releaseHeaders()
			if len(pending) > 0 {
				_, _ = pw.Write(pending)
			}
			if hasTrailers && !s.disabled.Load() && !s.failSent.Load() {
				s.lock()
				s.reqT, s.reqTOpen = trailerPairs(r.Trailer), true
				nt := len(s.reqT)
				s.unlock()
				_, ok := s.call("proxy_on_request_trailers", uint64(s.id), uint64(nt))
				s.lock()
				s.reqTOpen = false
				s.unlock()
				if !ok && s.onFailBody() {
					abort(errStreamDone)
					return
				}
			}
			pw.Close()
			s.requestComplete()
			return
		}
	}
}

var errStreamDone = errors.New("stream ended by the plugin")

// releaseHeaders lets request headers held by StopIteration go upstream.
func (s *stream) releaseHeaders() {
	s.lock()
	s.headersReleased = true
	s.unlock()
	s.signal()
}

// onFailBody is onFail for the request body goroutine: a fail-closed reply is left to
// the main goroutine, which sees failSent after the upstream call is cancelled.
func (s *stream) onFailBody() bool {
	if s.h.cfg.FailOpen {
		s.disabled.Store(true)
		return false
	}
	s.lock()
	s.local = &localReply{code: http.StatusServiceUnavailable, details: "wasm_fail_stream"}
	s.unlock()
	return true
}

// respondLocal sends a local reply generated before the response started (by the plugin
// in the request path, or by the router). As in Envoy's FilterManager::sendLocalReply
// (source/common/http/filter_manager.cc), with no response headers yet the reply goes
// through the encoder filters, so the plugin sees it in its response callbacks (unless
// the stream already failed).
func (s *stream) respondLocal(l *localReply) {
	if l.details == "wasm_fail_stream" {
		if !s.failSent.Load() {
			s.failSent.Store(true)
			s.writeLocal(l)
		}
		return
	}
	s.lock()
	s.respH = localReplyPairs(l, s.isGrpc())
	s.respCode = l.code
	s.codeDetails = l.details
	s.unlock()
	s.processResponse(&lengthReader{r: bytes.NewReader(l.body), left: int64(len(l.body))}, len(l.body) == 0, func() http.Header { return nil }, false)
}

// localReplyPairs builds a local reply's headers as Envoy's Http::Utility::prepareLocalReply
// does (source/common/http/utility.cc): :status, then the plugin's headers; with a body,
// content-length and (when none was given) content-type text/plain; without a body,
// no content-length or content-type at all. A gRPC request gets a trailers-only answer:
// :status 200, content-type application/grpc, grpc-status (the plugin's, else mapped from
// the HTTP code) and the body as grpc-message; l.body is then cleared.
func localReplyPairs(l *localReply, grpc bool) []pair {
	ps := []pair{{":status", strconv.Itoa(l.code)}}
	m := headerMap{&ps}
	for _, p := range l.headers {
		m.add(p.k, p.v)
	}
	if grpc {
		m.set(":status", "200")
		m.set("content-type", "application/grpc")
		if _, ok := m.get("grpc-status"); !ok {
			code := int(l.grpcStatus)
			if code < 0 || code > 16 {
				code = httpToGrpcStatus(l.code)
			}
			m.set("grpc-status", strconv.Itoa(code))
		}
		if len(l.body) > 0 {
			m.set("grpc-message", url.PathEscape(string(l.body)))
		}
		m.del("content-length")
		l.body = nil
		return ps
	}
	if len(l.body) > 0 {
		m.set("content-length", strconv.Itoa(len(l.body)))
		if _, ok := m.get("content-type"); !ok {
			m.set("content-type", "text/plain")
		}
	} else {
		m.del("content-length")
		m.del("content-type")
	}
	return ps
}

// httpToGrpcStatus maps an HTTP status to a gRPC code like Envoy's
// Grpc::Utility::httpToGrpcStatus (source/common/grpc/common.cc).
func httpToGrpcStatus(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

func (s *stream) isGrpc() bool {
	return strings.HasPrefix(s.r.Header.Get("Content-Type"), "application/grpc")
}

// writeLocal writes a local reply straight to the client, bypassing the plugin.
func (s *stream) writeLocal(l *localReply) {
	s.lock()
	s.respH = localReplyPairs(l, s.isGrpc())
	s.respCode = l.code
	s.codeDetails = l.details
	ps := append([]pair(nil), s.respH...)
	s.unlock()
	s.writeHeaders(ps, len(l.body) == 0)
	if len(l.body) > 0 {
		s.respBytes += int64(len(l.body))
		s.finish()
		_, _ = s.w.Write(l.body)
	}
}

var serverEnvoy = []string{"envoy"}

// writeHeaders sends the response headers; final says they end the response.
func (s *stream) writeHeaders(ps []pair, final bool) {
	hdr := s.w.Header()
	code := http.StatusOK
	hasCT := false
	for _, p := range ps {
		switch {
		case p.k == ":status":
			if c, err := strconv.Atoi(p.v); err == nil {
				code = c
			}
		case strings.HasPrefix(p.k, ":") || hopByHop[p.k]:
		default:
			if p.k == "content-type" {
				hasCT = true
			}
			hdr.Add(p.k, p.v)
		}
	}
	if !hasCT {
		hdr["Content-Type"] = nil // no sniffing: Envoy adds no content type
	}
	if s.h.first != nil {
		// A later filter of a chain: the earlier filters get the map as it is.
		if cr := chainFrom(s.r.Context()); cr != nil {
			cr.mu.Lock()
			cr.respH = append([]pair(nil), ps...)
			cr.routeName, cr.route, cr.cluster, cr.upstream = s.routeName, s.route, s.cluster, s.upstream
			cr.codeDetails = s.codeDetails
			cr.mu.Unlock()
		}
	} else {
		// The connection manager's default server_header_transformation (OVERWRITE)
		// sets its server name on every response after the encoder filters
		// (source/common/http/conn_manager_impl.cc ActiveStream::encodeHeaders).
		hdr["Server"] = serverEnvoy
	}
	s.respCode = code
	s.headersSent = true
	if final {
		s.finish()
	}
	s.w.WriteHeader(code)
	_ = http.NewResponseController(s.w).Flush()
}

// processResponse runs the response through the plugin and writes it to the client,
// body chunk by chunk with a flush after each (nothing is held unless the plugin pauses).
// A local reply in the response-headers phase replaces the response, sent directly
// without the filters since the response has not started downstream; once it has, the
// stream is reset (FilterManager::sendLocalReply, source/common/http/filter_manager.cc).
func (s *stream) processResponse(body io.Reader, eos bool, trailer func() http.Header, upstream bool) {
	active := func() bool { return !s.disabled.Load() && !s.failSent.Load() }
	if active() {
		s.lock()
		s.respHOpen = true
		n := len(s.respH)
		s.unlock()
		res, ok := s.call("proxy_on_response_headers", uint64(s.id), uint64(n), b2u(eos))
		if !ok {
			if s.onFail() {
				return
			}
		} else if headersStop(res) {
			if !s.wait(func() bool { return s.continueResp }) {
				return
			}
			if s.v.failed.Load() && !s.disabled.Load() && s.onFail() {
				return
			}
		}
		s.lock()
		s.respHOpen, s.continueResp = false, false
		s.unlock()
		if l, reset := s.takeLocal(); reset {
			panic(http.ErrAbortHandler)
		} else if l != nil {
			s.writeLocal(l)
			return
		}
	}
	s.lock()
	ps := append([]pair(nil), s.respH...)
	s.unlock()
	s.writeHeaders(ps, eos)
	if eos {
		return
	}
	rc := http.NewResponseController(s.w)
	buf := make([]byte, 32<<10)
	var pending, base []byte // base: the array pending lies in (appendBody)
	for {
		n, err := body.Read(buf)
		if err != nil && err != io.EOF {
			// Upstream reset mid-body: Envoy resets the downstream stream.
			panic(http.ErrAbortHandler)
		}
		eof := err == io.EOF
		if n == 0 && !eof {
			continue
		}
		var tr http.Header
		if eof {
			tr = trailer()
		}
		hasTrailers := len(tr) > 0
		bodyEOS := eof && !hasTrailers
		buffering := pending != nil
		var data []byte
		base, data = appendBody(base, pending, buf[:n])
		if buffering && len(data) > s.h.bufferLimit {
			// Envoy: a buffered response body over the buffer limit after the headers
			// went downstream resets the stream (response_payload_too_large).
			panic(http.ErrAbortHandler)
		}
		pending = nil
		if active() {
			s.lock()
			s.respBody, s.respBase, s.respBodyOpen = data, base, true
			s.unlock()
			res, ok := s.call("proxy_on_response_body", uint64(s.id), uint64(len(data)), b2u(bodyEOS))
			s.lock()
			data, base = s.respBody, s.respBase
			l, reset := s.local, s.resetAsked
			s.unlock()
			if !ok {
				if s.onFail() {
					return
				}
			} else if l != nil || reset {
				// The response has started: Envoy can only reset the stream.
				panic(http.ErrAbortHandler)
			} else if dataStop(res) {
				if !bodyEOS {
					s.lock()
					cont := s.continueResp
					s.continueResp = false
					if !cont {
						pending = data
					} else {
						s.respBodyOpen = false
					}
					s.unlock()
					if !cont && !eof {
						continue
					}
				} else {
					if !s.wait(func() bool { return s.continueResp }) {
						return
					}
					s.lock()
					data, base = s.respBody, s.respBase
					l, reset = s.local, s.resetAsked
					s.continueResp = false
					s.unlock()
					if l != nil || reset {
						panic(http.ErrAbortHandler)
					}
					if s.v.failed.Load() && !s.disabled.Load() && s.onFail() {
						return
					}
				}
			}
			s.lock()
			s.respBodyOpen = false
			s.unlock()
		}
		if !eof {
			if len(data) > 0 && pending == nil {
				if _, err := s.w.Write(data); err != nil {
					return
				}
				s.respBytes += int64(len(data))
				_ = rc.Flush()
			}
			continue
		}
		// End of the response: data holds the last bytes (buffered or not).
		var out []pair
		if hasTrailers {
			s.lock()
			s.respT, s.respTOpen = trailerPairs(tr), true
			nt := len(s.respT)
			s.unlock()
			if active() {
				_, ok := s.call("proxy_on_response_trailers", uint64(s.id), uint64(nt))
				if !ok && s.onFail() {
					return
				}
			}
			s.lock()
			s.respTOpen = false
			out = append([]pair(nil), s.respT...)
			s.unlock()
		}
		s.respBytes += int64(len(data))
		s.finish()
		if len(data) > 0 {
			_, _ = s.w.Write(data)
		}
		for _, p := range out {
			s.w.Header().Add(http.TrailerPrefix+p.k, p.v)
		}
		return
	}
}

func (s *stream) String() string { return fmt.Sprintf("stream %d", s.id) }

// lengthReader reads a body of known length and reports io.EOF with its last
// bytes. Envoy knows a response with content-length is complete when its last
// byte arrives and ends the stream (proxy_on_log, proxy_on_done) before it writes
// that byte downstream; without this, a client holding the whole body could send
// its next request before the stream's end ran.
type lengthReader struct {
	r    io.Reader
	left int64
}

func (l *lengthReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left <= 0 && err == nil {
		err = io.EOF
	}
	return n, err
}
