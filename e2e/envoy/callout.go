package envoy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// calloutResponse is an http callout's answer while proxy_on_http_call_response runs.
type calloutResponse struct {
	headers  []pair
	body     []byte
	trailers []pair
}

// httpCall starts a callout like Envoy's Context::httpCall: the uri argument is a
// cluster name (unknown → BadArgument), the headers must carry :method, :path and
// :authority (else BadArgument), a negative timeout is BadArgument and 0 means none.
// The answer arrives on the root context (proxy_on_http_call_response with the root
// context id), whatever context made the call.
func (v *vm) httpCall(cluster string, hdrs []pair, body []byte, trailers []pair, timeoutMs int32) (uint32, Status) {
	// The answer goes to the root context of the calling context's plugin.
	root := v.currentRoot().id
	if timeoutMs < 0 {
		return 0, StatusBadArgument
	}
	addr, ok := v.h.cfg.Clusters[cluster]
	if !ok {
		return 0, StatusBadArgument
	}
	m := headerMap{&hdrs}
	method, ok1 := m.get(":method")
	path, ok2 := m.get(":path")
	authority, ok3 := m.get(":authority")
	if !ok1 || !ok2 || !ok3 {
		return 0, StatusBadArgument
	}
	v.nextHTTPCall += calloutStep
	tok := v.nextHTTPCall
	ctx, cancel := calloutContext(v.h.ctx, time.Duration(timeoutMs)*time.Millisecond)
	v.callouts[tok] = cancel
	scheme, transport := v.h.upstream(cluster)
	req, err := http.NewRequestWithContext(ctx, method, scheme+addr+path, bytes.NewReader(body))
	if err != nil {
		delete(v.callouts, tok)
		cancel()
		return 0, StatusBadArgument
	}
	req.Host = authority
	for _, p := range hdrs {
		if strings.HasPrefix(p.k, ":") || hopByHop[p.k] || p.k == "content-length" {
			continue
		}
		req.Header.Add(p.k, p.v)
	}
	req.ContentLength = int64(len(body))
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil
	}
	go func() {
		defer cancel()
		resp := doCallout(ctx, transport, req, v.h.calloutLimit)
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, live := v.callouts[tok]; !live || v.closed || v.failed.Load() {
			return
		}
		delete(v.callouts, tok)
		v.httpResp = resp
		_, _ = v.callLocked(root, "proxy_on_http_call_response", uint64(root), uint64(tok),
			uint64(len(resp.headers)), uint64(len(resp.body)), uint64(len(resp.trailers)))
		v.httpResp = nil
	}()
	return tok, StatusOK
}

// DefaultCalloutBufferLimit is Envoy's bound on the answer its async client
// buffers for a callout: 32 MiB (source/common/http/async_client_impl.h,
// kBufferLimitForResponse; runtime key http.async_response_buffer_limit).
const DefaultCalloutBufferLimit = 32 << 20

// calloutContext is one callout's context: cancelled by its cancel (the answer
// arrived, the plugin cancelled, the host closed) or after timeout when positive.
// Exactly one child of the host's context is made, so cancel unregisters all a
// callout ever registered there.
func calloutContext(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(parent, timeout)
	}
	return context.WithCancel(parent)
}

