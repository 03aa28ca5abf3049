package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/chunkclient"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/grpcstore"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// The chunked workloads play Bazel >= 8.7 with remote cache chunking: every
// blob is a large base blob with one small edit, so the other side has all
// but the chunks around the edit. Result.Bytes counts the blobs' sizes,
// Result.WireBytes the chunk bytes that crossed.

// cdcState is what the chunked workloads share.
type cdcState struct {
	once     sync.Once
	err      error
	base     []byte
	client   *chunkclient.Store // over e.conns[0], for set-up
	baseKeys []store.Key        // the base blob's chunks, for priming
	baseData [][]byte
	versions []store.Key // edited blobs uploaded for cdc-read
}

const editBytes = 64

func (e *env) edited(base []byte, v uint64, at int) []byte {
	b := append([]byte(nil), base...)
	copy(b[at:], Payload(e.cfg.Seed, streamCDC, v+1, editBytes))
	return b
}

func casKey(instance string, d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Instance: instance, Function: repb.DigestFunction_SHA256, Hash: d.Hash, Size: d.SizeBytes}
}

func (e *env) newChunkClient(ctx context.Context, w *worker) (*chunkclient.Store, error) {
	cc, err := chunkclient.New(ctx, w.conn, e.cfg.Instance, grpcstore.New(w.conn), chunkclient.Options{Local: store.Verifying(memory.New(0))})
	if err == nil && cc == nil {
		err = fmt.Errorf("the server offers no chunking function this client accepts")
	}
	return cc, err
}

// cdcBase uploads the base blob by chunks and keeps its chunks.
func (e *env) cdcBase(ctx context.Context) error {
	s := &e.cdc
	s.once.Do(func() {
		size := max(e.cfg.LargeSize, 8<<20)
		s.base = Payload(e.cfg.Seed, streamCDC, 0, size)
		w := e.newWorker(0, 0)
		if s.client, s.err = e.newChunkClient(ctx, w); s.err != nil {
			return
		}
		if int64(size) <= s.client.Threshold() {
			s.err = fmt.Errorf("a %d-byte blob is under the chunking threshold of %d bytes", size, s.client.Threshold())
			return
		}
		e.logf("uploading a %d-byte base blob by %v chunks", size, s.client.Function())
		k := casKey(e.cfg.Instance, DigestOf(s.base))
		if s.err = s.client.Put(ctx, k, k.Size, bytes.NewReader(s.base)); s.err != nil {
			return
		}
		// Reading it back through the client fills its local store with
		// the base's chunks: the client's state before an edit.
		var rc io.ReadCloser
		if rc, _, s.err = s.client.Get(ctx, k, 0); s.err != nil {
			return
		}
		rc.Close()
	})
	return s.err
}

func (e *env) chunkedWriteSetup(ctx context.Context) (opFunc, error) {
	if err := e.cdcBase(ctx); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	clients := map[int]*chunkclient.Store{}
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		mu.Lock()
		c := clients[w.id]
		if c == nil {
			c = e.cdc.client.WithLocal(memory.New(0))
			clients[w.id] = c
		}
		mu.Unlock()
		data := e.edited(e.cdc.base, uint64(seq)<<8|uint64(w.id), w.rng.IntN(len(e.cdc.base)-editBytes))
		k := casKey(e.cfg.Instance, DigestOf(data))
		before := c.Stats.UploadSent.Load()
		t := time.Now()
		if err := c.Put(ctx, k, k.Size, bytes.NewReader(data)); err != nil {
			return opResult{}, err
		}
		return opResult{items: 1, bytes: k.Size, wire: c.Stats.UploadSent.Load() - before, lat: time.Since(t)}, nil
	}, nil
}

func (e *env) chunkedReadSetup(ctx context.Context) (opFunc, error) {
	if err := e.cdcBase(ctx); err != nil {
		return nil, err
	}
	s := &e.cdc
	// The base's chunks, to prime each read's local store with.
	if s.baseKeys == nil {
		var off int64
		err := chunkKeys(s.client, s.base, func(d *repb.Digest) {
			s.baseKeys = append(s.baseKeys, casKey(e.cfg.Instance, d))
			s.baseData = append(s.baseData, s.base[off:off+d.SizeBytes])
			off += d.SizeBytes
		})
		if err != nil {
			return nil, err
		}
	}
	n := max(e.cfg.LargePool, 1)
	e.logf("uploading %d edited versions of the base blob by chunks", n)
	s.versions = make([]store.Key, n)
	for i := range n {
		data := e.edited(s.base, uint64(1<<40+i), (i*7919*4099)%(len(s.base)-editBytes))
		k := casKey(e.cfg.Instance, DigestOf(data))
		if err := s.client.WithLocal(memory.New(0)).Put(ctx, k, k.Size, bytes.NewReader(data)); err != nil {
			return nil, err
		}
		s.versions[i] = k
	}
	return func(ctx context.Context, w *worker, seq int64) (opResult, error) {
		local := memory.New(0)
		for i, k := range s.baseKeys {
			if err := local.Put(ctx, k, k.Size, bytes.NewReader(s.baseData[i])); err != nil {
				return opResult{}, err
			}
		}
		c := s.client.WithLocal(local)
		k := s.versions[w.rng.IntN(len(s.versions))]
		t := time.Now()
		rc, _, err := c.Get(ctx, k, 0)
		if err != nil {
			return opResult{}, err
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		lat := time.Since(t)
		if err != nil {
			return opResult{}, err
		}
		if g := DigestOf(got); g.Hash != k.Hash {
			return opResult{}, wrongf("chunked read of %s/%d returned %d bytes with digest %s", k.Hash, k.Size, g.SizeBytes, g.Hash)
		}
		return opResult{items: 1, bytes: k.Size, wire: c.Stats.DownloadRecv.Load(), lat: lat}, nil
	}, nil
}

// chunkKeys calls f with the digest of each of data's chunks under c's
// function.
func chunkKeys(c *chunkclient.Store, data []byte, f func(*repb.Digest)) error {
	return c.Chunker().Split(bytes.NewReader(data), func(b []byte) error {
		f(DigestOf(b))
		return nil
	})
}
