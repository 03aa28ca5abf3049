// Package store defines the blob store that every Ferrule storage backend
// implements (memory, disk, S3, and the worker's gRPC client in grpcstore) and
// that decorators wrap to add one concern each. The server stacks them
// (server.Stack), outermost first:
//
//	Metrics    counts calls, bytes and errors per kind
//	Complete   AC reads: NOT_FOUND unless every referenced blob is present
//	ACCache    recently used AC entries in memory
//	Verifying  CAS writes: hashed (VerifyReader), nothing stored on a mismatch
//	chunked    blobs spliced from chunks (package store/chunked)
//	tiered     optional: the backend in front of a shared S3 bucket
//	           (packages store/tiered and store/s3)
//	backend    disk or memory
//
// ReadBlob is the one capped, verified whole-blob read. Backends that can
// find a blob's size from its hash alone implement Sizer (SizeOf finds it
// through decorators), for protocols that name blobs by hash. The gRPC and HTTP
// services and the execution engine translate their protocols onto a Store
// and nothing else; a service given a bare backend adds the Verifying and
// Complete decorators it relies on (WithVerification, WithCompleteness).
package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// Kind separates the key spaces of the content-addressable storage and the
// action cache.
type Kind uint8

const (
	// CAS holds blobs addressed by the digest of their own content.
	CAS Kind = iota
	// AC holds serialized ActionResult messages addressed by an Action digest.
	AC
)

func (k Kind) String() string {
	switch k {
	case CAS:
		return "cas"
	case AC:
		return "ac"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Key names one entry. Instance names and digest functions keep separate
// namespaces: the same hash under two instances or two functions is two
// entries.
type Key struct {
	Kind     Kind
	Instance string
	Function repb.DigestFunction_Value // SHA256 or BLAKE3
	Hash     string                    // lowercase hex
	Size     int64                     // for CAS the blob size; for AC the Action's size
}

func (k Key) String() string {
	inst := k.Instance
	if inst == "" {
		inst = "-"
	}
	return fmt.Sprintf("%s/%s/%s/%s-%d", k.Kind, inst, k.Function, k.Hash, k.Size)
}

// ErrNotFound is returned (possibly wrapped) when an entry does not exist.
var ErrNotFound = errors.New("not found")

// ErrTooLarge is returned when an entry can never fit in the store.
var ErrTooLarge = errors.New("entry larger than the store can hold")

// ErrFull is returned (wrapped) when an entry could fit but the store has
// no room for it now (what its bound counts is held by writes in
// progress); a retry may succeed.
var ErrFull = errors.New("store full")

// Store is the interface every backend implements and every decorator wraps.
//
// Implementations must be safe for concurrent use. A Put is atomic: readers
// see either nothing or the whole value, never a prefix, and a Put whose
// reader fails or returns a number of bytes other than size stores nothing.
type Store interface {
	// Get opens the value of key for reading, starting at offset (0 <= offset
	// <= size). It returns the full size of the value (not size-offset).
	// A missing entry is ErrNotFound. A successful Get counts as a use for
	// eviction purposes.
	Get(ctx context.Context, key Key, offset int64) (rc io.ReadCloser, size int64, err error)

	// Put stores exactly size bytes read from r under key. If r returns an
	// error (for example a verifying reader that found a digest mismatch), or
	// yields fewer or more than size bytes, nothing is stored and the error is
	// returned. Putting an entry that already exists is not an error.
	Put(ctx context.Context, key Key, size int64, r io.Reader) error

	// FindMissing returns the keys among keys that are not stored, in the
	// order given. Keys that are present count as used for eviction purposes.
	FindMissing(ctx context.Context, keys []Key) ([]Key, error)
}

// Stats is optional information a backend can report for /status and metrics.
type Stats struct {
	Entries int64
	// Bytes is the space the entries take as MaxBytes counts it: the disk
	// store counts its files in whole file system blocks, the memory store
	// value bytes.
	Bytes        int64
	MaxBytes     int64 // 0: no bound
	Evictions    int64
	EvictedBytes int64 // counted as Bytes
}

// StatsReporter is implemented by stores that can report Stats.
type StatsReporter interface {
	Stats() Stats
}
