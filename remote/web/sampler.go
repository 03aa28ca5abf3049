package web

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sample is the server's counters at one moment, read from its Prometheus
// registry: the same numbers /metrics shows.
type Sample struct {
	Time       time.Time
	Requests   float64 // gRPC calls and HTTP cache requests
	ACHits     float64 // GetActionResult OK and HTTP GET /ac/ 200
	ACMisses   float64 // GetActionResult NotFound and HTTP GET /ac/ 404
	BytesIn    float64 // gRPC payload received and HTTP PUT bodies
	BytesOut   float64 // gRPC payload sent and HTTP GET bodies
	StoreBytes float64 // ferrule_store_size_bytes
	StoreMax   float64 // ferrule_store_max_size_bytes (0: unbounded)
	Evictions  float64 // ferrule_store_evictions_total
}

// Sampler keeps Samples in a ring buffer: by default one every 10 s for
// 24 hours (8640 samples of 72 bytes, about 620 KB).
type Sampler struct {
	g        prometheus.Gatherer
	interval time.Duration

	mu   sync.Mutex
	ring []Sample
	next int
	full bool
}

// NewSampler samples g every interval, keeping window worth of samples.
func NewSampler(g prometheus.Gatherer, interval, window time.Duration) *Sampler {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if window <= 0 {
		window = 24 * time.Hour
	}
	n := int(window / interval)
	if n < 2 {
		n = 2
	}
	return &Sampler{g: g, interval: interval, ring: make([]Sample, n)}
}

// Interval is the time between samples.
func (s *Sampler) Interval() time.Duration { return s.interval }

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	s.SampleNow()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.SampleNow()
		}
	}
}

// SampleNow takes a sample at once and returns it.
func (s *Sampler) SampleNow() Sample {
	smp := s.read()
	s.mu.Lock()
	s.ring[s.next] = smp
	s.next = (s.next + 1) % len(s.ring)
	if s.next == 0 {
		s.full = true
	}
	s.mu.Unlock()
	return smp
}

// Samples returns the kept samples, oldest first.
func (s *Sampler) Samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]Sample(nil), s.ring[:s.next]...)
	}
	return append(append([]Sample(nil), s.ring[s.next:]...), s.ring[:s.next]...)
}

func (s *Sampler) read() Sample {
	smp := Sample{Time: time.Now()}
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return smp
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := value(m)
			l := labels(m)
			switch mf.GetName() {
			case "ferrule_grpc_calls_total":
				smp.Requests += v
				if l["method"] == "GetActionResult" {
					switch l["code"] {
					case "OK":
						smp.ACHits += v
					case "NotFound":
						smp.ACMisses += v
					}
				}
			case "ferrule_http_requests_total":
				smp.Requests += v
				if l["method"] == "GET" && l["kind"] == "ac" {
					switch l["code"] {
					case "200":
						smp.ACHits += v
					case "404":
						smp.ACMisses += v
					}
				}
			case "ferrule_grpc_received_bytes_total", "ferrule_http_received_bytes_total":
				smp.BytesIn += v
			case "ferrule_grpc_sent_bytes_total", "ferrule_http_sent_bytes_total":
				smp.BytesOut += v
			case "ferrule_store_size_bytes":
				smp.StoreBytes += v
			case "ferrule_store_max_size_bytes":
				smp.StoreMax += v
			case "ferrule_store_evictions_total":
				smp.Evictions += v
			}
		}
	}
	return smp
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}
