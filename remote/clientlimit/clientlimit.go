// Package clientlimit bounds how many of one kind of long-lived request a
// server holds at once: a cap for the whole server and a cap per client.
// Uploads (ByteStream Write streams and HTTP cache PUTs) share one
// Limiter; Execute and WaitExecution streams have another. A refusal is
// RESOURCE_EXHAUSTED naming the limit (HTTP answers 503 with the same
// message), given when no slot frees within the Kind's wait: a client that
// opens more than its share (Bazel opens hundreds of uploads at once) is
// slowed down, not failed, and what waits holds no message yet. Each Limiter has Prometheus metrics under its Kind's prefix:
//
//	PREFIX_open                    admitted and not yet ended
//	PREFIX_waiting                 waiting for a slot
//	PREFIX_admitted_total          admitted
//	PREFIX_refused_total{limit}    refusals, by the name of the limit
//
// A client is the principal an authenticating interceptor put in the
// context (WithPrincipal), else the peer's IP address.
package clientlimit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Kind names what a Limiter counts, in messages, limits and metrics.
type Kind struct {
	What           string // plural noun for messages, e.g. "uploads"
	Metric         string // metric name prefix, e.g. "ferrule_uploads"
	LimitOpen      string // the name of the server-wide limit (a flag's)
	LimitPerClient string // the name of the per-client limit
	Default        Limits // the caps zero Limits fields take
}

// Uploads are ByteStream Write streams and HTTP cache PUTs.
var Uploads = Kind{
	What: "uploads", Metric: "ferrule_uploads",
	LimitOpen: "max_open_uploads", LimitPerClient: "max_uploads_per_client",
	Default: Limits{MaxOpen: 1000, MaxPerClient: 200, Wait: time.Minute, MaxWaiting: 10_000},
}

// ExecuteStreams are Execute and WaitExecution streams.
var ExecuteStreams = Kind{
	What: "Execute streams", Metric: "ferrule_execute_streams",
	LimitOpen: "max_execute_streams", LimitPerClient: "max_execute_streams_per_client",
	Default: Limits{MaxOpen: 10_000, MaxPerClient: 1000, Wait: time.Minute, MaxWaiting: 10_000},
}

// Limits are the caps. Zero values select the Kind's defaults.
type Limits struct {
	// MaxOpen bounds the requests open at once in the whole server.
	MaxOpen int
	// MaxPerClient bounds the requests one client holds open at once.
	MaxPerClient int
	// Wait is how long a request past a cap waits for a slot before it is
	// refused; negative: not at all.
	Wait time.Duration
	// MaxWaiting bounds the requests waiting at once; past it a request is
	// refused at once.
	MaxWaiting int
}

// Limiter admits requests within Limits. It is safe for concurrent use.
type Limiter struct {
	kind Kind
	lim  Limits

	mu        sync.Mutex
	open      int
	perClient map[string]int
	waiting   int
	freed     chan struct{} // closed (and replaced) when a slot frees

	openGauge prometheus.Gauge
	waitGauge prometheus.Gauge
	admitted  prometheus.Counter
	refused   *prometheus.CounterVec
}

// New returns a Limiter of kind; its metrics are registered on reg if it
// is not nil.
func New(kind Kind, l Limits, reg prometheus.Registerer) (*Limiter, error) {
	if l.MaxOpen <= 0 {
		l.MaxOpen = kind.Default.MaxOpen
	}
	if l.MaxPerClient <= 0 {
		l.MaxPerClient = kind.Default.MaxPerClient
	}
	if l.Wait == 0 {
		l.Wait = kind.Default.Wait
	}
	if l.MaxWaiting <= 0 {
		l.MaxWaiting = kind.Default.MaxWaiting
	}
	x := &Limiter{
		kind:      kind,
		lim:       l,
		perClient: map[string]int{},
		freed:     make(chan struct{}),
		openGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: kind.Metric + "_open",
			Help: "Open " + kind.What + ": admitted and not yet ended.",
		}),
		waitGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: kind.Metric + "_waiting",
			Help: kind.What + " waiting for a slot under " + kind.LimitOpen + " or " + kind.LimitPerClient + ".",
		}),
		admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: kind.Metric + "_admitted_total",
			Help: kind.What + " admitted.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: kind.Metric + "_refused_total",
			Help: kind.What + " refused because a limit was reached, by limit (" + kind.LimitOpen + ", " + kind.LimitPerClient + ").",
		}, []string{"limit"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{x.openGauge, x.waitGauge, x.admitted, x.refused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("%s limit metrics: %w", kind.What, err)
			}
		}
	}
	return x, nil
}

