// Package cas implements the REAPI ContentAddressableStorage service on a
// store.Store: FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs (both with
// optional zstd) and GetTree with paging (tree.go). Writes are verified by the
// store's Verifying decorator (added by New when the store given lacks
// it); names, statuses and codecs come from the resource, rpcstatus and
// zstdcodec packages the other services share.
package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/rpcstatus"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
)

// DefaultMaxBatchBytes is the default limit on the blob bytes of one batch
// call, as advertised in max_batch_total_size_bytes: 4 MiB less room for
// the framing of the messages, so that a full batch read fits the 4 MiB
// receive limit gRPC clients have by default.
const DefaultMaxBatchBytes = 4<<20 - 64<<10

// Default and maximum number of directories in one GetTree page.
const (
	DefaultTreePage = 1000
	MaxTreePage     = 10000
)

// Server is the ContentAddressableStorage service.
type Server struct {
	repb.UnimplementedContentAddressableStorageServer

	store         store.Store
	maxBatchBytes int64
	log           *slog.Logger
	cursors       *cursorCache // where paged GetTree walks stopped
}

// Options configure a Server. Zero values select defaults.
type Options struct {
	// MaxBatchBytes limits the total blob bytes of one BatchUpdateBlobs or
	// BatchReadBlobs call.
	MaxBatchBytes int64
	// MaxTreeCursorEntries bounds the memory that keeps paged GetTree walks
	// for their next page, in directory digests queued or seen.
	MaxTreeCursorEntries int
	Logger               *slog.Logger
}

// New returns a ContentAddressableStorage service over s.
func New(s store.Store, o Options) *Server {
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxTreeCursorEntries <= 0 {
		o.MaxTreeCursorEntries = DefaultTreeCursorEntries
	}
	return &Server{store: store.WithVerification(s), maxBatchBytes: o.MaxBatchBytes, log: o.Logger, cursors: newCursorCache(o.MaxTreeCursorEntries)}
}

// Register adds the service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	repb.RegisterContentAddressableStorageServer(g, s)
}

// MaxBatchBytes is the batch limit in force.
func (s *Server) MaxBatchBytes() int64 { return s.maxBatchBytes }

// FindMissingBlobs reports which of the digests are not stored. Present
// blobs count as used, which keeps them from eviction for a while.
func (s *Server) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	if err := resource.CheckInstanceStatus(req.InstanceName); err != nil {
		return nil, err
	}
	keys := make([]store.Key, 0, len(req.BlobDigests))
	digests := make([]*repb.Digest, 0, len(req.BlobDigests)) // parallel to keys
	for _, d := range req.BlobDigests {
		k, err := resource.DigestKey(store.CAS, req.InstanceName, req.DigestFunction, d)
		if err != nil {
			return nil, err
		}
		if store.IsEmpty(k) {
			continue
		}
		keys = append(keys, k)
		digests = append(digests, d)
	}
	resp := &repb.FindMissingBlobsResponse{}
	if len(keys) == 0 {
		return resp, nil
	}
	missing, err := s.store.FindMissing(ctx, keys)
	if err != nil {
		return nil, rpcstatus.Error(err)
	}
	// The store returns the missing keys in the order given: answer with
	// the request's own digests rather than new ones.
	resp.MissingBlobDigests = make([]*repb.Digest, len(missing))
	i := 0
	for j, k := range missing {
		for i < len(keys) && keys[i] != k {
			i++
		}
		if i < len(keys) {
			resp.MissingBlobDigests[j] = digests[i]
			i++
		} else {
			resp.MissingBlobDigests[j] = &repb.Digest{Hash: k.Hash, SizeBytes: k.Size}
		}
	}
	return resp, nil
}

// parallel runs f(0..n-1) on up to 8 goroutines.
func parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	workers := min(n, 8)
	var wg sync.WaitGroup
	next := make(chan int)
	var panicOnce sync.Once
	var panicked any
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				func() {
					// A panic here would end the process; it is raised
					// again in the handler, whose recovery makes it INTERNAL.
					defer func() {
						if p := recover(); p != nil {
							panicOnce.Do(func() { panicked = fmt.Sprintf("%v\n%s", p, debug.Stack()) })
						}
					}()
					f(i)
				}()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if panicked != nil {
		panic(panicked)
	}
}

