// Package server wires Ferrule's REAPI services onto one gRPC server (CAS,
// ByteStream, ActionCache, Capabilities, the Build Event Service, the
// standard health service and optionally reflection) and one HTTP server
// (Bazel's HTTP cache protocol, Prometheus /metrics, a /status JSON and the
// web page of package web), over one store. `ferrule serve`
// and the tests share it; an execution service registers itself with
// RegisterExecution before Serve.
//
// Every service and the execution engine use one store, the backend under
// a stack of decorators that add one concern each (see Stack):
//
//	store.Metrics      counts calls, bytes and errors per kind
//	store.Complete     AC reads: NOT_FOUND unless every referenced blob is present
//	store.ACCache      recently used AC entries in memory
//	store.Verifying    CAS writes: hashed, nothing stored on a mismatch
//	chunked.Store      blobs spliced from chunks (split and splice calls)
//	tiered.Store       optional: the backend in front of a shared S3 bucket
//	                   (read-through, write-through; FindMissing, and so
//	                   Complete, consult the bucket for what is not local)
//	backend            disk (LRU-bounded, optionally zstd at rest) or memory
//
// Services translate their protocol onto that store and nothing else; who
// may call what is decided before them, by package auth's gRPC
// interceptors and HTTP middleware, over TLS from package certs when set. A
// Config.Store that is (or wraps) a prometheus.Collector has its metrics on
// /metrics, and one that reports store.Health has it in /status (the S3
// tier: healthy, or degraded with the cause).
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/auth"
	"github.com/ferrule-build/ferrule/remote/bes"
	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/capabilities"
	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/certs"
	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/execution"
	"github.com/ferrule-build/ferrule/remote/grpcbuf"
	"github.com/ferrule-build/ferrule/remote/httpcache"
	"github.com/ferrule-build/ferrule/remote/split"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/chunked"
	"github.com/ferrule-build/ferrule/remote/web"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Server.
type Config struct {
	// GRPCAddress is the gRPC listen address, e.g. "localhost:9092".
	GRPCAddress string
	// HTTPAddress is the HTTP listen address (HTTP cache, /metrics,
	// /status); empty disables HTTP.
	HTTPAddress string
	// Store holds CAS blobs and action results. Required.
	Store store.Store
	// StoreDescription says what the store is, for logs and /status.
	StoreDescription string
	// MaxBatchBytes limits batch calls (max_batch_total_size_bytes); the
	// gRPC receive limit is set above it.
	MaxBatchBytes int64
	// ReadOnly refuses every write, whoever asks: CAS and action cache
	// writes over gRPC and HTTP, Execute, the worker stream and build
	// events (see package auth).
	ReadOnly bool
	// TLS, with a certificate and key, serves gRPC and HTTP over TLS; with
	// a CA as well, client certificates are verified against it (mTLS).
	TLS certs.Files
	// Auth says where credentials come from; New fills in ReadOnly,
	// ClientCertificates (from TLS.CA), the registry and the logger. With
	// no credential source everyone may do everything but what ReadOnly
	// refuses.
	Auth auth.Config
	// Reflection registers the gRPC reflection service.
	Reflection bool
	// UploadIdleTimeout bounds how long an interrupted ByteStream upload
	// waits to be resumed.
	UploadIdleTimeout time.Duration
	// Uploads caps the uploads (ByteStream writes and HTTP PUTs) open at
	// once, in all and per client; zero values select the defaults.
	Uploads clientlimit.Limits
	// HTTPBodyTimeout drops an HTTP PUT whose body sends nothing for this
	// long; 0 means httpcache.DefaultBodyTimeout.
	HTTPBodyTimeout time.Duration
	// ACCacheBytes bounds the memory that keeps recently used action cache
	// entries above Store (see store.ACCache and Stack); 0 means
	// DefaultACCacheBytes, negative turns the cache off.
	ACCacheBytes int64
	// Chunking sets the parameters of the split and splice calls.
	Chunking split.Options
	// ShutdownTimeout bounds the graceful part of shutdown.
	ShutdownTimeout time.Duration
	// BES bounds what the Build Event Service keeps of invocations.
	BES bes.Limits
	// SampleInterval is how often the web page's plots sample the metrics
	// (10s, kept for 24 hours).
	SampleInterval time.Duration
	// Version is reported by /status.
	Version string
	Logger  *slog.Logger
}

