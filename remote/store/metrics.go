package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics returns a Store that counts what passes through it on
// Prometheus metrics registered on reg: hits and misses, bytes in and out,
// errors, and latencies, each by kind (cas, ac); and, if s (or a store it
// wraps) reports Stats, gauges of its size, bound, entries and evictions.
// To instrument several stores on one registry, give each a registerer
// with its own prefix (prometheus.WrapRegistererWithPrefix).
func Metrics(s Store, reg prometheus.Registerer) (Store, error) {
	m := &metrics{
		next: s,
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_store_hits_total",
			Help: "Lookups (Get and FindMissing keys) that found their entry.",
		}, []string{"kind"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_store_misses_total",
			Help: "Lookups (Get and FindMissing keys) that did not find their entry.",
		}, []string{"kind"}),
		puts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_store_puts_total",
			Help: "Successful Puts.",
		}, []string{"kind"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_store_errors_total",
			Help: "Failed store operations (other than not found).",
		}, []string{"op", "kind"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_store_bytes_written_total",
			Help: "Bytes stored by successful Puts.",
		}, []string{"kind"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_store_bytes_read_total",
			Help: "Bytes read from values returned by Get.",
		}, []string{"kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferrule_store_duration_seconds",
			Help:    "Time of store operations (for Get, until the value is opened; for Put, the whole write).",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. ~2.6s
		}, []string{"op"}),
		putSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferrule_store_put_size_bytes",
			Help:    "Sizes of values stored.",
			Buckets: prometheus.ExponentialBuckets(64, 8, 9), // 64B .. 1GiB
		}, []string{"kind"}),
	}
	cs := []prometheus.Collector{m.hits, m.misses, m.puts, m.errs, m.bytesIn, m.bytesOut, m.latency, m.putSize}
	if _, ok := StatsOf(s); ok {
		stat := func(f func(Stats) int64) func() float64 {
			return func() float64 { st, _ := StatsOf(s); return float64(f(st)) }
		}
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferrule_store_size_bytes", Help: sizeHelp},
				stat(func(st Stats) int64 { return st.Bytes })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferrule_store_max_size_bytes", Help: "The store's size bound on ferrule_store_size_bytes (0: none)."},
				stat(func(st Stats) int64 { return st.MaxBytes })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ferrule_store_entries", Help: "Entries stored."},
				stat(func(st Stats) int64 { return st.Entries })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferrule_store_evictions_total", Help: "Entries evicted to stay within the bound."},
				stat(func(st Stats) int64 { return st.Evictions })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferrule_store_evicted_bytes_total", Help: "Space freed by evictions, counted as ferrule_store_size_bytes counts it."},
				stat(func(st Stats) int64 { return st.EvictedBytes })),
		)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering store metrics: %w", err)
		}
	}
	return m, nil
}

// sizeHelp says what ferrule_store_size_bytes counts: what the backend's
// bound counts (Stats.Bytes).
const sizeHelp = "Space the stored entries take, as the size bound counts it: for the disk store their files in whole file system blocks (headers and checksums included), for the memory store the value bytes."

type metrics struct {
	next                     Store
	hits, misses, puts, errs *prometheus.CounterVec
	bytesIn, bytesOut        *prometheus.CounterVec
	latency, putSize         *prometheus.HistogramVec
}

// Unwrap returns the wrapped store.
func (m *metrics) Unwrap() Store { return m.next }

func (m *metrics) Get(ctx context.Context, key Key, offset int64) (io.ReadCloser, int64, error) {
	start := time.Now()
	rc, size, err := m.next.Get(ctx, key, offset)
	m.latency.WithLabelValues("get").Observe(time.Since(start).Seconds())
	kind := key.Kind.String()
	switch {
	case err == nil:
		m.hits.WithLabelValues(kind).Inc()
		return &countingReader{rc: rc, c: m.bytesOut.WithLabelValues(kind)}, size, nil
	case errors.Is(err, ErrNotFound):
		m.misses.WithLabelValues(kind).Inc()
	default:
		m.errs.WithLabelValues("get", kind).Inc()
	}
	return rc, size, err
}

// GetCompressed implements CompressedReader: a compressed read counts as a
// hit or miss like Get, and the compressed bytes read count as bytes read.
// ErrNotCompressed is neither (the caller then reads with Get).
func (m *metrics) GetCompressed(ctx context.Context, key Key) (io.ReadCloser, int64, error) {
	start := time.Now()
	rc, size, err := GetCompressed(ctx, m.next, key)
	kind := key.Kind.String()
	switch {
	case err == nil:
		m.latency.WithLabelValues("get").Observe(time.Since(start).Seconds())
		m.hits.WithLabelValues(kind).Inc()
		return &countingReader{rc: rc, c: m.bytesOut.WithLabelValues(kind)}, size, nil
	case errors.Is(err, ErrNotCompressed):
	case errors.Is(err, ErrNotFound):
		m.misses.WithLabelValues(kind).Inc()
	default:
		m.errs.WithLabelValues("get", kind).Inc()
	}
	return rc, size, err
}

func (m *metrics) Put(ctx context.Context, key Key, size int64, r io.Reader) error {
	start := time.Now()
	err := m.next.Put(ctx, key, size, r)
	m.latency.WithLabelValues("put").Observe(time.Since(start).Seconds())
	kind := key.Kind.String()
	if err != nil {
		m.errs.WithLabelValues("put", kind).Inc()
		return err
	}
	m.puts.WithLabelValues(kind).Inc()
	m.bytesIn.WithLabelValues(kind).Add(float64(size))
	m.putSize.WithLabelValues(kind).Observe(float64(size))
	return nil
}

func (m *metrics) FindMissing(ctx context.Context, keys []Key) ([]Key, error) {
	start := time.Now()
	missing, err := m.next.FindMissing(ctx, keys)
	m.latency.WithLabelValues("find_missing").Observe(time.Since(start).Seconds())
	if err != nil {
		kind := "mixed"
		if len(keys) > 0 {
			kind = keys[0].Kind.String()
		}
		m.errs.WithLabelValues("find_missing", kind).Inc()
		return missing, err
	}
	var asked, miss [2]int
	for _, k := range keys {
		if k.Kind <= AC {
			asked[k.Kind]++
		}
	}
	for _, k := range missing {
		if k.Kind <= AC {
			miss[k.Kind]++
		}
	}
	for _, kind := range []Kind{CAS, AC} {
		if asked[kind] > 0 {
			m.hits.WithLabelValues(kind.String()).Add(float64(asked[kind] - miss[kind]))
			m.misses.WithLabelValues(kind.String()).Add(float64(miss[kind]))
		}
	}
	return missing, nil
}

// countingReader adds the bytes read to a counter.
type countingReader struct {
	rc io.ReadCloser
	c  prometheus.Counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		r.c.Add(float64(n))
	}
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }
