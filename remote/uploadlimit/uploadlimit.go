// Package uploadlimit bounds the uploads a server holds open at once: a
// cap for the whole server and a cap per client, shared by ByteStream
// Write streams and HTTP cache PUTs. A refusal is RESOURCE_EXHAUSTED
// naming the limit (HTTP answers 503 with the same message). Open uploads
// and refusals are Prometheus metrics:
//
//	ferrule_uploads_open                     uploads admitted and not yet ended
//	ferrule_uploads_admitted_total           uploads admitted
//	ferrule_uploads_refused_total{limit}     refusals, by max_open_uploads or max_uploads_per_client
//
// A client is the principal an authenticating interceptor put in the
// context (WithPrincipal), else the peer's IP address.
package uploadlimit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Defaults of Limits.
const (
	DefaultMaxOpen      = 1000
	DefaultMaxPerClient = 200
)

// Limits are the caps. Zero values select the defaults.
type Limits struct {
	// MaxOpen bounds the uploads open at once in the whole server.
	MaxOpen int
	// MaxPerClient bounds the uploads one client holds open at once.
	MaxPerClient int
}

// Names of the limits, as refusals name them and label them in metrics.
const (
	LimitOpen      = "max_open_uploads"
	LimitPerClient = "max_uploads_per_client"
)

// Limiter admits uploads within Limits. It is safe for concurrent use.
type Limiter struct {
	lim Limits

	mu        sync.Mutex
	open      int
	perClient map[string]int

	openGauge prometheus.Gauge
	admitted  prometheus.Counter
	refused   *prometheus.CounterVec
}

// New returns a Limiter; its metrics are registered on reg if it is not nil.
func New(l Limits, reg prometheus.Registerer) (*Limiter, error) {
	if l.MaxOpen <= 0 {
		l.MaxOpen = DefaultMaxOpen
	}
	if l.MaxPerClient <= 0 {
		l.MaxPerClient = DefaultMaxPerClient
	}
	x := &Limiter{
		lim:       l,
		perClient: map[string]int{},
		openGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferrule_uploads_open",
			Help: "Uploads (ByteStream writes and HTTP PUTs) admitted and not yet ended.",
		}),
		admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferrule_uploads_admitted_total",
			Help: "Uploads (ByteStream writes and HTTP PUTs) admitted.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_uploads_refused_total",
			Help: "Uploads refused because a limit was reached, by limit (max_open_uploads, max_uploads_per_client).",
		}, []string{"limit"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{x.openGauge, x.admitted, x.refused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("upload limit metrics: %w", err)
			}
		}
	}
	return x, nil
}

// Limits returns the limits in force (defaults filled in).
func (x *Limiter) Limits() Limits { return x.lim }

// Acquire admits one upload by client, or refuses it with
// RESOURCE_EXHAUSTED naming the limit. The returned release ends the
// upload; calling it more than once is harmless.
func (x *Limiter) Acquire(client string) (release func(), err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.open >= x.lim.MaxOpen:
		x.refused.WithLabelValues(LimitOpen).Inc()
		return nil, status.Errorf(codes.ResourceExhausted, "%d uploads are open, the server's limit (%s); retry later", x.open, LimitOpen)
	case x.perClient[client] >= x.lim.MaxPerClient:
		x.refused.WithLabelValues(LimitPerClient).Inc()
		return nil, status.Errorf(codes.ResourceExhausted, "client %s has %d uploads open, the limit per client (%s); retry later", client, x.perClient[client], LimitPerClient)
	}
	x.open++
	x.perClient[client]++
	x.openGauge.Inc()
	x.admitted.Inc()
	var once sync.Once
	return func() { once.Do(func() { x.release(client) }) }, nil
}

func (x *Limiter) release(client string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.open--
	if x.perClient[client]--; x.perClient[client] <= 0 {
		delete(x.perClient, client)
	}
	x.openGauge.Dec()
}

// Open is the number of uploads open now.
func (x *Limiter) Open() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.open
}

// Admitted is how many uploads were admitted.
func (x *Limiter) Admitted() float64 {
	m := &dto.Metric{}
	if err := x.admitted.Write(m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// Refused is how many uploads were refused for limit.
func (x *Limiter) Refused(limit string) float64 {
	m := &dto.Metric{}
	if err := x.refused.WithLabelValues(limit).Write(m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

type principalKey struct{}

// WithPrincipal records the authenticated identity of the caller, which
// then counts as the client instead of its address. This is the hook for
// an authenticating interceptor or middleware.
func WithPrincipal(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, principalKey{}, principal)
}

func principal(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(principalKey{}).(string)
	return p, ok && p != ""
}

// GRPCClient names the client of a gRPC call: its principal, else its
// peer's IP address.
func GRPCClient(ctx context.Context) string {
	if p, ok := principal(ctx); ok {
		return "principal:" + p
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return hostOf(p.Addr.String())
	}
	return "unknown"
}

// HTTPClient names the client of an HTTP request: its principal, else
// its remote IP address.
func HTTPClient(r *http.Request) string {
	if p, ok := principal(r.Context()); ok {
		return "principal:" + p
	}
	return hostOf(r.RemoteAddr)
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