// Limits returns the limits in force (defaults filled in).
func (x *Limiter) Limits() Limits { return x.lim }

// Acquire admits one request by client, waiting up to the Limits' Wait
// for a slot, or refuses it with RESOURCE_EXHAUSTED naming the limit (ctx's
// end gives its error as a status). The returned release ends it; calling
// release more than once is harmless.
func (x *Limiter) Acquire(ctx context.Context, client string) (release func(), err error) {
	var deadline <-chan time.Time
	x.mu.Lock()
	for {
		limit := x.full(client)
		if limit == "" {
			break
		}
		if deadline == nil {
			if x.lim.Wait < 0 || x.waiting >= x.lim.MaxWaiting {
				err := x.refuse(client, limit)
				x.mu.Unlock()
				return nil, err
			}
			t := time.NewTimer(x.lim.Wait)
			defer t.Stop()
			deadline = t.C
		}
		freed := x.freed
		x.waiting++
		x.waitGauge.Inc()
		x.mu.Unlock()
		var end error
		select {
		case <-freed:
		case <-deadline:
			end = errTimedOut
		case <-ctx.Done():
			end = status.FromContextError(ctx.Err()).Err()
		}
		x.mu.Lock()
		x.waiting--
		x.waitGauge.Dec()
		if end == errTimedOut {
			if limit = x.full(client); limit != "" {
				err := x.refuse(client, limit)
				x.mu.Unlock()
				return nil, err
			}
			break
		}
		if end != nil {
			x.mu.Unlock()
			return nil, end
		}
	}
	x.open++
	x.perClient[client]++
	x.openGauge.Inc()
	x.admitted.Inc()
	x.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { x.release(client) }) }, nil
}

var errTimedOut = fmt.Errorf("timed out")

// full names the limit that keeps client's next request out, or "".
func (x *Limiter) full(client string) string {
	switch {
	case x.open >= x.lim.MaxOpen:
		return x.kind.LimitOpen
	case x.perClient[client] >= x.lim.MaxPerClient:
		return x.kind.LimitPerClient
	}
	return ""
}

func (x *Limiter) refuse(client, limit string) error {
	x.refused.WithLabelValues(limit).Inc()
	if limit == x.kind.LimitOpen {
		return status.Errorf(codes.ResourceExhausted, "%d %s are open, the server's limit (%s); retry later", x.open, x.kind.What, x.kind.LimitOpen)
	}
	return status.Errorf(codes.ResourceExhausted, "client %s has %d %s open, the limit per client (%s); retry later", client, x.perClient[client], x.kind.What, x.kind.LimitPerClient)
}

func (x *Limiter) release(client string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.open--
	if x.perClient[client]--; x.perClient[client] <= 0 {
		delete(x.perClient, client)
	}
	x.openGauge.Dec()
	close(x.freed)
	x.freed = make(chan struct{})
}

// Open is the number of requests open now.
func (x *Limiter) Open() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.open
}

// Waiting is the number of requests waiting for a slot now.
func (x *Limiter) Waiting() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.waiting
}

// Admitted is how many requests were admitted.
func (x *Limiter) Admitted() float64 { return counterValue(x.admitted) }

// Refused is how many requests were refused for limit.
func (x *Limiter) Refused(limit string) float64 {
	return counterValue(x.refused.WithLabelValues(limit))
}

func counterValue(c prometheus.Counter) float64 {
	m := &dto.Metric{}
	if err := c.Write(m); err != nil {
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
