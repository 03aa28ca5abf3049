// Package chunkclient is the client side of split and splice, as a store
// decorator over a remote CAS: large blobs go up as the chunks the server
// lacks plus a splice, and come down as the chunks a local chunk store
// lacks, when the server advertises support. Everything else passes through.
package chunkclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/cdc"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/chunked"
)

// Stats counts what crossed the wire for chunked transfers (blob bytes, not
// framing), next to what whole-blob transfers would have moved.
type Stats struct {
	UploadBlobs, UploadWhole, UploadSent       atomic.Int64
	DownloadBlobs, DownloadWhole, DownloadRecv atomic.Int64
}

// Store is the decorator.
type Store struct {
	next      store.Store
	cas       repb.ContentAddressableStorageClient
	local     store.Store
	chunker   cdc.Chunker
	threshold int64
	tmpDir    string
	Stats     Stats
}

// Options configure New.
type Options struct {
	// Local holds the chunks this side has (wrap it in store.Verifying).
	Local store.Store
	// Prefer picks the chunking function when the server offers both;
	// UNKNOWN means FastCDC 2020, as Bazel does.
	Prefer repb.ChunkingFunction_Value
	// TempDir holds uploads while they are chunked; "" is os.TempDir.
	TempDir string
}

// New asks the server behind conn for its capabilities and returns a
// chunking decorator over next, or nil (and no error) if the server does
// not offer both split and splice with a chunking function this client
// accepts.
func New(ctx context.Context, conn grpc.ClientConnInterface, instance string, next store.Store, o Options) (*Store, error) {
	caps, err := repb.NewCapabilitiesClient(conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: instance})
	if err != nil {
		return nil, fmt.Errorf("capabilities: %w", err)
	}
	cc := caps.GetCacheCapabilities()
	if !cc.GetSplitBlobSupport() || !cc.GetSpliceBlobSupport() {
		return nil, nil
	}
	var c cdc.Chunker
	var threshold int64
	fast, rep := cc.GetFastCdc_2020Params(), cc.GetRepMaxCdcParams()
	if fast != nil && cdc.CheckFastCDC(fast) == nil && (o.Prefer != repb.ChunkingFunction_REP_MAX_CDC || rep == nil) {
		c, _ = cdc.NewFastCDC(fast)
		threshold = int64(fast.AvgChunkSizeBytes) * 4
	} else if rep != nil && cdc.CheckRepMax(rep) == nil {
		c, _ = cdc.NewRepMax(rep)
		threshold = int64(rep.MinChunkSizeBytes) * 2
	} else {
		return nil, nil
	}
	if o.Local == nil {
		return nil, errors.New("chunkclient: no local chunk store")
	}
	// Blobs up to the largest chunk would come back as one chunk.
	return &Store{next: next, cas: repb.NewContentAddressableStorageClient(conn), local: o.Local, chunker: c, threshold: threshold, tmpDir: o.TempDir}, nil
}

// WithLocal returns a decorator like s (same server, function and
// threshold) over another local chunk store, with its own Stats.
func (s *Store) WithLocal(local store.Store) *Store {
	return &Store{next: s.next, cas: s.cas, local: local, chunker: s.chunker, threshold: s.threshold, tmpDir: s.tmpDir}
}

// Chunker is the chunking function in use, with the server's parameters.
func (s *Store) Chunker() cdc.Chunker { return s.chunker }

// Function is the chunking function in use.
func (s *Store) Function() repb.ChunkingFunction_Value { return s.chunker.Function() }

// Threshold is the size above which blobs are chunked.
func (s *Store) Threshold() int64 { return s.threshold }

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.next }

func (s *Store) large(k store.Key) bool { return k.Kind == store.CAS && k.Size > s.threshold }

// FindMissing passes through.
func (s *Store) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	return s.next.FindMissing(ctx, keys)
}

func chunkKey(blob store.Key, d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Instance: blob.Instance, Function: blob.Function, Hash: d.Hash, Size: d.SizeBytes}
}

// Get reads a large blob by its chunk mapping, fetching only the chunks the
// local store lacks; without a mapping it reads the blob whole.
func (s *Store) Get(ctx context.Context, k store.Key, offset int64) (io.ReadCloser, int64, error) {
	if !s.large(k) {
		return s.next.Get(ctx, k, offset)
	}
	chunks, err := s.mapping(ctx, k)
	if err != nil {
		return s.next.Get(ctx, k, offset)
	}
	keys := make([]store.Key, len(chunks))
	for i, d := range chunks {
		keys[i] = chunkKey(k, d)
	}
	missing, err := s.local.FindMissing(ctx, keys)
	if err != nil {
		return nil, 0, err
	}
	for _, ck := range missing {
		rc, size, err := s.next.Get(ctx, ck, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("chunk %s/%d of %s: %w", ck.Hash, ck.Size, k, err)
		}
		err = s.local.Put(ctx, ck, size, rc)
		rc.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("keeping chunk %s/%d: %w", ck.Hash, ck.Size, err)
		}
		s.Stats.DownloadRecv.Add(size)
	}
	s.Stats.DownloadBlobs.Add(1)
	s.Stats.DownloadWhole.Add(k.Size)
	return chunked.Concat(ctx, s.local, k, chunks, offset), k.Size, nil
}

func (s *Store) mapping(ctx context.Context, k store.Key) ([]*repb.Digest, error) {
	st, err := s.cas.GetChunkMapping(ctx, &repb.GetChunkMappingRequest{
		InstanceName: k.Instance, BlobDigest: &repb.Digest{Hash: k.Hash, SizeBytes: k.Size},
		DigestFunction: k.Function, ChunkingFunction: s.chunker.Function(),
	})
	if err != nil {
		return nil, err
	}
	var chunks []*repb.Digest
	var total int64
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		for _, d := range r.ChunkDigests {
			total += d.SizeBytes
		}
		chunks = append(chunks, r.ChunkDigests...)
	}
	if total != k.Size || len(chunks) == 0 {
		return nil, fmt.Errorf("chunk mapping of %s covers %d bytes", k, total)
	}
	return chunks, nil
}

// Put uploads a large blob as the chunks the server lacks and a splice; the
// data is spooled to a temporary file while it is chunked.
func (s *Store) Put(ctx context.Context, k store.Key, size int64, r io.Reader) error {
	if !s.large(k) || size != k.Size {
		return s.next.Put(ctx, k, size, r)
	}
	tmp, err := os.CreateTemp(s.tmpDir, "ferrule-chunks-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h, err := digest.New(k.Function)
	if err != nil {
		return err
	}
	var chunks []*repb.Digest
	var offsets []int64
	var off int64
	err = s.chunker.Split(r, func(b []byte) error {
		d, err := digest.Of(k.Function, b)
		if err != nil {
			return err
		}
		if _, err := tmp.Write(b); err != nil {
			return err
		}
		h.Write(b)
		chunks, offsets = append(chunks, d), append(offsets, off)
		off += int64(len(b))
		return nil
	})
	if err != nil {
		return err
	}
	if off != size || fmt.Sprintf("%x", h.Sum(nil)) != k.Hash {
		return fmt.Errorf("put %s: %w", k, store.ErrDigestMismatch)
	}
	keys := make([]store.Key, len(chunks))
	at := map[store.Key]int{}
	for i, d := range chunks {
		keys[i] = chunkKey(k, d)
		at[keys[i]] = i
	}
	missing, err := s.next.FindMissing(ctx, keys)
	if err != nil {
		return err
	}
	for _, ck := range missing {
		i := at[ck]
		if err := s.next.Put(ctx, ck, ck.Size, io.NewSectionReader(tmp, offsets[i], ck.Size)); err != nil {
			return fmt.Errorf("chunk %d of %s: %w", i, k, err)
		}
		s.Stats.UploadSent.Add(ck.Size)
	}
	if err := s.splice(ctx, k, chunks); err != nil {
		return err
	}
	s.Stats.UploadBlobs.Add(1)
	s.Stats.UploadWhole.Add(size)
	return nil
}

func (s *Store) splice(ctx context.Context, k store.Key, chunks []*repb.Digest) error {
	st, err := s.cas.RegisterChunkMapping(ctx)
	if err != nil {
		return err
	}
	const page = 16 << 10
	for i := 0; i == 0 || i < len(chunks); i += page {
		req := &repb.RegisterChunkMappingRequest{ChunkDigests: chunks[i:min(i+page, len(chunks))]}
		if i == 0 {
			req.InstanceName, req.DigestFunction, req.ChunkingFunction = k.Instance, k.Function, s.chunker.Function()
			req.BlobDigest = &repb.Digest{Hash: k.Hash, SizeBytes: k.Size}
		}
		if err := st.Send(req); err != nil {
			break // the status comes with CloseAndRecv
		}
	}
	_, err = st.CloseAndRecv()
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("splicing %s: %w", k, err)
	}
	return nil
}
