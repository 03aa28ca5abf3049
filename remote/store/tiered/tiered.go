// Package tiered puts a local store (the disk store) in front of a shared
// one (an S3 bucket, package store/s3) as a read-through, write-through
// cache: reads are served locally when they can be and otherwise from the
// shared store, whose value is then kept locally; writes go to both;
// FindMissing asks the shared store about what the local one lacks, so
// that the action cache's completeness check (store.Complete) sees every
// blob another frontend wrote before it answers NOT_FOUND.
//
// Values read from the shared store are checked against their digest as
// they are copied into the local store: a corrupt object is never kept or
// served, it is missing. Writes to the shared store are uploaded from the
// local copy, synchronously (a failure is the write's error, UNAVAILABLE)
// or, with Options.Async, by a few uploaders from a bounded queue (what
// does not fit, or fails, is counted as lost in /metrics and /status).
// While the shared store is unavailable, reads and FindMissing fall back
// to the local store alone.
package tiered

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrule-build/ferrule/remote/store"
)

// Options configure a Store.
type Options struct {
	// Async uploads to the shared store in the background: a Put returns
	// once the local store holds the value.
	Async bool
	// MaxQueuedUploads bounds the queue of background uploads; a write
	// that finds it full is not uploaded (and is counted). 0 means 10000.
	MaxQueuedUploads int
	// Uploaders is how many background uploads run at once; 0 means 16.
	Uploaders int
	Logger    *slog.Logger
}

// Store is the tiered store. Call Close to finish the queued uploads; it
// closes both stores if they are io.Closers.
type Store struct {
	local, shared store.Store
	opts          Options
	log           *slog.Logger

	mu     sync.RWMutex // guards queue against Close
	closed bool
	queue  chan store.Key
	wg     sync.WaitGroup

	queued   atomic.Int64
	uploads  *prometheus.CounterVec // by result: ok, failed, dropped
	fills    *prometheus.CounterVec // by result: ok, corrupt, unavailable
	queueLen prometheus.GaugeFunc
	healthy  prometheus.GaugeFunc
	lost     atomic.Int64
}

var (
	_ store.Store            = (*Store)(nil)
	_ store.CompressedReader = (*Store)(nil)
	_ store.HealthReporter   = (*Store)(nil)
	_ prometheus.Collector   = (*Store)(nil)
)

// New returns local in front of shared.
func New(local, shared store.Store, opts Options) *Store {
	if opts.MaxQueuedUploads <= 0 {
		opts.MaxQueuedUploads = 10000
	}
	if opts.Uploaders <= 0 {
		opts.Uploaders = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	t := &Store{local: local, shared: shared, opts: opts, log: opts.Logger}
	t.uploads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferrule_shared_uploads_total",
		Help: "Uploads to the shared (S3) tier, by result: ok, failed, dropped (queue full).",
	}, []string{"result"})
	t.fills = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferrule_shared_fills_total",
		Help: "Local misses looked up in the shared (S3) tier, by result: ok (copied into the local tier), missing, corrupt, unavailable.",
	}, []string{"result"})
	t.queueLen = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ferrule_shared_upload_queue_length",
		Help: "Uploads to the shared (S3) tier waiting in the queue (--s3.async_upload).",
	}, func() float64 { return float64(t.queued.Load()) })
	t.healthy = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ferrule_shared_healthy",
		Help: "1 while the shared (S3) tier answers, 0 while it fails.",
	}, func() float64 {
		if t.Health().Healthy {
			return 1
		}
		return 0
	})
	for _, r := range []string{"ok", "failed", "dropped"} {
		t.uploads.WithLabelValues(r)
	}
	if opts.Async {
		t.queue = make(chan store.Key, opts.MaxQueuedUploads)
		for range opts.Uploaders {
			t.wg.Add(1)
			go t.uploader()
		}
	}
	return t
}

// Unwrap returns the local store (for its Stats).
func (t *Store) Unwrap() store.Store { return t.local }

// Shared returns the shared store.
func (t *Store) Shared() store.Store { return t.shared }

// Describe implements prometheus.Collector.
func (t *Store) Describe(ch chan<- *prometheus.Desc) {
	t.uploads.Describe(ch)
	t.fills.Describe(ch)
	t.queueLen.Describe(ch)
	t.healthy.Describe(ch)
}

// Collect implements prometheus.Collector.
func (t *Store) Collect(ch chan<- prometheus.Metric) {
	t.uploads.Collect(ch)
	t.fills.Collect(ch)
	t.queueLen.Collect(ch)
	t.healthy.Collect(ch)
}

// Health implements store.HealthReporter: the shared store's, with the
// upload queue.
func (t *Store) Health() store.Health {
	h, ok := store.HealthOf(t.shared)
	if !ok {
		h = store.Health{Healthy: true}
	}
	h.QueuedUploads = t.queued.Load()
	h.LostUploads = t.lost.Load()
	return h
}

// Get implements store.Store.
func (t *Store) Get(ctx context.Context, key store.Key, offset int64) (io.ReadCloser, int64, error) {
	rc, size, err := t.local.Get(ctx, key, offset)
	if !errors.Is(err, store.ErrNotFound) {
		return rc, size, err
	}
	if err := t.fill(ctx, key); err != nil {
		if errors.Is(err, store.ErrTooLarge) { // the local store cannot keep it
			return t.shared.Get(ctx, key, offset)
		}
		return nil, 0, err
	}
	return t.local.Get(ctx, key, offset)
}

