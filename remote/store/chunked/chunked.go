// Package chunked is the store decorator for split and splice: a CAS blob
// can exist as a recorded chunk mapping over chunks that are ordinary CAS
// entries of the same store, sharing its eviction. Such a blob reads whole
// (Get, FindMissing) while every chunk is present and is missing as soon as
// one is not: it is never served partially. Spliced blobs under
// Options.WholeBelow are stored whole instead, so that only lookups of large
// blobs ever look for a mapping.
//
// Mappings live in the wrapped store as entries of the action cache key
// space under a reserved instance name (a control character no client can
// send), keyed by the blob's digest, so they survive restarts and are
// evicted like everything else.
package chunked

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/cdc"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// MaxChunks bounds one mapping (about 20 MB of digests).
const MaxChunks = 1 << 18

// DefaultWholeBelow is the default of Options.WholeBelow.
const DefaultWholeBelow = 1 << 20

// Options configure New.
type Options struct {
	// WholeBelow is the size under which a spliced blob is stored whole (the
	// concatenation of its chunks) rather than as a mapping, so that lookups
	// of the many small blobs of a build never look for a mapping. 0 means
	// DefaultWholeBelow; negative means every spliced blob is a mapping.
	WholeBelow int64
}

// mappingNS prefixes the instance name of mapping entries.
const mappingNS = "\x00chunk-mapping\x00"

// ErrChunkMissing is returned (wrapped) when a chunk a mapping names is not
// stored.
var ErrChunkMissing = errors.New("chunk not found")

// ErrBadSplice is returned (wrapped) for a chunk list that cannot describe
// the blob: empty, too long, sizes that do not add up, invalid digests.
var ErrBadSplice = errors.New("invalid chunk list")

// Store is the decorator. Its zero value is not usable; see New.
type Store struct {
	next       store.Store
	wholeBelow int64
}

// New wraps next.
func New(next store.Store, o Options) *Store {
	switch {
	case o.WholeBelow == 0:
		o.WholeBelow = DefaultWholeBelow
	case o.WholeBelow < 0:
		o.WholeBelow = 0
	}
	return &Store{next: next, wholeBelow: o.WholeBelow}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.next }

func mappingKey(k store.Key) store.Key {
	return store.Key{Kind: store.AC, Instance: mappingNS + k.Instance, Function: k.Function, Hash: k.Hash, Size: k.Size}
}

func chunkKey(blob store.Key, d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Instance: blob.Instance, Function: blob.Function, Hash: d.GetHash(), Size: d.GetSizeBytes()}
}