// DefaultACCacheBytes is the default of Config.ACCacheBytes: room for some
// tens of thousands of typical ActionResults.
const DefaultACCacheBytes = 16 << 20

// Server is a configured, not yet listening, REAPI server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	store   store.Store // cfg.Store with the action cache entry cache and metrics
	started time.Time

	grpc   *grpc.Server
	health *health.Server
	http   *http.Server

	// The services, exposed so that callers can inspect or extend them.
	CAS          *cas.Server
	ByteStream   *bytestream.Server
	ActionCache  *ac.Server
	Capabilities *capabilities.Server
	HTTPCache    *httpcache.Handler
	Uploads      *clientlimit.Limiter // admits ByteStream writes and HTTP PUTs
	BES          *bes.Store           // the invocations published to the Build Event Service
	Web          *web.Handler
	Sampler      *web.Sampler

	mu       sync.Mutex
	grpcLis  net.Listener
	httpLis  net.Listener
	services []string
}

// RecvLimit is the gRPC receive limit for a batch limit: the largest
// message any legal request needs. A batch's blobs take up to maxBatch
// bytes and their digests and framing up to 1 MiB more (over 10,000 blobs);
// clients keep other requests (FindMissingBlobs, ByteStream chunks: Bazel
// sends 16 KiB, Ferrule's own clients 64 or 256 KiB) under gRPC's default
// 4 MiB. It is also what one stream stalled in the middle of a message
// can make the server hold: grpc-go grants a message's declared length
// as flow control window once the handler asks for it.
func RecvLimit(maxBatch int64) int {
	return int(max(maxBatch, 4<<20) + 1<<20)
}

// UploadOverheadBytes is what one upload holds besides a gRPC message
// being received: the disk store's write buffers while it waits for data
// (up to a 256 KiB chunk of a compressed value and a 32 KiB file buffer)
// and the stream, its goroutines and the pipe between them (128 KiB). A
// memory store's Puts are counted against its own bound.
const UploadOverheadBytes = (256 + 32 + 128) << 10

// UploadMemory is the bound on what uploads hold in memory that the caps
// imply, in /status.
type UploadMemory struct {
	// MaxOpen is max_open_uploads; MaxParked the interrupted ByteStream
	// uploads kept for resumption.
	MaxOpen   int `json:"max_open_uploads"`
	MaxParked int `json:"max_parked_uploads"`
	// RecvLimitBytes is the gRPC receive limit (see RecvLimit).
	RecvLimitBytes int64 `json:"grpc_receive_limit_bytes"`
	// PerUploadBytes is what one open upload may hold: a message being
	// received and UploadOverheadBytes. A parked one holds the overhead.
	PerUploadBytes int64 `json:"per_upload_bytes"`
	// BoundBytes is MaxOpen*PerUploadBytes + MaxParked*UploadOverheadBytes.
	BoundBytes int64 `json:"bound_bytes"`
}

func uploadMemory(maxOpen, maxParked int, maxBatch int64) UploadMemory {
	m := UploadMemory{MaxOpen: maxOpen, MaxParked: maxParked, RecvLimitBytes: int64(RecvLimit(maxBatch))}
	m.PerUploadBytes = m.RecvLimitBytes + UploadOverheadBytes
	m.BoundBytes = int64(maxOpen)*m.PerUploadBytes + int64(maxParked)*UploadOverheadBytes
	return m
}

