// Package s3 is a store.Store kept in a bucket of an S3-compatible object
// store (AWS S3, MinIO, Ceph RGW, versitygw, GCS's S3 API), through
// minio-go. Several `ferrule serve` frontends share one bucket, each with
// its own disk store in front of it (package store/tiered).
//
// Objects are named <prefix>/cas/<hash> and <prefix>/ac/<hash> for the
// default namespace (no instance name, SHA-256); any other instance name or
// digest function gets its own directory, <prefix>/ns/<id>/cas/<hash>,
// where <id> is derived from the digest function and the instance name by
// SHA-256 (as the disk store names its namespaces), so that an instance
// name never takes part in an object name.
//
// The store keeps no state of its own: S3 is the truth. A value is staged
// whole (in memory, or in a temporary file when large) before it is
// uploaded, so that a reader that fails, even on its final Read, uploads
// nothing. A failure to reach the bucket makes the store unhealthy (see
// Health), is logged once, and fails calls with store.ErrUnavailable; for
// a second after a failure calls fail at once instead of waiting for the
// client's retries, and a probe checks the bucket every few seconds until
// it answers again.
package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferrule-build/ferrule/remote/store"
)

// Options configure a Store.
type Options struct {
	// Endpoint is the S3 service's host[:port] (no scheme), e.g.
	// s3.us-east-1.amazonaws.com or 127.0.0.1:7070.
	Endpoint string
	Bucket   string
	// Prefix is prepended to every object name (a trailing slash is
	// implied), so that several caches can share a bucket.
	Prefix string
	// Region is the bucket's region; empty lets the client find it out.
	Region string
	// DisableSSL talks plain HTTP instead of HTTPS.
	DisableSSL bool
	// BucketLookup is auto, dns (virtual-host style) or path.
	BucketLookup string
	// Creds sign the requests (see Credentials).
	Creds *credentials.Credentials
	// UpdateTimestamps refreshes an object's modification time (by copying
	// it onto itself) when it is found and is older than RefreshAfter, so
	// that a bucket lifecycle rule expiring objects by age keeps what is
	// still used.
	UpdateTimestamps bool
	RefreshAfter     time.Duration // 0 means a day
	// MaxRetries bounds the client's retries of one request; 0 means 2.
	MaxRetries int
	// FindParallel is how many HEAD requests FindMissing has in flight at
	// once; 0 means DefaultFindParallel.
	FindParallel int
	// StageInMemory is the largest value staged in memory before upload;
	// larger ones go to a temporary file in TempDir. 0 means 1 MiB.
	StageInMemory int64
	TempDir       string
	Logger        *slog.Logger
}

// Store is a store.Store in an S3 bucket. Call Close when done.
type Store struct {
	opts   Options
	client *minio.Client
	prefix string
	name   string
	log    *slog.Logger

	touching chan struct{} // bounds concurrent timestamp refreshes

	mu       sync.Mutex
	healthy  bool
	cause    string
	since    time.Time
	lastFail time.Time

	stop chan struct{}
	done chan struct{}
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.HealthReporter = (*Store)(nil)
)

// failFast is how long after a failure calls fail without trying S3.
const failFast = time.Second

// probeEvery is how often an unhealthy store checks the bucket.
const probeEvery = 3 * time.Second

