// Package bytestream implements the google.bytestream.ByteStream service for
// REAPI blobs on a store.Store: Read (with offsets, limits and zstd), Write
// (verified by the store's Verifying decorator, resumable, zstd) and
// QueryWriteStatus. Resource names are parsed by package resource.
package bytestream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/rpcstatus"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
)

// ChunkSize is the size of the data messages Read sends: a little under
// 256 KiB, so that a marshalled ReadResponse fits a 256 KiB buffer of the
// server's buffer pool instead of taking (and zeroing) a 1 MiB one.
const ChunkSize = 256<<10 - 64

// DefaultIdleTimeout is how long an interrupted upload waits for its client
// to resume it (QueryWriteStatus, then Write from the committed offset)
// before it is dropped.
const DefaultIdleTimeout = time.Minute

// DefaultMaxParked bounds the interrupted uploads kept for resumption.
const DefaultMaxParked = 1000

// Options configure a Server. Zero values select defaults.
type Options struct {
	// IdleTimeout bounds how long an interrupted upload is kept for
	// resumption.
	IdleTimeout time.Duration
	// MaxParked bounds how many interrupted uploads are kept at once (each
	// holds a goroutine and the store's temporary file); past it, an
	// interrupted upload is dropped at once.
	MaxParked int
	// Uploads, if set, admits each Write stream before its first message
	// is read (RESOURCE_EXHAUSTED past its caps) and counts it until it
	// ends. Parked uploads are bounded by MaxParked instead, so that a
	// resuming stream needs only its own admission.
	Uploads *clientlimit.Limiter
	Logger  *slog.Logger
}

// Server is the ByteStream service.
type Server struct {
	bspb.UnimplementedByteStreamServer

	store     store.Store
	idle      time.Duration
	maxParked int
	limiter   *clientlimit.Limiter
	log       *slog.Logger

	mu      sync.Mutex
	uploads map[string]*upload // by resource name without metadata
	parked  int                // uploads in the map with no stream
	closed  bool
}

// New returns a ByteStream service over s.
func New(s store.Store, o Options) *Server {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxParked <= 0 {
		o.MaxParked = DefaultMaxParked
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Server{store: store.WithVerification(s), idle: o.IdleTimeout, maxParked: o.MaxParked, limiter: o.Uploads, log: o.Logger, uploads: map[string]*upload{}}
}

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) {
	bspb.RegisterByteStreamServer(g, s)
}

// Close abandons every unfinished upload; nothing of them is stored.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for name, u := range s.uploads {
		u.abort(errShutdown)
		delete(s.uploads, name)
	}
	s.parked = 0
}

var (
	errShutdown  = errors.New("server shutting down")
	errAbandoned = errors.New("upload abandoned by its client")
	errRestarted = errors.New("upload restarted from offset 0")
)