// New builds a server from cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: no store")
	}
	if cfg.GRPCAddress == "" {
		return nil, errors.New("server: no gRPC address")
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = cas.DefaultMaxBatchBytes
	}
	if cfg.MaxBatchBytes > 1<<30 {
		return nil, fmt.Errorf("server: batch limit %d is over 1 GiB", cfg.MaxBatchBytes)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), started: time.Now()}
	if c, ok := collectorOf(cfg.Store); ok {
		if err := s.metrics.reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: store metrics: %w", err)
		}
	}
	chunks := chunked.New(cfg.Store, chunked.Options{})
	st, err := Stack(chunks, cfg.ACCacheBytes, s.metrics.reg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.store = st
	s.Uploads, err = clientlimit.New(clientlimit.Uploads, cfg.Uploads, s.metrics.reg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}

	cfg.Auth.ReadOnly = cfg.ReadOnly
	cfg.Auth.ClientCertificates = cfg.TLS.CA != ""
	cfg.Auth.Registerer, cfg.Auth.Logger = s.metrics.reg, cfg.Logger
	policy, err := auth.New(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var httpTLS *tls.Config
	var creds []grpc.ServerOption
	switch {
	case cfg.TLS.Cert != "" || cfg.TLS.Key != "":
		rl, err := certs.Load(cfg.TLS, cfg.Logger)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		clientAuth := tls.VerifyClientCertIfGiven
		if policy.ClientCertificatesRequired() {
			clientAuth = tls.RequireAndVerifyClientCert
		}
		creds = append(creds, grpc.Creds(rl.GRPC(clientAuth)))
		httpTLS = rl.Config(clientAuth, "http/1.1")
	case cfg.TLS.CA != "":
		return nil, errors.New("server: a client CA (--tls_ca_file) needs TLS (--tls_cert_file and --tls_key_file)")
	}

	s.grpc = grpc.NewServer(append(creds,
		experimental.BufferPool(grpcbuf.Default),
		grpc.ForceServerCodecV2(grpcbuf.Codec{}),
		grpc.MaxRecvMsgSize(RecvLimit(cfg.MaxBatchBytes)),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    2 * time.Minute,
			Timeout: 20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.StatsHandler(grpcStats{s.metrics}),
		grpc.ChainUnaryInterceptor(s.recoverUnary, policy.UnaryInterceptor),
		grpc.ChainStreamInterceptor(s.recoverStream, policy.StreamInterceptor),
	)...)
	s.CAS = cas.New(st, cas.Options{MaxBatchBytes: cfg.MaxBatchBytes, Logger: cfg.Logger})
	s.ByteStream = bytestream.New(st, bytestream.Options{IdleTimeout: cfg.UploadIdleTimeout, Uploads: s.Uploads, Logger: cfg.Logger})
	s.ActionCache = ac.New(st, ac.Options{ReadOnly: cfg.ReadOnly, Logger: cfg.Logger})
	sp, err := split.New(s.CAS, chunks, cfg.Chunking)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.Capabilities = capabilities.New(capabilities.Options{MaxBatchBytes: cfg.MaxBatchBytes, UpdateEnabled: !cfg.ReadOnly, Chunking: sp,
		MayUpdate: func(ctx context.Context) bool { return auth.Holds(ctx, auth.WriteAC) }})
	sp.Register(s.grpc)
	s.ByteStream.Register(s.grpc)
	s.ActionCache.Register(s.grpc)
	s.Capabilities.Register(s.grpc)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if cfg.Reflection {
		reflection.Register(s.grpc)
	}
	s.BES = bes.NewStore(cfg.BES)
	bes.New(s.BES, bes.Options{ReadOnly: cfg.ReadOnly, Logger: cfg.Logger}).Register(s.grpc)
	s.services = []string{
		bes.ServiceName,
		repb.ContentAddressableStorage_ServiceDesc.ServiceName,
		"google.bytestream.ByteStream",
		repb.ActionCache_ServiceDesc.ServiceName,
		repb.Capabilities_ServiceDesc.ServiceName,
	}

	if cfg.HTTPAddress != "" {
		s.HTTPCache = httpcache.New(st, httpcache.Options{ReadOnly: cfg.ReadOnly, Uploads: s.Uploads, BodyTimeout: cfg.HTTPBodyTimeout, Logger: cfg.Logger})
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /status", s.serveStatus)
		s.Sampler = web.NewSampler(s.metrics.reg, cfg.SampleInterval, 24*time.Hour)
		s.Web = web.New(web.Options{Store: s.BES, Sampler: s.Sampler, ReadOnly: cfg.ReadOnly, Logger: cfg.Logger})
		s.Web.Mount(mux)
		mux.Handle("/", s.countHTTP(s.HTTPCache))
		s.http = &http.Server{
			Handler:           policy.HTTP(mux),
			TLSConfig:         httpTLS,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		}
	}
	return s, nil
}

// Stack builds the store the services share from a backend (New passes
// the chunked store over Config.Store), outermost
// first: Metrics (registered on reg), Complete, ACCache (acCacheBytes; 0
// means DefaultACCacheBytes, negative leaves it out) and Verifying.
// Complete sits above the entry cache so that a cached result is checked
// again on every read; Verifying sits below the cache so that nothing it
// refuses reaches either.
func Stack(backend store.Store, acCacheBytes int64, reg prometheus.Registerer) (store.Store, error) {
	st := store.Verifying(backend)
	if acCacheBytes >= 0 {
		if acCacheBytes == 0 {
			acCacheBytes = DefaultACCacheBytes
		}
		st = store.ACCache(st, acCacheBytes)
	}
	st = store.Complete(st)
	st, err := store.Metrics(st, reg)
	if err != nil {
		return nil, fmt.Errorf("store metrics: %w", err)
	}
	return st, nil
}

// collectorOf returns the first store of s's chain (through Unwrap) that
// is a prometheus.Collector.
func collectorOf(s store.Store) (prometheus.Collector, bool) {
	for s != nil {
		if c, ok := s.(prometheus.Collector); ok {
			return c, true
		}
		u, ok := s.(store.Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return nil, false
}

// recoverUnary turns a panic in a handler into an INTERNAL status, so that
// one bad request cannot take the server down.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
		}
	}()
	return h(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
		}
	}()
	return h(srv, ss)
}

// Store returns the store the services use (Config.Store under the
// decorators Stack adds), for services registered later, such as
// execution, to share it.
func (s *Server) Store() store.Store { return s.store }

// Registerer is where services registered later (execution) add their
// metrics, served on /metrics.
func (s *Server) Registerer() prometheus.Registerer { return s.metrics.reg }

// Logger returns the server's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// GRPC returns the gRPC server, for registering more services before Serve.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// RegisterExecution registers an Execution service and advertises caps as
// the execution capabilities. Call it before Serve.
func (s *Server) RegisterExecution(exec repb.ExecutionServer, caps *repb.ExecutionCapabilities) {
	repb.RegisterExecutionServer(s.grpc, exec)
	s.Capabilities.SetExecution(caps)
	if sn, ok := exec.(interface{ Snapshot() execution.Snapshot }); ok && s.Web != nil {
		s.Web.SetExecution(sn.Snapshot)
	}
	s.mu.Lock()
	s.services = append(s.services, repb.Execution_ServiceDesc.ServiceName)
	s.mu.Unlock()
}

// Listen binds the listeners (Serve calls it if needed). After it, GRPCAddr
// and HTTPAddr report the bound addresses, which matters for port 0.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grpcLis != nil {
		return nil
	}
	gl, err := net.Listen("tcp", s.cfg.GRPCAddress)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	if s.http != nil {
		hl, err := net.Listen("tcp", s.cfg.HTTPAddress)
		if err != nil {
			gl.Close()
			return fmt.Errorf("HTTP listener: %w", err)
		}
		s.httpLis = hl
	}
	s.grpcLis = gl
	return nil
}

// GRPCAddr is the bound gRPC address, or nil before Listen.
func (s *Server) GRPCAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grpcLis == nil {
		return nil
	}
	return s.grpcLis.Addr()
}

// HTTPAddr is the bound HTTP address, or nil before Listen or without HTTP.
func (s *Server) HTTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpLis == nil {
		return nil
	}
	return s.httpLis.Addr()
}

// Serve serves until ctx is done, then shuts down gracefully: the health
// service reports NOT_SERVING, running calls get ShutdownTimeout to finish,
// unfinished uploads are dropped (nothing partial is stored). It returns
// nil after a shutdown asked for by ctx.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	for _, name := range s.services {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.mu.Unlock()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	errc := make(chan error, 2)
	go func() {
		if err := s.grpc.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("gRPC: %w", err)
		}
	}()
	if s.http != nil {
		go s.Sampler.Run(ctx)
		go func() {
			serve := s.http.Serve
			if s.http.TLSConfig != nil {
				serve = func(l net.Listener) error { return s.http.ServeTLS(l, "", "") }
			}
			if err := serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("HTTP: %w", err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.shutdown()
	return err
}

func (s *Server) shutdown() {
	s.log.Info("shutting down")
	s.health.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			s.http.Close()
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("calls still running after the shutdown timeout; stopping them")
		s.grpc.Stop()
		<-done
	}
	s.ByteStream.Close()
}

// StoreStats is the store part of /status.
type StoreStats struct {
	Entries      int64 `json:"entries"`
	Bytes        int64 `json:"bytes"`
	MaxBytes     int64 `json:"max_bytes"`
	Evictions    int64 `json:"evictions"`
	EvictedBytes int64 `json:"evicted_bytes"`
}

// Status is the /status document.
type Status struct {
	Version          string     `json:"version,omitempty"`
	GRPCAddress      string     `json:"grpc_address"`
	HTTPAddress      string     `json:"http_address,omitempty"`
	Store            string     `json:"store"`
	StoreStats       StoreStats `json:"store_stats"`
	MaxBatchBytes    int64      `json:"max_batch_total_size_bytes"`
	ReadOnly         bool       `json:"read_only"`
	Services         []string   `json:"services"`
	UptimeSeconds    int64      `json:"uptime_seconds"`
	Goroutines       int        `json:"goroutines"`
	HeapAllocBytes   uint64     `json:"heap_alloc_bytes"`
	ExecutionEnabled bool       `json:"execution_enabled"`
	// UploadMemory bounds what uploads hold in memory.
	UploadMemory UploadMemory `json:"upload_memory"`
	// SharedTier is the S3 tier's health, when there is one.
	SharedTier *store.Health `json:"shared_tier,omitempty"`
}

func (s *Server) status() Status {
	st := Status{
		Version:       s.cfg.Version,
		Store:         s.cfg.StoreDescription,
		MaxBatchBytes: s.cfg.MaxBatchBytes,
		ReadOnly:      s.cfg.ReadOnly,
		UptimeSeconds: int64(time.Since(s.started).Seconds()),
		Goroutines:    runtime.NumGoroutine(),
		UploadMemory:  uploadMemory(s.Uploads.Limits().MaxOpen, bytestream.DefaultMaxParked, s.cfg.MaxBatchBytes),
	}
	if a := s.GRPCAddr(); a != nil {
		st.GRPCAddress = a.String()
	}
	if a := s.HTTPAddr(); a != nil {
		st.HTTPAddress = a.String()
	}
	if ss, ok := store.StatsOf(s.cfg.Store); ok {
		st.StoreStats = StoreStats{Entries: ss.Entries, Bytes: ss.Bytes, MaxBytes: ss.MaxBytes, Evictions: ss.Evictions, EvictedBytes: ss.EvictedBytes}
	}
	if h, ok := store.HealthOf(s.cfg.Store); ok {
		st.SharedTier = &h
	}
	s.mu.Lock()
	st.Services = append([]string(nil), s.services...)
	s.mu.Unlock()
	for _, name := range st.Services {
		if name == repb.Execution_ServiceDesc.ServiceName {
			st.ExecutionEnabled = true
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapAllocBytes = ms.HeapAlloc
	return st
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.status())
}

// countHTTP counts HTTP cache requests and bytes.
func (s *Server) countHTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		kind := httpKind(r.URL.Path)
		s.metrics.http.WithLabelValues(r.Method, kind, strconv.Itoa(cw.code)).Inc()
		if r.Method == http.MethodPut && cw.code == http.StatusOK && r.ContentLength > 0 {
			s.metrics.httpIn.WithLabelValues(kind).Add(float64(r.ContentLength))
		}
		s.metrics.httpOut.WithLabelValues(kind).Add(float64(cw.n))
	})
}

type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines of PUT bodies).
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}