func statusProto(err error) *spb.Status {
	if err == nil {
		return &spb.Status{}
	}
	return status.Convert(rpcstatus.Error(err)).Proto()
}

// BatchUpdateBlobs stores small blobs, each verified against its digest
// after decompression. A batch whose blobs add up to more than the limit is
// refused whole with INVALID_ARGUMENT (as REAPI specifies); every other
// problem is reported per blob.
func (s *Server) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	if err := resource.CheckInstanceStatus(req.InstanceName); err != nil {
		return nil, err
	}
	var total int64
	for _, r := range req.Requests {
		total += int64(len(r.Data))
	}
	if total > s.maxBatchBytes {
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d bytes exceeds the limit of %d bytes (max_batch_total_size_bytes); use ByteStream for large blobs", total, s.maxBatchBytes)
	}
	resp := &repb.BatchUpdateBlobsResponse{Responses: make([]*repb.BatchUpdateBlobsResponse_Response, len(req.Requests))}
	parallel(len(req.Requests), func(i int) {
		r := req.Requests[i]
		resp.Responses[i] = &repb.BatchUpdateBlobsResponse_Response{
			Digest: r.Digest,
			Status: statusProto(s.updateOne(ctx, req.InstanceName, req.DigestFunction, r)),
		}
	})
	return resp, nil
}

func (s *Server) updateOne(ctx context.Context, instance string, fn repb.DigestFunction_Value, r *repb.BatchUpdateBlobsRequest_Request) error {
	k, err := resource.DigestKey(store.CAS, instance, fn, r.Digest)
	if err != nil {
		return err
	}
	if k.Size > s.maxBatchBytes {
		return status.Errorf(codes.InvalidArgument, "blob %s/%d is larger than the batch limit of %d bytes; use ByteStream", k.Hash, k.Size, s.maxBatchBytes)
	}
	var data []byte
	switch r.Compressor {
	case repb.Compressor_IDENTITY:
		if int64(len(r.Data)) != k.Size {
			return status.Errorf(codes.InvalidArgument, "blob %s/%d: got %d bytes", k.Hash, k.Size, len(r.Data))
		}
		data = r.Data
	case repb.Compressor_ZSTD:
		// Decompress fully (at most one byte past the size) before
		// storing, so that a bad blob costs the store nothing.
		z, err := zstdcodec.NewDecompressor(bytes.NewReader(r.Data))
		if err != nil {
			return rpcstatus.Error(err)
		}
		defer z.Close()
		buf := bytes.NewBuffer(make([]byte, 0, k.Size))
		if _, err := buf.ReadFrom(io.LimitReader(z, k.Size+1)); err != nil {
			return rpcstatus.Error(err)
		}
		if int64(buf.Len()) != k.Size {
			return status.Errorf(codes.InvalidArgument, "blob %s/%d: %v: decompressed to %d bytes or more", k.Hash, k.Size, store.ErrSizeMismatch, buf.Len())
		}
		data = buf.Bytes()
	default:
		return status.Errorf(codes.InvalidArgument, "blob %s/%d: unsupported compressor %s", k.Hash, k.Size, r.Compressor)
	}
	if store.IsEmpty(k) {
		return nil // nothing to store; the content was checked to be empty
	}
	return rpcstatus.Error(s.store.Put(ctx, k, k.Size, bytes.NewReader(data)))
}