// doCallout performs the request. Like Envoy's async client (whose router turns
// upstream failures into local replies delivered as a success), a connection failure
// answers 503 and a timeout 504, each with Envoy's body text.
//
// The answer's body is buffered up to limit bytes. Past that, Envoy's async
// client drains what came, resets the stream and fails the request with
// ExceedResponseBufferLimit (source/common/http/async_client_impl.cc,
// AsyncRequestSharedImpl::onData and onReset), which the wasm extension
// delivers as a callout answer with no headers, body or trailers
// (source/extensions/common/wasm/context.cc, Context::onHttpCallFailure). The
// host does the same: it stops reading at the limit (at once when the
// content-length says so), closes the connection, and returns an empty
// response.
func doCallout(ctx context.Context, rt http.RoundTripper, req *http.Request, limit int) *calloutResponse {
	local := func(code int, body string) *calloutResponse {
		return &calloutResponse{headers: []pair{{":status", strconv.Itoa(code)},
			{"content-length", strconv.Itoa(len(body))}, {"content-type", "text/plain"}}, body: []byte(body)}
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return local(http.StatusGatewayTimeout, "upstream request timeout")
		}
		return local(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
	}
	defer resp.Body.Close()
	if resp.ContentLength > int64(limit) {
		return &calloutResponse{} // failed: over the buffer limit
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return local(http.StatusGatewayTimeout, "upstream request timeout")
		}
		return local(http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
	}
	if len(body) > limit {
		return &calloutResponse{} // failed: over the buffer limit
	}
	out := &calloutResponse{headers: responsePairs(resp), body: body, trailers: trailerPairs(resp.Trailer)}
	if resp.ContentLength < 0 {
		headerMap{&out.headers}.set("content-length", strconv.Itoa(len(body)))
	}
	return out
}

// rawCodec passes gRPC messages through as bytes, as Envoy's raw async client does.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// grpcTarget resolves proxy_grpc_call's service argument like Envoy's Context::grpcCall:
// the bytes are first parsed as a serialized envoy.config.core.v3.GrpcService; if that
// fails they are a plain cluster name, and an unknown cluster answers ParseFailure. A
// parsed GrpcService names its cluster in envoy_grpc.cluster_name (google_grpc is not
// emulated); one without a usable target answers BadArgument. A parsed service whose
// cluster is unknown fails at call time with UNAVAILABLE, as Envoy's client does with
// skip_cluster_check.
func (v *vm) grpcTarget(service []byte) (string, Status) {
	var gs corev3.GrpcService
	if err := proto.Unmarshal(service, &gs); err != nil {
		name := string(service)
		if _, ok := v.h.cfg.Clusters[name]; !ok {
			return "", StatusParseFailure
		}
		return name, StatusOK
	}
	if eg := gs.GetEnvoyGrpc(); eg != nil && eg.GetClusterName() != "" {
		return eg.GetClusterName(), StatusOK
	}
	return "", StatusBadArgument
}

func (h *Host) grpcConn(cluster string) (*grpc.ClientConn, error) {
	if h.root != nil {
		return h.root.grpcConn(cluster) // one connection per cluster for the process
	}
	h.grpcMu.Lock()
	defer h.grpcMu.Unlock()
	if c, ok := h.grpcConns[cluster]; ok {
		return c, nil
	}
	addr, ok := h.cfg.Clusters[cluster]
	if !ok {
		return nil, status.Error(codes.Unavailable, "cluster not found")
	}
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	h.grpcConns[cluster] = c
	return c, nil
}

