// Package capabilities implements the REAPI Capabilities service: what
// Ferrule's cache (and, when one is registered, execution service) supports.
package capabilities

import (
	"context"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/bazelbuild/remote-apis/build/bazel/semver"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/resource"
)

// LowAPI and HighAPI bound the REAPI versions served. 2.0 is what Bazel 4.x
// speaks; up to 2.3 the changes (output_paths and output_symlinks, digest
// functions in requests and resource names, compressed blobs, worker
// timings) are all ones a cache stores or honours here. The chunking calls
// (SplitBlob/SpliceBlob of 2.12, GetChunkMapping/RegisterChunkMapping of
// 2.13) are served when Options.Chunking is set and advertised by the
// split/splice support flags, but the other changes up to 2.13 are not all
// checked, so HighAPI stays at 2.3.
var (
	LowAPI  = &semver.SemVer{Major: 2, Minor: 0}
	HighAPI = &semver.SemVer{Major: 2, Minor: 3}
)

// Options describe what the server's services support.
type Options struct {
	// MaxBatchBytes is advertised as max_batch_total_size_bytes.
	MaxBatchBytes int64
	// UpdateEnabled says whether clients may write to the action cache.
	UpdateEnabled bool
	// MayUpdate, when set, says whether the caller of a request may write
	// to the action cache; update_enabled is false for one that may not,
	// so that its client does not attempt uploads it would be refused.
	MayUpdate func(context.Context) bool
	// Chunking, when set, fills in split and splice support and the
	// chunking functions' parameters.
	Chunking interface {
		Capabilities(*repb.CacheCapabilities)
	}
}

// Server is the Capabilities service. Its execution capabilities are empty
// until SetExecution is called, so an execution service can be plugged in
// after the cache is built.
type Server struct {
	repb.UnimplementedCapabilitiesServer

	opts Options

	mu   sync.RWMutex
	exec *repb.ExecutionCapabilities
}

// New returns a Capabilities service.
func New(o Options) *Server {
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = cas.DefaultMaxBatchBytes
	}
	return &Server{opts: o}
}

// Register adds the service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	repb.RegisterCapabilitiesServer(g, s)
}

// SetExecution advertises execution capabilities; nil withdraws them. An
// execution service calls this when it is registered.
func (s *Server) SetExecution(ec *repb.ExecutionCapabilities) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ec == nil {
		s.exec = nil
		return
	}
	s.exec = proto.Clone(ec).(*repb.ExecutionCapabilities)
}

// GetCapabilities describes the server. It is the same for every instance
// name.
func (s *Server) GetCapabilities(ctx context.Context, req *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	if err := resource.CheckInstance(req.InstanceName); err != nil {
		return nil, statusInvalid(err)
	}
	caps := &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions: append([]repb.DigestFunction_Value(nil), digest.Supported...),
			ActionCacheUpdateCapabilities: &repb.ActionCacheUpdateCapabilities{
				UpdateEnabled: s.opts.UpdateEnabled && (s.opts.MayUpdate == nil || s.opts.MayUpdate(ctx)),
			},
			CachePriorityCapabilities: &repb.PriorityCapabilities{
				Priorities: []*repb.PriorityCapabilities_PriorityRange{{MinPriority: 0, MaxPriority: 0}},
			},
			MaxBatchTotalSizeBytes:          s.opts.MaxBatchBytes,
			SymlinkAbsolutePathStrategy:     repb.SymlinkAbsolutePathStrategy_ALLOWED,
			SupportedCompressors:            []repb.Compressor_Value{repb.Compressor_ZSTD},
			SupportedBatchUpdateCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
		},
		LowApiVersion:  LowAPI,
		HighApiVersion: HighAPI,
	}
	if s.opts.Chunking != nil {
		s.opts.Chunking.Capabilities(caps.CacheCapabilities)
	}
	s.mu.RLock()
	if s.exec != nil {
		caps.ExecutionCapabilities = proto.Clone(s.exec).(*repb.ExecutionCapabilities)
	}
	s.mu.RUnlock()
	return caps, nil
}