// Open connects to the bucket and checks, within ctx, that it exists and
// that the credentials are accepted; the error names the setting at fault.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Endpoint == "" {
		return nil, errors.New("--s3.endpoint is empty")
	}
	if strings.Contains(opts.Endpoint, "://") {
		return nil, fmt.Errorf("--s3.endpoint %q: give host[:port] without a scheme (--s3.disable_ssl selects plain HTTP)", opts.Endpoint)
	}
	if opts.Bucket == "" {
		return nil, errors.New("--s3.bucket is empty")
	}
	if opts.Creds == nil {
		return nil, errors.New("s3: no credentials")
	}
	if opts.RefreshAfter <= 0 {
		opts.RefreshAfter = 24 * time.Hour
	}
	if opts.FindParallel <= 0 {
		opts.FindParallel = DefaultFindParallel
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 2
	}
	if opts.StageInMemory <= 0 {
		opts.StageInMemory = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var lookup minio.BucketLookupType
	switch opts.BucketLookup {
	case "", "auto":
		lookup = minio.BucketLookupAuto
	case "dns":
		lookup = minio.BucketLookupDNS
	case "path":
		lookup = minio.BucketLookupPath
	default:
		return nil, fmt.Errorf("--s3.bucket_lookup_type %q: want auto, dns or path", opts.BucketLookup)
	}
	client, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:        opts.Creds,
		Secure:       !opts.DisableSSL,
		Region:       opts.Region,
		BucketLookup: lookup,
		MaxRetries:   opts.MaxRetries,
		Transport:    transport(),
	})
	if err != nil {
		return nil, fmt.Errorf("--s3.endpoint %q: %w", opts.Endpoint, err)
	}
	scheme := "https"
	if opts.DisableSSL {
		scheme = "http"
	}
	s := &Store{
		opts:     opts,
		client:   client,
		name:     fmt.Sprintf("s3://%s/%s at %s://%s", opts.Bucket, strings.Trim(opts.Prefix, "/"), scheme, opts.Endpoint),
		log:      opts.Logger,
		touching: make(chan struct{}, 8),
		healthy:  true,
		since:    time.Now(),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if p := strings.Trim(opts.Prefix, "/"); p != "" {
		s.prefix = p + "/"
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	go s.probe()
	return s, nil
}

func transport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 256
	t.ResponseHeaderTimeout = time.Minute
	return t
}

// check asks for the bucket and explains a failure by the setting at fault.
func (s *Store) check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.opts.Bucket)
	if err == nil && !ok {
		return fmt.Errorf("--s3.bucket %q does not exist at %s (create it, or give an existing bucket)", s.opts.Bucket, s.opts.Endpoint)
	}
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
		resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" ||
		strings.Contains(strings.ToLower(resp.Message), "access key"):
		return fmt.Errorf("S3 at %s refused the credentials for bucket %q (check --s3.auth_method and its keys: --s3.access_key_id/--s3.secret_access_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --s3.aws_shared_credentials_file): %v", s.opts.Endpoint, s.opts.Bucket, err)
	case resp.StatusCode != 0:
		return fmt.Errorf("S3 at %s (--s3.endpoint) answered %d for bucket %q (--s3.bucket): %v", s.opts.Endpoint, resp.StatusCode, s.opts.Bucket, err)
	}
	return fmt.Errorf("S3 endpoint %s (--s3.endpoint) unreachable: %v", s.opts.Endpoint, err)
}

// probe checks an unhealthy bucket every probeEvery until Close.
func (s *Store) probe() {
	defer close(s.done)
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.Health().Healthy {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeEvery)
		ok, err := s.client.BucketExists(ctx, s.opts.Bucket)
		cancel()
		if err == nil && !ok {
			err = fmt.Errorf("bucket %q does not exist", s.opts.Bucket)
		}
		s.note(context.Background(), err)
	}
}

// Close stops the health probe.
func (s *Store) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
		<-s.done
	}
	return nil
}

// Name says which bucket the store uses, for logs and /status.
func (s *Store) Name() string { return s.name }

// Health implements store.HealthReporter.
func (s *Store) Health() store.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return store.Health{Name: s.name, Healthy: s.healthy, Cause: s.cause, Since: s.since}
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == minio.NoSuchKey || r.StatusCode == http.StatusNotFound && r.Code != minio.NoSuchBucket
}