// outgoingMD sends proxy_grpc_call's and proxy_grpc_stream's initial metadata as the
// call's gRPC request metadata, as Envoy does: its handler copies each pair into the
// request headers of the async gRPC call when the call creates its initial metadata
// (source/extensions/common/wasm/context.cc, Context::grpcCall/grpcStream with
// onCreateInitialMetadata). shepherd's filter token travels this way.
func outgoingMD(ctx context.Context, md []pair) context.Context {
	if len(md) == 0 {
		return ctx
	}
	kv := make([]string, 0, 2*len(md))
	for _, p := range md {
		kv = append(kv, strings.ToLower(p.k), p.v)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func mdPairs(md metadata.MD) []pair {
	var ps []pair
	for k, vs := range md {
		for _, v := range vs {
			ps = append(ps, pair{k, v})
		}
	}
	return ps
}

// grpcCall makes a unary call with raw bytes. As in Envoy (GrpcCallClientHandler in
// source/extensions/common/wasm/context.h), success is delivered as one
// proxy_on_grpc_receive on the root context with the response in GRPC_RECEIVE_BUFFER,
// and failure as proxy_on_grpc_close with the gRPC status (message via proxy_get_status);
// a unary call gets no metadata callbacks.
func (v *vm) grpcCall(service []byte, svcName, method string, md []pair, msg []byte, timeout time.Duration) (uint32, Status) {
	// The answer goes to the root context of the calling context's plugin.
	root := v.currentRoot().id
	cluster, st := v.grpcTarget(service)
	if st != StatusOK {
		return 0, st
	}
	v.nextGrpcCall += calloutStep
	tok := v.nextGrpcCall
	ctx, cancel := calloutContext(v.h.ctx, timeout)
	v.callouts[tok] = cancel
	go func() {
		defer cancel()
		var out []byte
		err := func() error {
			conn, err := v.h.grpcConn(cluster)
			if err != nil {
				return err
			}
			in := msg
			return conn.Invoke(outgoingMD(ctx, md), "/"+svcName+"/"+method, &in, &out, grpc.ForceCodec(rawCodec{}))
		}()
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, live := v.callouts[tok]; !live || v.closed || v.failed.Load() {
			return
		}
		delete(v.callouts, tok)
		if err == nil {
			v.grpcRecv = out
			_, _ = v.callLocked(root, "proxy_on_grpc_receive", uint64(root), uint64(tok), uint64(len(out)))
			v.grpcRecv = nil
			return
		}
		s := status.Convert(err)
		v.statusCode, v.statusMsg = uint32(s.Code()), s.Message()
		_, _ = v.callLocked(root, "proxy_on_grpc_close", uint64(root), uint64(tok), uint64(s.Code()))
		v.statusCode, v.statusMsg = 0, ""
	}()
	return tok, StatusOK
}

// grpcStream is one proxy_grpc_stream.
type grpcStream struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc
	ready  chan struct{} // closed once cs is set (or failed)
	err    error
	// What the plugin sent, in order, for the stream's sender goroutine:
	// Envoy's async stream buffers messages sent before it is connected
	// (source/common/grpc/async_client_impl.cc, AsyncStreamImpl::sendMessageRaw),
	// so proxy_grpc_send never waits for the connection.
	mu   sync.Mutex
	out  []grpcOut
	wake chan struct{} // one pending wake-up
}

// grpcOut is one send (a message, then the half-close when end is set) or,
// with closeOnly, a half-close alone.
type grpcOut struct {
	msg            []byte
	end, closeOnly bool
}

// push queues o for the sender.
func (gs *grpcStream) push(o grpcOut) {
	gs.mu.Lock()
	gs.out = append(gs.out, o)
	gs.mu.Unlock()
	select {
	case gs.wake <- struct{}{}:
	default:
	}
}

// send writes what the plugin queued, in order, once the stream is open,
// until the stream ends (its context is cancelled). A stream that failed to
// open drops it, as Envoy's does after a reset.
func (gs *grpcStream) send(ctx context.Context) {
	select {
	case <-gs.ready:
	case <-ctx.Done():
		return
	}
	for {
		gs.mu.Lock()
		batch := gs.out
		gs.out = nil
		gs.mu.Unlock()
		for _, o := range batch {
			if gs.cs == nil {
				continue
			}
			if !o.closeOnly {
				m := o.msg
				_ = gs.cs.SendMsg(&m)
			}
			if o.end {
				_ = gs.cs.CloseSend()
			}
		}
		select {
		case <-gs.wake:
		case <-ctx.Done():
			return
		}
	}
}

// grpcStreamOpen starts a bidirectional stream; callbacks arrive on the root context
// in Envoy's order: initial metadata, each message, trailing metadata, close
// (GrpcStreamClientHandler in source/extensions/common/wasm/context.h).
func (v *vm) grpcStreamOpen(service []byte, svcName, method string, md []pair) (uint32, Status) {
	// The answer goes to the root context of the calling context's plugin.
	root := v.currentRoot().id
	cluster, st := v.grpcTarget(service)
	if st != StatusOK {
		return 0, st
	}
	v.nextGrpcStream += calloutStep
	tok := v.nextGrpcStream
	ctx, cancel := context.WithCancel(v.h.ctx)
	gs := &grpcStream{cancel: cancel, ready: make(chan struct{}), wake: make(chan struct{}, 1)}
	v.grpcStreams[tok] = gs
	go gs.send(ctx)
	go func() {
		defer cancel() // the stream has ended: its sender and context go too
		conn, err := v.h.grpcConn(cluster)
		if err == nil {
			gs.cs, err = conn.NewStream(outgoingMD(ctx, md), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
				"/"+svcName+"/"+method, grpc.ForceCodec(rawCodec{}))
		}
		gs.err = err
		close(gs.ready)
		deliver := func(f func()) bool {
			v.mu.Lock()
			defer v.mu.Unlock()
			if v.grpcStreams[tok] != gs || v.closed || v.failed.Load() {
				return false
			}
			f()
			return true
		}
		closeWith := func(err error) {
			s := status.Convert(err)
			deliver(func() {
				delete(v.grpcStreams, tok)
				v.statusCode, v.statusMsg = uint32(s.Code()), s.Message()
				_, _ = v.callLocked(root, "proxy_on_grpc_close", uint64(root), uint64(tok), uint64(s.Code()))
				v.statusCode, v.statusMsg = 0, ""
			})
		}
		if err != nil {
			closeWith(err)
			return
		}
		if hdr, err := gs.cs.Header(); err == nil && len(hdr) > 0 {
			if !deliver(func() {
				v.grpcInitMD, v.grpcMDOpen = mdPairs(hdr), mapGrpcInitialMetadata
				_, _ = v.callLocked(root, "proxy_on_grpc_receive_initial_metadata", uint64(root), uint64(tok), uint64(len(v.grpcInitMD)))
				v.grpcInitMD, v.grpcMDOpen = nil, -1
			}) {
				return
			}
		}
		for {
			var m []byte
			err := gs.cs.RecvMsg(&m)
			if err != nil {
				if tr := gs.cs.Trailer(); len(tr) > 0 {
					deliver(func() {
						v.grpcTrailMD, v.grpcMDOpen = mdPairs(tr), mapGrpcTrailingMetadata
						_, _ = v.callLocked(root, "proxy_on_grpc_receive_trailing_metadata", uint64(root), uint64(tok), uint64(len(v.grpcTrailMD)))
						v.grpcTrailMD, v.grpcMDOpen = nil, -1
					})
				}
				if errors.Is(err, io.EOF) {
					err = nil
				}
				closeWith(err)
				return
			}
			if !deliver(func() {
				v.grpcRecv = m
				_, _ = v.callLocked(root, "proxy_on_grpc_receive", uint64(root), uint64(tok), uint64(len(m)))
				v.grpcRecv = nil
			}) {
				return
			}
		}
	}()
	return tok, StatusOK
}

// grpcSend sends one message on a stream (Envoy's Context::grpcSend): a token that is
// not a stream id is BadArgument, an unknown stream NotFound.
func (v *vm) grpcSend(tok uint32, msg []byte, end bool) Status {
	if tok&calloutMask != calloutGrpcStream {
		return StatusBadArgument
	}
	gs := v.grpcStreams[tok]
	if gs == nil {
		return StatusNotFound
	}
	gs.push(grpcOut{msg: append([]byte(nil), msg...), end: end})
	return StatusOK
}

// grpcCancel drops a call or stream without further callbacks (Envoy's Context::grpcCancel).
func (v *vm) grpcCancel(tok uint32) Status {
	switch tok & calloutMask {
	case calloutGrpcCall:
		c, ok := v.callouts[tok]
		if !ok {
			return StatusNotFound
		}
		c()
		delete(v.callouts, tok)
		return StatusOK
	case calloutGrpcStream:
		gs := v.grpcStreams[tok]
		if gs == nil {
			return StatusNotFound
		}
		gs.cancel()
		delete(v.grpcStreams, tok)
		return StatusOK
	}
	return StatusBadArgument
}

// grpcClose closes a call (like cancel) or half-closes a stream (Envoy's Context::grpcClose).
func (v *vm) grpcClose(tok uint32) Status {
	switch tok & calloutMask {
	case calloutGrpcCall:
		return v.grpcCancel(tok)
	case calloutGrpcStream:
		gs := v.grpcStreams[tok]
		if gs == nil {
			return StatusNotFound
		}
		gs.push(grpcOut{end: true, closeOnly: true})
		return StatusOK
	}
	return StatusBadArgument
}