// GetCompressed implements store.CompressedReader through the local store.
func (t *Store) GetCompressed(ctx context.Context, key store.Key) (io.ReadCloser, int64, error) {
	rc, size, err := store.GetCompressed(ctx, t.local, key)
	if !errors.Is(err, store.ErrNotFound) {
		return rc, size, err
	}
	if err := t.fill(ctx, key); err != nil {
		if errors.Is(err, store.ErrTooLarge) {
			return nil, 0, store.ErrNotCompressed // Get reads it from the shared store
		}
		return nil, 0, err
	}
	return store.GetCompressed(ctx, t.local, key)
}

var _ store.Sizer = (*Store)(nil)

// Size implements store.Sizer: the size of key's value from the local store
// if it can tell, and from the shared one otherwise, ignoring key.Size.
func (t *Store) Size(ctx context.Context, key store.Key) (int64, error) {
	if n, err := store.SizeOf(ctx, t.local, key); err == nil {
		return n, nil
	}
	n, err := store.SizeOf(ctx, t.shared, key)
	if errors.Is(err, store.ErrUnavailable) {
		return 0, fmt.Errorf("%w: size of %s: the shared tier is unavailable: %v", store.ErrNotFound, key, err)
	}
	return n, err
}

// fill copies key's value from the shared store into the local one. A
// missing or corrupt value, and a shared store that cannot be reached, are
// ErrNotFound: the local store has already answered and has nothing.
func (t *Store) fill(ctx context.Context, key store.Key) error {
	rc, size, err := t.shared.Get(ctx, key, 0)
	switch {
	case errors.Is(err, store.ErrNotFound):
		t.fills.WithLabelValues("missing").Inc()
		return err
	case errors.Is(err, store.ErrUnavailable):
		t.fills.WithLabelValues("unavailable").Inc()
		return fmt.Errorf("%w: %s is not in the local tier, and the shared tier is unavailable: %v", store.ErrNotFound, key, err)
	case err != nil:
		return err
	}
	defer rc.Close()
	var r io.Reader = rc
	if key.Kind == store.CAS {
		vr, err := store.VerifyReader(key, rc)
		if err != nil {
			return err
		}
		r = vr
	}
	err = t.local.Put(ctx, key, size, r)
	switch {
	case err == nil:
		t.fills.WithLabelValues("ok").Inc()
		return nil
	case errors.Is(err, store.ErrDigestMismatch), errors.Is(err, store.ErrSizeMismatch):
		t.fills.WithLabelValues("corrupt").Inc()
		t.log.Error("shared tier holds a corrupt value; not served", "key", key.String(), "err", err)
		return fmt.Errorf("%w: %s: the shared tier's copy is corrupt", store.ErrNotFound, key)
	case errors.Is(err, store.ErrUnavailable):
		t.fills.WithLabelValues("unavailable").Inc()
		return fmt.Errorf("%w: %s: reading from the shared tier failed: %v", store.ErrNotFound, key, err)
	}
	return err
}

// Put implements store.Store: the local store first, then the shared one
// from the local copy.
func (t *Store) Put(ctx context.Context, key store.Key, size int64, r io.Reader) error {
	err := t.local.Put(ctx, key, size, r)
	if errors.Is(err, store.ErrTooLarge) {
		return t.shared.Put(ctx, key, size, r)
	}
	if err != nil {
		return err
	}
	if store.IsEmpty(key) {
		return nil
	}
	if t.queue != nil {
		t.enqueue(key)
		return nil
	}
	if err := t.upload(ctx, key); err != nil {
		t.uploads.WithLabelValues("failed").Inc()
		return fmt.Errorf("stored in the local tier only: %w", err)
	}
	t.uploads.WithLabelValues("ok").Inc()
	return nil
}

func (t *Store) upload(ctx context.Context, key store.Key) error {
	rc, size, err := t.local.Get(ctx, key, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	return t.shared.Put(ctx, key, size, rc)
}

func (t *Store) enqueue(key store.Key) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		t.drop(key, "closing")
		return
	}
	select {
	case t.queue <- key:
		t.queued.Add(1)
	default:
		t.drop(key, "queue full")
	}
}

func (t *Store) drop(key store.Key, why string) {
	t.uploads.WithLabelValues("dropped").Inc()
	if n := t.lost.Add(1); n&(n-1) == 0 { // logs the 1st, 2nd, 4th, 8th ...
		t.log.Warn("upload to the shared tier dropped", "why", why, "key", key.String(), "lost_so_far", n)
	}
}

func (t *Store) uploader() {
	defer t.wg.Done()
	for key := range t.queue {
		t.queued.Add(-1)
		if err := t.upload(context.Background(), key); err != nil {
			t.uploads.WithLabelValues("failed").Inc()
			if n := t.lost.Add(1); n&(n-1) == 0 {
				t.log.Warn("upload to the shared tier failed", "key", key.String(), "err", err, "lost_so_far", n)
			}
			continue
		}
		t.uploads.WithLabelValues("ok").Inc()
	}
}

// FindMissing implements store.Store: what the local store lacks is looked
// up in the shared one; if that fails, the local answer stands.
func (t *Store) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	missing, err := t.local.FindMissing(ctx, keys)
	if err != nil || len(missing) == 0 {
		return missing, err
	}
	shared, err := t.shared.FindMissing(ctx, missing)
	if errors.Is(err, store.ErrUnavailable) {
		t.log.Debug("shared tier unavailable; FindMissing answered by the local tier", "err", err)
		return missing, nil
	}
	return shared, err
}

// Close waits for the queued uploads, then closes both stores.
func (t *Store) Close() error {
	t.mu.Lock()
	if !t.closed && t.queue != nil {
		close(t.queue)
	}
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
	var errs []error
	for _, s := range []store.Store{t.shared, t.local} {
		if c, ok := s.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