// note records the outcome of a call to S3 (nil and a missing object are
// successes) and returns err as the store reports it: ErrNotFound for a
// missing object, ErrUnavailable with the cause for a failure of S3.
func (s *Store) note(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // the caller gave up; says nothing about S3
	}
	if err == nil || isNotFound(err) {
		s.mu.Lock()
		if !s.healthy {
			s.healthy, s.cause, s.since = true, "", time.Now()
			s.log.Info("S3 tier recovered", "bucket", s.name)
		}
		s.mu.Unlock()
		if err != nil {
			return store.ErrNotFound
		}
		return nil
	}
	s.mu.Lock()
	s.lastFail = time.Now()
	if s.healthy {
		s.healthy, s.since = false, s.lastFail
		s.log.Warn("S3 tier degraded", "bucket", s.name, "err", err)
	}
	s.cause = err.Error()
	s.mu.Unlock()
	return fmt.Errorf("%w: S3 %s: %v", store.ErrUnavailable, s.name, err)
}

// down returns ErrUnavailable while the store failed less than failFast ago.
func (s *Store) down() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.healthy && time.Since(s.lastFail) < failFast {
		return fmt.Errorf("%w: S3 %s: %s", store.ErrUnavailable, s.name, s.cause)
	}
	return nil
}

// object is the object name of a checked key.
func (s *Store) object(k store.Key) string {
	ns := ""
	if k.Instance != "" || k.Function != repb.DigestFunction_SHA256 {
		h := sha256.New()
		fmt.Fprintf(h, "%d\x00%s", k.Function, k.Instance)
		ns = "ns/" + hex.EncodeToString(h.Sum(nil)[:16]) + "/"
	}
	return s.prefix + ns + k.Kind.String() + "/" + k.Hash
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key store.Key, offset int64) (io.ReadCloser, int64, error) {
	k, err := store.CheckKey(key)
	if err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if err := s.down(); err != nil {
		return nil, 0, err
	}
	name := s.object(k)
	info, err := s.client.StatObject(ctx, s.opts.Bucket, name, minio.StatObjectOptions{})
	if err := s.note(ctx, err); err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", k, err)
	}
	if offset < 0 || offset > info.Size {
		return nil, 0, fmt.Errorf("get %s at offset %d of %d bytes: %w", k, offset, info.Size, store.ErrOutOfRange)
	}
	s.refresh(name, info)
	if offset == info.Size {
		return io.NopCloser(bytes.NewReader(nil)), info.Size, nil
	}
	var o minio.GetObjectOptions
	if offset > 0 {
		o.SetRange(offset, 0)
	}
	// The ETag pins the version just checked: a concurrent rewrite (same
	// content for CAS) makes the read fail rather than mix versions.
	o.SetMatchETag(info.ETag)
	obj, err := s.client.GetObject(ctx, s.opts.Bucket, name, o)
	if err := s.note(ctx, err); err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", k, err)
	}
	return &reader{obj: obj, s: s, ctx: ctx}, info.Size, nil
}

// Size returns the size of key's value, ignoring key.Size (for the HTTP
// cache protocol, which names blobs by hash alone).
func (s *Store) Size(ctx context.Context, key store.Key) (int64, error) {
	k, err := store.CheckKey(key)
	if err != nil {
		return 0, err
	}
	if err := s.down(); err != nil {
		return 0, err
	}
	info, err := s.client.StatObject(ctx, s.opts.Bucket, s.object(k), minio.StatObjectOptions{})
	if err := s.note(ctx, err); err != nil {
		return 0, fmt.Errorf("size of %s: %w", k, err)
	}
	return info.Size, nil
}

// reader reports a failure of S3 during a read as the store does.
type reader struct {
	obj *minio.Object
	s   *Store
	ctx context.Context
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.note(r.ctx, err)
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: object removed during the read", store.ErrNotFound)
		}
	}
	return n, err
}

func (r *reader) Close() error { return r.obj.Close() }

