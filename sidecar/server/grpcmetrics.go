package server

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcMetrics are the standard gRPC server metrics, with the names and
// labels of go-grpc-middleware's Prometheus provider (and go-grpc-prometheus
// before it), so existing dashboards and alerts work unchanged:
//
//	grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//	grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//	grpc_server_msg_received_total{grpc_type,grpc_service,grpc_method}
//	grpc_server_msg_sent_total{grpc_type,grpc_service,grpc_method}
//	grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method} (histogram)
//
// grpc_type is unary, client_stream, server_stream or bidi_stream; grpc_code
// is the status code's name (OK, PermissionDenied, ...). A message counts
// when it was received or sent without error (a unary call's response only
// when the call succeeded), as go-grpc-prometheus counted. Every registered
// method's series exist from the start, at zero, so rates are defined
// before the first call.
type grpcMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	seconds                          *prometheus.HistogramVec
	// methods holds each registered method's series, looked up by full
	// method name; written once by initialize before serving, then read
	// only.
	methods map[string]*methodMetrics
}

type methodMetrics struct {
	started, received, sent prometheus.Counter
	handled                 [codes.Unauthenticated + 1]prometheus.Counter
	seconds                 prometheus.Observer
}

var grpcLabels = []string{"grpc_type", "grpc_service", "grpc_method"}

func newGRPCMetrics(reg prometheus.Registerer) *grpcMetrics {
	m := &grpcMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_started_total",
			Help: "RPCs started on the server."}, grpcLabels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by status code."}, append(append([]string(nil), grpcLabels...), "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_msg_received_total",
			Help: "Messages received by the server (a unary call's request, each message of a client stream)."}, grpcLabels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_msg_sent_total",
			Help: "Messages sent by the server (a unary call's response, each message of a server stream)."}, grpcLabels),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "grpc_server_handling_seconds",
			Help: "Time from an RPC's start to its completion on the server (a stream's whole life).", Buckets: prometheus.DefBuckets}, grpcLabels),
		methods: map[string]*methodMetrics{},
	}
	reg.MustRegister(m.started, m.handled, m.received, m.sent, m.seconds)
	return m
}

// initialize creates the series of every method registered on srv. Call it
// after registering the services and before serving.
func (m *grpcMetrics) initialize(srv *grpc.Server) {
	for service, info := range srv.GetServiceInfo() {
		for _, mi := range info.Methods {
			typ := rpcType(mi.IsClientStream, mi.IsServerStream)
			m.methods["/"+service+"/"+mi.Name] = m.series(typ, service, mi.Name)
		}
	}
}

func (m *grpcMetrics) series(typ, service, method string) *methodMetrics {
	mm := &methodMetrics{
		started:  m.started.WithLabelValues(typ, service, method),
		received: m.received.WithLabelValues(typ, service, method),
		sent:     m.sent.WithLabelValues(typ, service, method),
		seconds:  m.seconds.WithLabelValues(typ, service, method),
	}
	for c := range mm.handled {
		mm.handled[c] = m.handled.WithLabelValues(typ, service, method, codes.Code(c).String())
	}
	return mm
}

// lookup returns a method's series; a method not registered at initialize
// (none is, in practice) gets its series made on the spot.
func (m *grpcMetrics) lookup(fullMethod, typ string) *methodMetrics {
	if mm := m.methods[fullMethod]; mm != nil {
		return mm
	}
	service, method := splitMethod(fullMethod)
	return m.series(typ, service, method)
}

func (mm *methodMetrics) done(err error, start time.Time) {
	c := status.Code(err)
	if int(c) >= len(mm.handled) {
		c = codes.Unknown
	}
	mm.handled[c].Inc()
	mm.seconds.Observe(time.Since(start).Seconds())
}

func (m *grpcMetrics) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		mm := m.lookup(info.FullMethod, "unary")
		mm.started.Inc()
		mm.received.Inc()
		resp, err := handler(ctx, req)
		if err == nil {
			mm.sent.Inc()
		}
		mm.done(err, start)
		return resp, err
	}
}

func (m *grpcMetrics) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		mm := m.lookup(info.FullMethod, rpcType(info.IsClientStream, info.IsServerStream))
		mm.started.Inc()
		err := handler(srv, &countedStream{ServerStream: ss, mm: mm})
		mm.done(err, start)
		return err
	}
}

// countedStream counts a stream's messages.
type countedStream struct {
	grpc.ServerStream
	mm *methodMetrics
}

func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.mm.sent.Inc()
	}
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.mm.received.Inc()
	}
	return err
}

func rpcType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}

// splitMethod splits "/package.Service/Method".
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}