// Mapping returns the recorded mapping of the CAS blob k, whether or not its
// chunks are still present. A blob without one is ErrNotFound.
func (s *Store) Mapping(ctx context.Context, k store.Key) (*repb.SplitBlobResponse, error) {
	k, err := store.CheckKey(k)
	if err != nil {
		return nil, err
	}
	rc, size, err := s.next.Get(ctx, mappingKey(k), 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > MaxChunks*(digest.HashLen+16) {
		return nil, fmt.Errorf("chunk mapping of %s is %d bytes", k, size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, err
	}
	m := &repb.SplitBlobResponse{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("chunk mapping of %s: %w", k, err)
	}
	return m, nil
}

// complete returns k's mapping if it has one and all its chunks are stored
// (which counts as a use of each chunk).
func (s *Store) complete(ctx context.Context, k store.Key) (*repb.SplitBlobResponse, error) {
	m, err := s.Mapping(ctx, k)
	if err != nil {
		return nil, err
	}
	keys := make([]store.Key, len(m.ChunkDigests))
	for i, d := range m.ChunkDigests {
		keys[i] = chunkKey(k, d)
	}
	missing, err := s.next.FindMissing(ctx, keys)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s has %d of %d chunks evicted: %w", store.ErrNotFound, k, len(missing), len(keys), ErrChunkMissing)
	}
	return m, nil
}

// Get reads a stored blob or, failing that, the concatenation of its chunks.
func (s *Store) Get(ctx context.Context, k store.Key, offset int64) (io.ReadCloser, int64, error) {
	rc, size, err := s.next.Get(ctx, k, offset)
	if k.Kind != store.CAS || k.Size < s.wholeBelow || !errors.Is(err, store.ErrNotFound) {
		return rc, size, err
	}
	m, merr := s.complete(ctx, k)
	if merr != nil {
		return nil, 0, err
	}
	if offset < 0 || offset > k.Size {
		return nil, 0, fmt.Errorf("%w: offset %d of %d bytes", store.ErrOutOfRange, offset, k.Size)
	}
	return &concat{ctx: ctx, s: s.next, blob: k, chunks: m.ChunkDigests, skip: offset}, k.Size, nil
}

// GetCompressed passes compressed reads on; a blob that exists only as
// chunks is ErrNotCompressed, so callers fall back to Get.
func (s *Store) GetCompressed(ctx context.Context, k store.Key) (io.ReadCloser, int64, error) {
	rc, size, err := store.GetCompressed(ctx, s.next, k)
	if k.Kind == store.CAS && k.Size >= s.wholeBelow && errors.Is(err, store.ErrNotFound) {
		if _, merr := s.complete(ctx, k); merr == nil {
			return nil, 0, store.ErrNotCompressed
		}
	}
	return rc, size, err
}

// FindMissing reports blobs missing that are neither stored nor complete as
// chunks. One extra lookup, of the missing blobs' mappings, finds those that
// may be; only they are checked chunk by chunk.
func (s *Store) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	missing, err := s.next.FindMissing(ctx, keys)
	if err != nil || len(missing) == 0 {
		return missing, err
	}
	var maps []store.Key
	for _, k := range missing {
		if k.Kind == store.CAS && k.Size >= s.wholeBelow {
			if nk, err := store.CheckKey(k); err == nil {
				maps = append(maps, mappingKey(nk))
			}
		}
	}
	if len(maps) == 0 {
		return missing, nil
	}
	noMap, err := s.next.FindMissing(ctx, maps)
	if err != nil {
		return nil, err
	}
	if len(noMap) == len(maps) {
		return missing, nil
	}
	mapped := make(map[store.Key]bool, len(maps)-len(noMap))
	for _, m := range maps {
		mapped[m] = true
	}
	for _, m := range noMap {
		delete(mapped, m)
	}
	out := missing[:0]
	for _, k := range missing {
		if nk, err := store.CheckKey(k); err == nil && k.Kind == store.CAS && mapped[mappingKey(nk)] {
			if _, err := s.complete(ctx, nk); err == nil {
				continue
			} else if !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// Put passes writes on.
func (s *Store) Put(ctx context.Context, k store.Key, size int64, r io.Reader) error {
	return s.next.Put(ctx, k, size, r)
}

// Splice records that the CAS blob k is the concatenation of chunks, after
// checking that every chunk is stored and that the concatenation hashes to
// k (a blob under Options.WholeBelow is stored whole instead). On any failure nothing is recorded: a missing chunk is ErrChunkMissing
// (naming it), a mismatch store.ErrDigestMismatch, a list that cannot
// describe k ErrBadSplice.
func (s *Store) Splice(ctx context.Context, k store.Key, chunks []*repb.Digest, fn repb.ChunkingFunction_Value) error {
	k, err := store.CheckKey(k)
	if err != nil {
		return err
	}
	if k.Kind != store.CAS {
		return fmt.Errorf("%w: splice into %s", ErrBadSplice, k.Kind)
	}
	if len(chunks) == 0 {
		return fmt.Errorf("%w: no chunks", ErrBadSplice)
	}
	if len(chunks) > MaxChunks {
		return fmt.Errorf("%w: %d chunks, at most %d", ErrBadSplice, len(chunks), MaxChunks)
	}
	keys := make([]store.Key, len(chunks))
	var total int64
	for i, d := range chunks {
		ck, err := store.CheckKey(chunkKey(k, d))
		if err != nil {
			return fmt.Errorf("%w: chunk %d: %w", ErrBadSplice, i, err)
		}
		keys[i] = ck
		total += d.GetSizeBytes()
	}
	if total != k.Size {
		return fmt.Errorf("%w: chunk sizes add up to %d bytes, the blob has %d: %w", ErrBadSplice, total, k.Size, store.ErrDigestMismatch)
	}
	missing, err := s.next.FindMissing(ctx, keys)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %d of %d chunks, the first %s/%d", ErrChunkMissing, len(missing), len(keys), missing[0].Hash, missing[0].Size)
	}
	r := &concat{ctx: ctx, s: s.next, blob: k, chunks: chunks}
	if k.Size < s.wholeBelow {
		// Verifying stores nothing unless the bytes match k.
		if err := store.Verifying(s.next).Put(ctx, k, k.Size, r); err != nil {
			return fmt.Errorf("the chunks do not concatenate to %s/%d: %w", k.Hash, k.Size, err)
		}
		return nil
	}
	h, err := digest.New(k.Function)
	if err != nil {
		return err
	}
	n, err := io.Copy(h, r)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != k.Hash || n != k.Size {
		return fmt.Errorf("%w: the chunks concatenate to %s/%d, not %s/%d", store.ErrDigestMismatch, got, n, k.Hash, k.Size)
	}
	return s.record(ctx, k, chunks, fn)
}

func (s *Store) record(ctx context.Context, k store.Key, chunks []*repb.Digest, fn repb.ChunkingFunction_Value) error {
	b, err := proto.Marshal(&repb.SplitBlobResponse{ChunkDigests: chunks, ChunkingFunction: fn})
	if err != nil {
		return err
	}
	return s.next.Put(ctx, mappingKey(k), int64(len(b)), bytes.NewReader(b))
}

// Split returns the chunks of the CAS blob k: its recorded mapping if every
// chunk is still stored, otherwise c's chunks of the blob, which it stores
// and records first.
func (s *Store) Split(ctx context.Context, k store.Key, c cdc.Chunker) (*repb.SplitBlobResponse, error) {
	k, err := store.CheckKey(k)
	if err != nil {
		return nil, err
	}
	if m, err := s.complete(ctx, k); err == nil {
		// A lookup extends the blob's lifetime too, where it is stored whole.
		if _, err := s.next.FindMissing(ctx, []store.Key{k}); err != nil {
			return nil, err
		}
		return m, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	rc, _, err := s.next.Get(ctx, k, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var chunks []*repb.Digest
	err = c.Split(rc, func(b []byte) error {
		if len(chunks) == MaxChunks {
			return fmt.Errorf("%s splits into more than %d chunks", k, MaxChunks)
		}
		d, err := digest.Of(k.Function, b)
		if err != nil {
			return err
		}
		if err := s.next.Put(ctx, chunkKey(k, d), d.SizeBytes, bytes.NewReader(b)); err != nil {
			return fmt.Errorf("storing chunk %d of %s: %w", len(chunks), k, err)
		}
		chunks = append(chunks, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, k, chunks, c.Function()); err != nil {
		return nil, err
	}
	return &repb.SplitBlobResponse{ChunkDigests: chunks, ChunkingFunction: c.Function()}, nil
}

// Concat reads the concatenation of the CAS chunks (of blob's instance and
// digest function) stored in st, from offset on. A chunk that is missing
// fails the read when it is reached.
func Concat(ctx context.Context, st store.Store, blob store.Key, chunks []*repb.Digest, offset int64) io.ReadCloser {
	return &concat{ctx: ctx, s: st, blob: blob, chunks: chunks, skip: offset}
}

// concat reads the concatenation of chunks, skipping the first skip bytes,
// opening one chunk at a time. A chunk that has gone missing fails the read.
type concat struct {
	ctx    context.Context
	s      store.Store
	blob   store.Key
	chunks []*repb.Digest
	skip   int64
	cur    io.ReadCloser
}

func (c *concat) Read(p []byte) (int, error) {
	for {
		if c.cur != nil {
			n, err := c.cur.Read(p)
			if err == io.EOF {
				c.cur.Close()
				c.cur = nil
				err = nil
				if n == 0 {
					continue
				}
			}
			return n, err
		}
		if len(c.chunks) == 0 {
			return 0, io.EOF
		}
		d := c.chunks[0]
		c.chunks = c.chunks[1:]
		if c.skip >= d.GetSizeBytes() {
			c.skip -= d.GetSizeBytes()
			continue
		}
		rc, _, err := c.s.Get(c.ctx, chunkKey(c.blob, d), c.skip)
		if err != nil {
			return 0, fmt.Errorf("chunk %s/%d of %s: %w", d.GetHash(), d.GetSizeBytes(), c.blob, err)
		}
		c.skip = 0
		c.cur = rc
	}
}

func (c *concat) Close() error {
	if c.cur != nil {
		return c.cur.Close()
	}
	return nil
}
