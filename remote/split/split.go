// Package split serves the CAS's chunking calls (SplitBlob, SpliceBlob,
// GetChunkMapping, RegisterChunkMapping) onto a chunked store, beside the
// rest of the ContentAddressableStorage service.
package split

import (
	"context"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/cdc"
	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/rpcstatus"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/chunked"
)

// PageSize is how many chunk digests one streamed GetChunkMapping response
// carries (about 1.2 MB), well under gRPC's 4 MiB default.
const PageSize = 16 << 10

// maxUnaryChunks bounds a unary SplitBlob answer to fit 4 MiB.
const maxUnaryChunks = 48 << 10

// Options are the advertised parameters of both chunking functions.
type Options struct {
	FastCDC *repb.FastCdc2020Params // nil: avg 512 KiB, seed 0
	RepMax  *repb.RepMaxCdcParams   // nil: min 256 KiB, horizon 2 MiB
	// Default is used when a client names no function; UNKNOWN means FastCDC
	// 2020, what Bazel uses.
	Default repb.ChunkingFunction_Value
}

// Server is the CAS service with the chunking calls added.
type Server struct {
	*cas.Server
	st     *chunked.Store
	opts   Options
	fast   cdc.Chunker
	repMax cdc.Chunker
	deflt  cdc.Chunker
}

// New wraps c (the CAS service over st) and checks o.
func New(c *cas.Server, st *chunked.Store, o Options) (*Server, error) {
	if o.FastCDC == nil {
		o.FastCDC = &repb.FastCdc2020Params{AvgChunkSizeBytes: cdc.DefaultFastCDCAvg}
	}
	if o.RepMax == nil {
		o.RepMax = &repb.RepMaxCdcParams{MinChunkSizeBytes: cdc.DefaultRepMaxMin, HorizonSizeBytes: cdc.DefaultRepMaxHorizon}
	}
	fast, err := cdc.NewFastCDC(o.FastCDC)
	if err != nil {
		return nil, err
	}
	rm, err := cdc.NewRepMax(o.RepMax)
	if err != nil {
		return nil, err
	}
	s := &Server{Server: c, st: st, opts: o, fast: fast, repMax: rm, deflt: fast}
	switch o.Default {
	case repb.ChunkingFunction_UNKNOWN, repb.ChunkingFunction_FAST_CDC_2020:
	case repb.ChunkingFunction_REP_MAX_CDC:
		s.deflt = rm
	default:
		return nil, fmt.Errorf("split: unknown default chunking function %v", o.Default)
	}
	return s, nil
}

// Register adds the whole CAS service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	repb.RegisterContentAddressableStorageServer(g, s)
}

// Capabilities fills in the chunking part of cc.
func (s *Server) Capabilities(cc *repb.CacheCapabilities) {
	cc.SplitBlobSupport = true
	cc.SpliceBlobSupport = true
	cc.FastCdc_2020Params = s.opts.FastCDC
	cc.RepMaxCdcParams = s.opts.RepMax
}

func (s *Server) chunker(fn repb.ChunkingFunction_Value) (cdc.Chunker, error) {
	switch fn {
	case repb.ChunkingFunction_UNKNOWN:
		return s.deflt, nil
	case repb.ChunkingFunction_FAST_CDC_2020:
		return s.fast, nil
	case repb.ChunkingFunction_REP_MAX_CDC:
		return s.repMax, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "unknown chunking function %d", fn)
}

// checkFunction accepts the functions a splice may name.
func checkFunction(fn repb.ChunkingFunction_Value) error {
	if _, ok := repb.ChunkingFunction_Value_name[int32(fn)]; !ok {
		return status.Errorf(codes.InvalidArgument, "unknown chunking function %d", fn)
	}
	return nil
}

func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, chunked.ErrChunkMissing):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, chunked.ErrBadSplice):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return rpcstatus.Error(err)
}

func (s *Server) split(ctx context.Context, instance string, d *repb.Digest, dfn repb.DigestFunction_Value, cfn repb.ChunkingFunction_Value) (*repb.SplitBlobResponse, error) {
	k, err := resource.Key(store.CAS, instance, dfn, d)
	if err != nil {
		return nil, err
	}
	c, err := s.chunker(cfn)
	if err != nil {
		return nil, err
	}
	m, err := s.st.Split(ctx, k, c)
	if err != nil {
		return nil, toStatus(err)
	}
	return m, nil
}