// refresh copies an old object onto itself in the background, when asked
// to (Options.UpdateTimestamps), so that its modification time is recent
// again; refreshes beyond a few at a time are skipped.
func (s *Store) refresh(name string, info minio.ObjectInfo) {
	if !s.opts.UpdateTimestamps || time.Since(info.LastModified) < s.opts.RefreshAfter {
		return
	}
	select {
	case s.touching <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-s.touching }()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := s.client.CopyObject(ctx,
			minio.CopyDestOptions{Bucket: s.opts.Bucket, Object: name, ReplaceMetadata: true,
				UserMetadata: map[string]string{"Ferrule-Used": time.Now().UTC().Format(time.RFC3339)}},
			minio.CopySrcOptions{Bucket: s.opts.Bucket, Object: name, MatchETag: info.ETag})
		if err != nil && !isNotFound(err) {
			s.log.Debug("S3 timestamp refresh failed", "object", name, "err", err)
		}
	}()
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key store.Key, size int64, r io.Reader) error {
	k, err := store.CheckKey(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	body, closeBody, err := s.stage(r, size)
	if err != nil {
		return fmt.Errorf("put %s: %w", k, err)
	}
	defer closeBody()
	if err := s.down(); err != nil {
		return fmt.Errorf("put %s: %w", k, err)
	}
	_, err = s.client.PutObject(ctx, s.opts.Bucket, s.object(k), body, size,
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: size <= 64<<20})
	if err := s.note(ctx, err); err != nil {
		if errors.Is(err, store.ErrNotFound) { // the bucket answered 404
			err = fmt.Errorf("%w: bucket %s answered not found", store.ErrUnavailable, s.opts.Bucket)
		}
		return fmt.Errorf("put %s: %w", k, err)
	}
	return nil
}

// stage reads exactly size bytes of r into memory or a temporary file, so
// that the upload starts only once r has ended cleanly.
func (s *Store) stage(r io.Reader, size int64) (io.ReadSeeker, func(), error) {
	if size < 0 {
		return nil, nil, fmt.Errorf("%w: negative size %d", store.ErrSizeMismatch, size)
	}
	if size <= s.opts.StageInMemory {
		var buf bytes.Buffer
		buf.Grow(int(size))
		if err := store.ReadExactly(&buf, r, size, nil); err != nil {
			return nil, nil, err
		}
		return bytes.NewReader(buf.Bytes()), func() {}, nil
	}
	f, err := os.CreateTemp(s.opts.TempDir, "ferrule-s3-*")
	if err != nil {
		return nil, nil, err
	}
	os.Remove(f.Name()) // unnamed: nothing to clean up after a crash
	if err := store.ReadExactly(f, r, size, nil); err != nil {
		f.Close()
		return nil, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// DefaultFindParallel is how many objects FindMissing asks about at once.
const DefaultFindParallel = 32

// FindMissing implements store.Store: one HEAD request per key, a few at
// a time.
func (s *Store) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	checked := make([]store.Key, len(keys))
	for i, key := range keys {
		k, err := store.CheckKey(key)
		if err != nil {
			return nil, fmt.Errorf("find missing: %w", err)
		}
		checked[i] = k
	}
	if err := s.down(); err != nil {
		return nil, err
	}
	missing := make([]bool, len(checked))
	errs := make([]error, len(checked))
	sem := make(chan struct{}, s.opts.FindParallel)
	var wg sync.WaitGroup
	for i, k := range checked {
		if store.IsEmpty(k) {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			name := s.object(k)
			info, err := s.client.StatObject(ctx, s.opts.Bucket, name, minio.StatObjectOptions{})
			switch err := s.note(ctx, err); {
			case errors.Is(err, store.ErrNotFound):
				missing[i] = true
			case err != nil:
				errs[i] = err
			default:
				s.refresh(name, info)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("find missing: %w", err) // one cause is enough
		}
	}
	var out []store.Key
	for i, k := range keys {
		if missing[i] {
			out = append(out, k)
		}
	}
	return out, nil
}