// BatchReadBlobs returns small blobs, zstd-compressed when the client lists
// ZSTD among its acceptable compressors.
func (s *Server) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	if err := resource.CheckInstanceStatus(req.InstanceName); err != nil {
		return nil, err
	}
	var total int64
	for _, d := range req.Digests {
		if d.GetSizeBytes() > 0 {
			total += min(d.SizeBytes, s.maxBatchBytes+1) // no overflow
		}
		if total > s.maxBatchBytes {
			return nil, status.Errorf(codes.InvalidArgument, "batch read of more than %d bytes (max_batch_total_size_bytes); use ByteStream for large blobs", s.maxBatchBytes)
		}
	}
	zstdOK := false
	for _, c := range req.AcceptableCompressors {
		if c == repb.Compressor_ZSTD {
			zstdOK = true
		}
	}
	resp := &repb.BatchReadBlobsResponse{Responses: make([]*repb.BatchReadBlobsResponse_Response, len(req.Digests))}
	parallel(len(req.Digests), func(i int) {
		d := req.Digests[i]
		out := &repb.BatchReadBlobsResponse_Response{Digest: d}
		var data []byte
		var err error
		if zstdOK {
			data, err = s.readOneCompressed(ctx, req.InstanceName, req.DigestFunction, d)
			out.Compressor = repb.Compressor_ZSTD
		} else {
			data, err = s.readOne(ctx, req.InstanceName, req.DigestFunction, d)
		}
		if err != nil {
			data, out.Compressor = nil, repb.Compressor_IDENTITY
		}
		out.Data = data
		out.Status = statusProto(err)
		resp.Responses[i] = out
	})
	return resp, nil
}

func (s *Server) readOne(ctx context.Context, instance string, fn repb.DigestFunction_Value, d *repb.Digest) ([]byte, error) {
	k, err := resource.DigestKey(store.CAS, instance, fn, d)
	if err != nil {
		return nil, err
	}
	return readBlob(ctx, s.store, k)
}

// readOneCompressed returns the zstd compression of a blob: the frames the
// store keeps if it keeps the blob compressed, otherwise the blob
// compressed here.
func (s *Server) readOneCompressed(ctx context.Context, instance string, fn repb.DigestFunction_Value, d *repb.Digest) ([]byte, error) {
	k, err := resource.DigestKey(store.CAS, instance, fn, d)
	if err != nil {
		return nil, err
	}
	if !store.IsEmpty(k) && k.Size <= MaxInMemoryBlob {
		data, err := ReadCompressedBlob(ctx, s.store, k)
		if !errors.Is(err, store.ErrNotCompressed) {
			return data, err
		}
	}
	data, err := readBlob(ctx, s.store, k)
	if err != nil {
		return nil, err
	}
	return zstdcodec.Compress(data), nil
}

// ReadCompressedBlob reads the stored zstd frames of blob k from st (see
// store.CompressedReader), or fails with store.ErrNotCompressed (unwrapped,
// so that callers can fall back to a plain read) when st does not keep k
// compressed. Other errors are gRPC statuses.
func ReadCompressedBlob(ctx context.Context, st store.Store, k store.Key) ([]byte, error) {
	rc, size, err := store.GetCompressed(ctx, st, k)
	if err != nil {
		if errors.Is(err, store.ErrNotCompressed) {
			return nil, store.ErrNotCompressed
		}
		return nil, rpcstatus.Error(err)
	}
	defer rc.Close()
	if size != k.Size {
		return nil, status.Errorf(codes.Internal, "stored blob %s has %d bytes, want %d", k, size, k.Size)
	}
	// Compressed data is rarely much larger than the blob; a bound keeps a
	// broken store from making this read without end.
	limit := k.Size + k.Size/8 + 64<<10
	var buf bytes.Buffer
	buf.Grow(int(min(limit, k.Size/2+512)))
	n, err := buf.ReadFrom(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading %s: %v", k, err)
	}
	if n > limit {
		return nil, status.Errorf(codes.Internal, "reading %s: compressed form larger than %d bytes", k, limit)
	}
	return buf.Bytes(), nil
}

// MaxInMemoryBlob bounds the blobs read whole (directories,
// trees, batch reads).
const MaxInMemoryBlob = 256 << 20

// readBlob reads the whole blob k, verified (store.ReadBlob), with errors
// as gRPC statuses.
func readBlob(ctx context.Context, st store.Store, k store.Key) ([]byte, error) {
	data, err := store.ReadBlob(ctx, st, k, MaxInMemoryBlob)
	return data, rpcstatus.Error(err)
}
