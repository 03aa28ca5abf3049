package server

import (
	"context"
	"path"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// metrics are the server's Prometheus metrics: per gRPC method the calls by
// code (hits and misses of GetActionResult and reads show as OK and
// NotFound), bytes received and sent; the same for the HTTP cache. The
// store's hits, misses, bytes, size and evictions come from the
// store.Metrics decorator on the same registry.
type metrics struct {
	reg      *prometheus.Registry
	calls    *prometheus.CounterVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	http     *prometheus.CounterVec
	httpIn   *prometheus.CounterVec
	httpOut  *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_grpc_calls_total",
			Help: "gRPC calls handled, by method and status code (NotFound counts misses).",
		}, []string{"method", "code"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_grpc_received_bytes_total",
			Help: "Payload bytes received, by gRPC method.",
		}, []string{"method"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_grpc_sent_bytes_total",
			Help: "Payload bytes sent, by gRPC method.",
		}, []string{"method"}),
		http: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_http_requests_total",
			Help: "HTTP cache requests, by method, kind (ac or cas) and status code.",
		}, []string{"method", "kind", "code"}),
		httpIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_http_received_bytes_total",
			Help: "HTTP cache bytes received (PUT bodies), by kind.",
		}, []string{"kind"}),
		httpOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_http_sent_bytes_total",
			Help: "HTTP cache bytes sent (GET bodies), by kind.",
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.calls, m.received, m.sent, m.http, m.httpIn, m.httpOut,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type methodKey struct{}

// grpcStats is a grpc stats.Handler feeding the metrics.
type grpcStats struct{ m *metrics }

func (h grpcStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, path.Base(info.FullMethodName))
}

func (h grpcStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	method, _ := ctx.Value(methodKey{}).(string)
	switch s := s.(type) {
	case *stats.InPayload:
		h.m.received.WithLabelValues(method).Add(float64(s.Length))
	case *stats.OutPayload:
		h.m.sent.WithLabelValues(method).Add(float64(s.Length))
	case *stats.End:
		h.m.calls.WithLabelValues(method, status.Code(s.Error).String()).Inc()
	}
}

func (h grpcStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (h grpcStats) HandleConn(context.Context, stats.ConnStats) {}

func httpKind(p string) string {
	switch {
	case strings.Contains(p, "/ac/"):
		return "ac"
	case strings.Contains(p, "/cas/"):
		return "cas"
	}
	return "other"
}