// Read streams a blob, or its zstd compression, from read_offset
// (uncompressed bytes) for at most read_limit bytes (uncompressed reads
// only).
func (s *Server) Read(req *bspb.ReadRequest, stream bspb.ByteStream_ReadServer) error {
	ctx := stream.Context()
	r, err := resource.ParseRead(req.ResourceName)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	k := r.Key
	switch {
	case req.ReadOffset < 0:
		return status.Errorf(codes.OutOfRange, "negative read_offset %d", req.ReadOffset)
	case req.ReadLimit < 0:
		return status.Errorf(codes.OutOfRange, "negative read_limit %d", req.ReadLimit)
	case req.ReadOffset > k.Size:
		return status.Errorf(codes.OutOfRange, "read_offset %d beyond the blob's %d bytes", req.ReadOffset, k.Size)
	case r.Compressed && req.ReadLimit != 0:
		return status.Error(codes.InvalidArgument, "read_limit must be 0 when reading compressed-blobs")
	}

	if r.Compressed && req.ReadOffset == 0 && !store.IsEmpty(k) {
		// A store that keeps the blob zstd-compressed hands out its frames
		// (checked as they are read): send them as they are instead of
		// compressing the blob again.
		rc, size, err := store.GetCompressed(ctx, s.store, k)
		switch {
		case err == nil:
			defer rc.Close()
			if size != k.Size {
				return status.Errorf(codes.Internal, "stored blob %s has %d bytes, want %d", k, size, k.Size)
			}
			return sendAll(ctx, k, stream, rc)
		case errors.Is(err, store.ErrNotFound):
			return status.Errorf(codes.NotFound, "blob %s/%d not found", k.Hash, k.Size)
		case !errors.Is(err, store.ErrNotCompressed):
			return rpcstatus.Error(err)
		}
	}

	var src io.Reader
	if store.IsEmpty(k) {
		src = eofReader{}
	} else {
		rc, size, err := s.store.Get(ctx, k, req.ReadOffset)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return status.Errorf(codes.NotFound, "blob %s/%d not found", k.Hash, k.Size)
			}
			return rpcstatus.Error(err)
		}
		defer rc.Close()
		if size != k.Size {
			return status.Errorf(codes.Internal, "stored blob %s has %d bytes, want %d", k, size, k.Size)
		}
		src = rc
	}
	n := k.Size - req.ReadOffset
	if req.ReadLimit > 0 && req.ReadLimit < n {
		n = req.ReadLimit
	}
	src = io.LimitReader(src, n)

	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	w := &chunkSender{stream: stream, buf: (*bufp)[:0]}
	if r.Compressed {
		z := zstdcodec.NewCompressor(w)
		if _, err := io.Copy(z, src); err != nil {
			z.Close()
			return readErr(ctx, k, err)
		}
		if err := z.Close(); err != nil {
			return readErr(ctx, k, err)
		}
	} else {
		// Read straight into the message buffer: no intermediate copy.
		buf := *bufp
		for sent := int64(0); sent < n; {
			m, err := io.ReadFull(src, buf[:min(int64(len(buf)), n-sent)])
			if err != nil {
				if err == io.ErrUnexpectedEOF || err == io.EOF {
					return status.Errorf(codes.Internal, "blob %s: stored value ended after %d of %d bytes", k, sent+int64(m), n)
				}
				return readErr(ctx, k, err)
			}
			if err := stream.Send(&bspb.ReadResponse{Data: buf[:m]}); err != nil {
				return readErr(ctx, k, err)
			}
			sent += int64(m)
		}
		return nil
	}
	return readErr(ctx, k, w.flush())
}

// sendAll sends everything src yields in messages of at most ChunkSize
// bytes, reading straight into the message buffer.
func sendAll(ctx context.Context, k store.Key, stream bspb.ByteStream_ReadServer, src io.Reader) error {
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	buf := *bufp
	for {
		m, err := io.ReadFull(src, buf)
		if m > 0 {
			if err := stream.Send(&bspb.ReadResponse{Data: buf[:m]}); err != nil {
				return readErr(ctx, k, err)
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return readErr(ctx, k, err)
		}
	}
}

func readErr(ctx context.Context, k store.Key, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if ctx.Err() != nil {
		return rpcstatus.Error(ctx.Err())
	}
	return status.Errorf(codes.Internal, "reading %s: %v", k, err)
}

// chunkPool holds ChunkSize buffers for Read. Send serializes a message
// before it returns, so a buffer can be reused right after.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, ChunkSize)
	return &b
}}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// chunkSender turns writes into ReadResponses of at most ChunkSize bytes.
type chunkSender struct {
	stream bspb.ByteStream_ReadServer
	buf    []byte
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		m := min(len(p), ChunkSize-len(c.buf))
		c.buf = append(c.buf, p[:m]...)
		p = p[m:]
		n += m
		if len(c.buf) == ChunkSize {
			if err := c.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.stream.Send(&bspb.ReadResponse{Data: c.buf})
	c.buf = c.buf[:0] // Send has serialized the message
	return err
}

// upload is one resumable write: its bytes go through a pipe into a
// store.Put running in its own goroutine, so that it survives the stream
// that started it and a later stream can continue it.
type upload struct {
	res       resource.Name
	pw        *io.PipeWriter
	committed atomic.Int64 // bytes received on the wire (compressed bytes for zstd)
	done      chan struct{}
	err       error // result of the Put, valid after done is closed
	active    bool  // a stream is writing; guarded by Server.mu
	timer     *time.Timer
}

func (u *upload) abort(err error) {
	if u.timer != nil {
		u.timer.Stop()
	}
	u.pw.CloseWithError(err)
}

func (s *Server) startUpload(res resource.Name) *upload {
	pr, pw := io.Pipe()
	u := &upload{res: res, pw: pw, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		defer func() {
			// A store that panics must not take the server down.
			if p := recover(); p != nil {
				u.err = fmt.Errorf("store panicked storing %s: %v", res.Key, p)
				s.log.Error("upload panicked", "key", res.Key.String(), "panic", p)
				pr.CloseWithError(u.err)
			}
		}()
		var src io.Reader = pr
		if res.Compressed {
			z, err := zstdcodec.NewDecompressor(pr)
			if err != nil {
				u.err = err
				pr.CloseWithError(err)
				return
			}
			defer z.Close()
			src = z
		}
		// The store verifies the content against the key (Verifying).
		err := s.store.Put(context.Background(), res.Key, res.Key.Size, src)
		if err == nil {
			// The whole blob was read; anything more the client sends is
			// an error the stream reports.
			pr.CloseWithError(errors.New("blob already complete"))
		} else {
			pr.CloseWithError(err)
		}
		u.err = err
	}()
	return u
}

// claim finds or creates the upload for res, starting at offset, and marks
// it active. It fails if another stream is writing it or offset does not
// continue it.
func (s *Server) claim(res resource.Name, offset int64) (*upload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "server shutting down")
	}
	u := s.uploads[res.Base]
	if u != nil {
		if u.active {
			return nil, status.Errorf(codes.Aborted, "another stream is writing %s", res.Base)
		}
		switch {
		case offset == u.committed.Load():
			if u.timer != nil {
				u.timer.Stop()
			}
			u.active = true
			s.parked--
			return u, nil
		case offset == 0:
			u.abort(errRestarted)
			delete(s.uploads, res.Base)
			s.parked--
		default:
			return nil, status.Errorf(codes.InvalidArgument, "write_offset %d does not continue %s, committed at %d", offset, res.Base, u.committed.Load())
		}
	} else if offset != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "write_offset %d for %s, which has no upload in progress (start at 0)", offset, res.Base)
	}
	u = s.startUpload(res)
	u.active = true
	s.uploads[res.Base] = u
	return u, nil
}

// park keeps an interrupted upload for resumption until the idle timeout.
func (s *Server) park(u *upload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.active = false
	if s.uploads[u.res.Base] != u || s.parked >= s.maxParked {
		if s.uploads[u.res.Base] == u {
			delete(s.uploads, u.res.Base)
		}
		u.abort(errAbandoned)
		return
	}
	s.parked++
	u.timer = time.AfterFunc(s.idle, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.uploads[u.res.Base] == u && !u.active {
			delete(s.uploads, u.res.Base)
			s.parked--
			u.abort(errAbandoned)
		}
	})
}

// drop forgets u and aborts it if it has not finished.
func (s *Server) drop(u *upload, err error) {
	s.mu.Lock()
	if s.uploads[u.res.Base] == u {
		delete(s.uploads, u.res.Base)
	}
	s.mu.Unlock()
	u.abort(err)
}

// exists reports whether the blob k is stored; the check counts as a use.
func (s *Server) exists(ctx context.Context, k store.Key) bool {
	if store.IsEmpty(k) {
		return true
	}
	missing, err := s.store.FindMissing(ctx, []store.Key{k})
	return err == nil && len(missing) == 0
}

// Write stores a blob sent in chunks, verified against the digest in its
// resource name after decompression. Nothing is visible until the whole
// blob has been received and verified. A client that disconnects can resume
// from QueryWriteStatus's committed_size within the idle timeout.
func (s *Server) Write(stream bspb.ByteStream_WriteServer) error {
	ctx := stream.Context()
	// Admitted before a message is read: a message being received is
	// memory held for the stream.
	if s.limiter != nil {
		release, err := s.limiter.Acquire(ctx, clientlimit.GRPCClient(ctx))
		if err != nil {
			return err
		}
		defer release()
	}
	req, err := stream.Recv()
	if err == io.EOF {
		return status.Error(codes.InvalidArgument, "write stream without a request")
	}
	if err != nil {
		return rpcstatus.Error(err)
	}
	res, err := resource.ParseWrite(req.ResourceName)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if req.WriteOffset < 0 {
		return status.Errorf(codes.InvalidArgument, "negative write_offset %d", req.WriteOffset)
	}
	if s.exists(ctx, res.Key) {
		// Already stored (perhaps by a concurrent upload): end early, as
		// REAPI allows.
		return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: completeSize(res)})
	}
	u, err := s.claim(res, req.WriteOffset)
	if err != nil {
		return err
	}
	for {
		if req.ResourceName != "" && req.ResourceName != res.Base && !sameUpload(req.ResourceName, res) {
			s.drop(u, errRestarted)
			return status.Errorf(codes.InvalidArgument, "resource name changed within a stream: %q after %q", req.ResourceName, res.Base)
		}
		committed := u.committed.Load()
		if req.WriteOffset != committed {
			s.drop(u, errRestarted)
			return status.Errorf(codes.InvalidArgument, "write_offset %d, expected %d", req.WriteOffset, committed)
		}
		if !res.Compressed && committed+int64(len(req.Data)) > res.Key.Size {
			s.drop(u, errRestarted)
			return status.Errorf(codes.InvalidArgument, "%d bytes written to %s, more than its size %d", committed+int64(len(req.Data)), res.Base, res.Key.Size)
		}
		if len(req.Data) > 0 {
			if _, err := u.pw.Write(req.Data); err != nil {
				<-u.done
				s.drop(u, err)
				if u.err == nil && s.exists(ctx, res.Key) {
					// The blob completed before all the data was
					// consumed: more data than the blob.
					return status.Errorf(codes.InvalidArgument, "more data than the %d bytes of %s", res.Key.Size, res.Base)
				}
				return writeErr(res, u.err)
			}
			u.committed.Add(int64(len(req.Data)))
		}
		if req.FinishWrite {
			u.pw.Close()
			select {
			case <-u.done:
			case <-ctx.Done():
				// The Put goes on and finishes by itself.
				s.drop(u, errAbandoned)
				return rpcstatus.Error(ctx.Err())
			}
			s.drop(u, errAbandoned)
			if u.err != nil {
				return writeErr(res, u.err)
			}
			size := res.Key.Size
			if res.Compressed {
				size = u.committed.Load()
			}
			return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: size})
		}
		req, err = stream.Recv()
		if err == io.EOF {
			s.drop(u, errAbandoned)
			return status.Errorf(codes.InvalidArgument, "write to %s ended after %d bytes without finish_write", res.Base, u.committed.Load())
		}
		if err != nil {
			// The client went away: keep what was committed so that it
			// can resume.
			s.park(u)
			return rpcstatus.Error(err)
		}
	}
}

// sameUpload reports whether name is res's name with optional metadata.
func sameUpload(name string, res resource.Name) bool {
	r, err := resource.ParseWrite(name)
	return err == nil && r.Base == res.Base
}

func completeSize(res resource.Name) int64 {
	if res.Compressed {
		return -1
	}
	return res.Key.Size
}

func writeErr(res resource.Name, err error) error {
	if err == nil {
		return status.Errorf(codes.Internal, "write to %s failed", res.Base)
	}
	if errors.Is(err, store.ErrDigestMismatch) || errors.Is(err, store.ErrSizeMismatch) || errors.Is(err, zstdcodec.ErrCorrupt) {
		return status.Errorf(codes.InvalidArgument, "write to %s: %v", res.Base, err)
	}
	return rpcstatus.Error(fmt.Errorf("write to %s: %w", res.Base, err))
}

// QueryWriteStatus reports how much of an interrupted upload was committed,
// or that the blob is complete.
func (s *Server) QueryWriteStatus(ctx context.Context, req *bspb.QueryWriteStatusRequest) (*bspb.QueryWriteStatusResponse, error) {
	res, err := resource.ParseWrite(req.ResourceName)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.mu.Lock()
	u := s.uploads[res.Base]
	s.mu.Unlock()
	if u != nil {
		return &bspb.QueryWriteStatusResponse{CommittedSize: u.committed.Load()}, nil
	}
	if s.exists(ctx, res.Key) {
		return &bspb.QueryWriteStatusResponse{CommittedSize: completeSize(res), Complete: true}, nil
	}
	return nil, status.Errorf(codes.NotFound, "no upload in progress for %s", res.Base)
}