// SplitBlob is the unary chunk-mapping lookup of REAPI 2.12.
func (s *Server) SplitBlob(ctx context.Context, req *repb.SplitBlobRequest) (*repb.SplitBlobResponse, error) {
	m, err := s.split(ctx, req.InstanceName, req.BlobDigest, req.DigestFunction, req.ChunkingFunction)
	if err != nil {
		return nil, err
	}
	if len(m.ChunkDigests) > maxUnaryChunks {
		return nil, status.Errorf(codes.ResourceExhausted, "blob has %d chunks, more than a SplitBlob response holds (%d); use GetChunkMapping", len(m.ChunkDigests), maxUnaryChunks)
	}
	return m, nil
}

// GetChunkMapping streams the chunk mapping of a blob, PageSize digests at
// a time.
func (s *Server) GetChunkMapping(req *repb.GetChunkMappingRequest, stream grpc.ServerStreamingServer[repb.GetChunkMappingResponse]) error {
	m, err := s.split(stream.Context(), req.InstanceName, req.BlobDigest, req.DigestFunction, req.ChunkingFunction)
	if err != nil {
		return err
	}
	ds := m.ChunkDigests
	first := true
	for first || len(ds) > 0 {
		n := min(len(ds), PageSize)
		resp := &repb.GetChunkMappingResponse{ChunkDigests: ds[:n]}
		if first {
			resp.ChunkingFunction = m.ChunkingFunction
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		ds, first = ds[n:], false
	}
	return nil
}

func (s *Server) splice(ctx context.Context, instance string, d *repb.Digest, dfn repb.DigestFunction_Value, cfn repb.ChunkingFunction_Value, chunks []*repb.Digest) (*repb.Digest, error) {
	k, err := resource.Key(store.CAS, instance, dfn, d)
	if err != nil {
		return nil, err
	}
	if err := checkFunction(cfn); err != nil {
		return nil, err
	}
	if err := s.st.Splice(ctx, k, chunks, cfn); err != nil {
		return nil, toStatus(err)
	}
	return &repb.Digest{Hash: k.Hash, SizeBytes: k.Size}, nil
}

// SpliceBlob is the unary splice of REAPI 2.12.
func (s *Server) SpliceBlob(ctx context.Context, req *repb.SpliceBlobRequest) (*repb.SpliceBlobResponse, error) {
	d, err := s.splice(ctx, req.InstanceName, req.BlobDigest, req.DigestFunction, req.ChunkingFunction, req.ChunkDigests)
	if err != nil {
		return nil, err
	}
	return &repb.SpliceBlobResponse{BlobDigest: d}, nil
}

// RegisterChunkMapping gathers the streamed chunk list and splices it when
// the client closes the stream.
func (s *Server) RegisterChunkMapping(stream grpc.ClientStreamingServer[repb.RegisterChunkMappingRequest, repb.RegisterChunkMappingResponse]) error {
	var first *repb.RegisterChunkMappingRequest
	var chunks []*repb.Digest
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if first == nil {
			first = req
		}
		if len(chunks)+len(req.ChunkDigests) > chunked.MaxChunks {
			return status.Errorf(codes.InvalidArgument, "chunk mapping of more than %d chunks", chunked.MaxChunks)
		}
		chunks = append(chunks, req.ChunkDigests...)
	}
	if first == nil {
		return status.Error(codes.InvalidArgument, "empty RegisterChunkMapping stream: no blob digest")
	}
	if first.DigestFunction == repb.DigestFunction_UNKNOWN {
		return status.Error(codes.InvalidArgument, "RegisterChunkMapping needs digest_function set on the first request")
	}
	d, err := s.splice(stream.Context(), first.InstanceName, first.BlobDigest, first.DigestFunction, first.ChunkingFunction, chunks)
	if err != nil {
		return err
	}
	return stream.SendAndClose(&repb.RegisterChunkMappingResponse{BlobDigest: d})
}
