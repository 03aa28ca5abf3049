package split_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/capabilities"
	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/split"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/chunked"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

const sha = repb.DigestFunction_SHA256

type env struct {
	cas  repb.ContentAddressableStorageClient
	bs   bspb.ByteStreamClient
	caps repb.CapabilitiesClient
	mem  *memory.Store
	ch   *chunked.Store
}

func setup(t *testing.T, memBytes int64) *env {
	t.Helper()
	mem := memory.New(memBytes)
	ch := chunked.New(mem, chunked.Options{WholeBelow: -1})
	c := cas.New(ch, cas.Options{})
	sp, err := split.New(c, ch, split.Options{
		FastCDC: &repb.FastCdc2020Params{AvgChunkSizeBytes: 16 << 10},
		RepMax:  &repb.RepMaxCdcParams{MinChunkSizeBytes: 8 << 10, HorizonSizeBytes: 64 << 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	sp.Register(g)
	bytestream.New(ch, bytestream.Options{}).Register(g)
	capabilities.New(capabilities.Options{Chunking: sp}).Register(g)
	conn := grpctest.Dial(t, g, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	return &env{repb.NewContentAddressableStorageClient(conn), bspb.NewByteStreamClient(conn), repb.NewCapabilitiesClient(conn), mem, ch}
}

func random(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func dg(t *testing.T, b []byte) *repb.Digest {
	t.Helper()
	d, err := digest.Of(sha, b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func key(d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Function: sha, Hash: d.Hash, Size: d.SizeBytes}
}

func (e *env) upload(t *testing.T, blobs ...[]byte) []*repb.Digest {
	t.Helper()
	req := &repb.BatchUpdateBlobsRequest{DigestFunction: sha}
	var ds []*repb.Digest
	for _, b := range blobs {
		d := dg(t, b)
		ds = append(ds, d)
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: b})
	}
	resp, err := e.cas.BatchUpdateBlobs(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Responses {
		if r.Status.GetCode() != 0 {
			t.Fatalf("upload: %v", r.Status)
		}
	}
	return ds
}

func (e *env) read(t *testing.T, d *repb.Digest, offset int64) ([]byte, error) {
	t.Helper()
	st, err := e.bs.Read(context.Background(), &bspb.ReadRequest{ResourceName: fmt.Sprintf("blobs/%s/%d", d.Hash, d.SizeBytes), ReadOffset: offset})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r.Data...)
	}
}

func (e *env) missing(t *testing.T, ds ...*repb.Digest) int {
	t.Helper()
	resp, err := e.cas.FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{DigestFunction: sha, BlobDigests: ds})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.MissingBlobDigests)
}

func wantCode(t *testing.T, err error, code codes.Code, words string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), words) {
		t.Fatalf("got %v, want %v mentioning %q", err, code, words)
	}
}

// A blob uploaded as chunks and spliced reads whole by ByteStream (from any
// offset), batch reads and FindMissing, and maps back to its chunks.
func TestSpliceThenReadWhole(t *testing.T) {
	e := setup(t, 64<<20)
	parts := [][]byte{random(100<<10, 1), random(70<<10, 2), random(5, 3)}
	chunks := e.upload(t, parts...)
	blob := bytes.Join(parts, nil)
	bd := dg(t, blob)
	if e.missing(t, bd) != 1 {
		t.Fatal("blob present before splice")
	}
	resp, err := e.cas.SpliceBlob(context.Background(), &repb.SpliceBlobRequest{BlobDigest: bd, ChunkDigests: chunks, DigestFunction: sha})
	if err != nil {
		t.Fatal(err)
	}
	if resp.BlobDigest.Hash != bd.Hash {
		t.Fatalf("splice answered %v", resp.BlobDigest)
	}
	if e.missing(t, bd) != 0 {
		t.Fatal("spliced blob reported missing")
	}
	for _, off := range []int64{0, 1, 100 << 10, 170<<10 + 2, int64(len(blob))} {
		got, err := e.read(t, bd, off)
		if err != nil || !bytes.Equal(got, blob[off:]) {
			t.Fatalf("read at %d: %d bytes, %v", off, len(got), err)
		}
	}
	// A compressed read of a blob that exists only as chunks.
	zs, err := e.bs.Read(context.Background(), &bspb.ReadRequest{ResourceName: fmt.Sprintf("compressed-blobs/zstd/%s/%d", bd.Hash, bd.SizeBytes)})
	if err != nil {
		t.Fatal(err)
	}
	var z []byte
	for {
		r, err := zs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("compressed read: %v", err)
		}
		z = append(z, r.Data...)
	}
	dec, _ := zstd.NewReader(nil)
	if got, err := dec.DecodeAll(z, nil); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("compressed read decodes to %d bytes, %v", len(got), err)
	}
	br, err := e.cas.BatchReadBlobs(context.Background(), &repb.BatchReadBlobsRequest{DigestFunction: sha, Digests: []*repb.Digest{bd}})
	if err != nil || !bytes.Equal(br.Responses[0].Data, blob) {
		t.Fatalf("batch read: %v %v", err, br.GetResponses()[0].GetStatus())
	}
	// The recorded mapping is what GetChunkMapping returns.
	st, err := e.cas.GetChunkMapping(context.Background(), &repb.GetChunkMappingRequest{BlobDigest: bd, DigestFunction: sha})
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil || len(m.ChunkDigests) != 3 || m.ChunkDigests[1].Hash != chunks[1].Hash {
		t.Fatalf("mapping %v, %v", m, err)
	}
}

// A blob stored whole is chunked on demand; the chunks are stored and
// concatenate to it; both functions give their own bounds.
func TestSplitOnDemand(t *testing.T) {
	e := setup(t, 64<<20)
	blob := random(1<<20+17, 9)
	bd := e.upload(t, blob)[0]
	for _, fn := range []repb.ChunkingFunction_Value{repb.ChunkingFunction_FAST_CDC_2020, repb.ChunkingFunction_REP_MAX_CDC} {
		// A fresh store per function: a stored mapping is returned as is.
		e := setup(t, 64<<20)
		e.upload(t, blob)
		resp, err := e.cas.SplitBlob(context.Background(), &repb.SplitBlobRequest{BlobDigest: bd, DigestFunction: sha, ChunkingFunction: fn})
		if err != nil {
			t.Fatal(err)
		}
		if resp.ChunkingFunction != fn || len(resp.ChunkDigests) < 8 {
			t.Fatalf("%v: %d chunks by %v", fn, len(resp.ChunkDigests), resp.ChunkingFunction)
		}
		if n := e.missing(t, resp.ChunkDigests...); n != 0 {
			t.Fatalf("%v: %d chunks not stored", fn, n)
		}
		var off int64
		for i, d := range resp.ChunkDigests {
			if fn == repb.ChunkingFunction_REP_MAX_CDC && (d.SizeBytes < 8<<10 || d.SizeBytes >= 16<<10) {
				t.Errorf("RepMaxCDC chunk %d is %d bytes", i, d.SizeBytes)
			}
			if d.Hash != dg(t, blob[off:off+d.SizeBytes]).Hash {
				t.Fatalf("%v: chunk %d is not the blob's bytes at %d", fn, i, off)
			}
			off += d.SizeBytes
		}
		if off != int64(len(blob)) {
			t.Fatalf("%v: chunks cover %d of %d bytes", fn, off, len(blob))
		}
	}
	if _, err := e.cas.SplitBlob(context.Background(), &repb.SplitBlobRequest{BlobDigest: dg(t, []byte("absent")), DigestFunction: sha}); status.Code(err) != codes.NotFound {
		t.Fatalf("split of a missing blob: %v", err)
	}
}

// GetChunkMapping pages a long list; RegisterChunkMapping takes one
// streamed across messages.
func TestStreamedMappings(t *testing.T) {
	e := setup(t, 256<<20)
	var parts [][]byte
	for i := range split.PageSize + 5 {
		parts = append(parts, []byte(fmt.Sprintf("chunk %d;", i)))
	}
	chunks := e.upload(t, parts...)
	blob := bytes.Join(parts, nil)
	bd := dg(t, blob)
	rs, err := e.cas.RegisterChunkMapping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	half := len(chunks) / 2
	if err := rs.Send(&repb.RegisterChunkMappingRequest{BlobDigest: bd, DigestFunction: sha, ChunkDigests: chunks[:half]}); err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&repb.RegisterChunkMappingRequest{ChunkDigests: chunks[half:]}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	got, err := e.read(t, bd, 0)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read of registered blob: %d bytes, %v", len(got), err)
	}
	gs, err := e.cas.GetChunkMapping(context.Background(), &repb.GetChunkMappingRequest{BlobDigest: bd, DigestFunction: sha})
	if err != nil {
		t.Fatal(err)
	}
	var n, msgs int
	for {
		r, err := gs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(r.ChunkDigests)
		msgs++
	}
	if n != len(chunks) || msgs != 2 {
		t.Fatalf("%d digests in %d messages, want %d in 2", n, msgs, len(chunks))
	}
}

// Bad splices: a clear status naming the problem, and nothing recorded.
func TestBadSplices(t *testing.T) {
	e := setup(t, 64<<20)
	a, b := random(1000, 4), random(2000, 5)
	chunks := e.upload(t, a, b)
	blob := append(append([]byte{}, a...), b...)
	bd := dg(t, blob)
	absent := dg(t, []byte("never uploaded"))
	wrong := dg(t, append(append([]byte{}, b...), a...))
	ctx := context.Background()
	cases := []struct {
		name  string
		req   *repb.SpliceBlobRequest
		code  codes.Code
		words string
	}{
		{"missing chunk", &repb.SpliceBlobRequest{BlobDigest: dg(t, append(append([]byte{}, a...), []byte("never uploaded")...)), ChunkDigests: []*repb.Digest{chunks[0], absent}, DigestFunction: sha}, codes.NotFound, absent.Hash},
		{"mismatch", &repb.SpliceBlobRequest{BlobDigest: wrong, ChunkDigests: chunks, DigestFunction: sha}, codes.InvalidArgument, "concatenate to"},
		{"sizes", &repb.SpliceBlobRequest{BlobDigest: bd, ChunkDigests: chunks[:1], DigestFunction: sha}, codes.InvalidArgument, "add up to"},
		{"empty list", &repb.SpliceBlobRequest{BlobDigest: bd, DigestFunction: sha}, codes.InvalidArgument, "no chunks"},
		{"unknown function", &repb.SpliceBlobRequest{BlobDigest: bd, ChunkDigests: chunks, DigestFunction: sha, ChunkingFunction: 7}, codes.InvalidArgument, "unknown chunking function"},
		{"bad chunk digest", &repb.SpliceBlobRequest{BlobDigest: bd, ChunkDigests: []*repb.Digest{{Hash: "xyz", SizeBytes: 3000}}, DigestFunction: sha}, codes.InvalidArgument, "chunk 0"},
		{"no blob digest", &repb.SpliceBlobRequest{ChunkDigests: chunks, DigestFunction: sha}, codes.InvalidArgument, "digest"},
	}
	for _, c := range cases {
		_, err := e.cas.SpliceBlob(ctx, c.req)
		wantCode(t, err, c.code, c.words)
		if d := c.req.BlobDigest; d != nil {
			if _, err := e.ch.Mapping(ctx, key(d)); err == nil {
				t.Errorf("%s: a mapping was recorded", c.name)
			}
			if d.Hash != bd.Hash && e.missing(t, d) != 1 {
				t.Errorf("%s: the blob is reported present", c.name)
			}
		}
	}
	// Over the limit of a mapping: more chunks than one may hold, streamed
	// in messages under the gRPC limit.
	rs, err := e.cas.RegisterChunkMapping(ctx)
	if err != nil {
		t.Fatal(err)
	}
	page := make([]*repb.Digest, split.PageSize)
	for i := range page {
		page[i] = chunks[0]
	}
	rs.Send(&repb.RegisterChunkMappingRequest{BlobDigest: bd, DigestFunction: sha, ChunkDigests: page})
	for range chunked.MaxChunks / split.PageSize {
		if rs.Send(&repb.RegisterChunkMappingRequest{ChunkDigests: page}) != nil {
			break
		}
	}
	_, err = rs.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument, "more than")
	rs, _ = e.cas.RegisterChunkMapping(ctx)
	rs.Send(&repb.RegisterChunkMappingRequest{BlobDigest: bd, ChunkDigests: chunks})
	_, err = rs.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument, "digest_function")
	_, err = e.cas.SplitBlob(ctx, &repb.SplitBlobRequest{BlobDigest: chunks[0], DigestFunction: sha, ChunkingFunction: 9})
	wantCode(t, err, codes.InvalidArgument, "unknown chunking function")
	if _, err := e.ch.Mapping(ctx, key(bd)); err == nil {
		t.Error("a mapping was recorded")
	}
}

// A spliced blob one of whose chunks was evicted is missing everywhere,
// even though its mapping survives.
func TestEvictedChunkMakesBlobMissing(t *testing.T) {
	e := setup(t, 1<<20)
	parts := [][]byte{random(100<<10, 11), random(100<<10, 12), random(100<<10, 13)}
	chunks := e.upload(t, parts...)
	bd := dg(t, bytes.Join(parts, nil))
	ctx := context.Background()
	if _, err := e.cas.SpliceBlob(ctx, &repb.SpliceBlobRequest{BlobDigest: bd, ChunkDigests: chunks, DigestFunction: sha}); err != nil {
		t.Fatal(err)
	}
	mapKey := store.Key{Kind: store.AC, Instance: "\x00chunk-mapping\x00", Function: sha, Hash: bd.Hash, Size: bd.SizeBytes}
	keep := []store.Key{mapKey, key(chunks[1]), key(chunks[2])}
	// Fill the store while keeping the mapping and two chunks in use, so
	// that the least recently used chunk 0 is evicted. (Looking chunk 0 up
	// would count as a use, so it is only looked up at the end.)
	for i := range 20 {
		e.mem.FindMissing(ctx, keep)
		e.upload(t, random(64<<10, int64(100+i)))
	}
	if m, _ := e.mem.FindMissing(ctx, []store.Key{key(chunks[0])}); len(m) != 1 {
		t.Fatal("chunk 0 was not evicted")
	}
	if m, _ := e.mem.FindMissing(ctx, keep); len(m) != 0 {
		t.Fatalf("%d kept entries were evicted", len(m))
	}
	if e.missing(t, bd) != 1 {
		t.Fatal("blob with an evicted chunk reported present")
	}
	if _, err := e.read(t, bd, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("read of blob with an evicted chunk: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	e := setup(t, 1<<20)
	caps, err := e.caps.GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cc := caps.CacheCapabilities
	if !cc.SplitBlobSupport || !cc.SpliceBlobSupport || cc.FastCdc_2020Params.GetAvgChunkSizeBytes() != 16<<10 || cc.RepMaxCdcParams.GetMinChunkSizeBytes() != 8<<10 {
		t.Fatalf("chunking capabilities %v", cc)
	}
}

func TestOptionsRejected(t *testing.T) {
	ch := chunked.New(memory.New(1<<20), chunked.Options{})
	c := cas.New(ch, cas.Options{})
	for _, o := range []split.Options{
		{FastCDC: &repb.FastCdc2020Params{AvgChunkSizeBytes: 1000}},
		{RepMax: &repb.RepMaxCdcParams{MinChunkSizeBytes: 10}},
		{Default: 5},
	} {
		if _, err := split.New(c, ch, o); err == nil {
			t.Errorf("options %v accepted", o)
		}
	}
}

// On the disk store a spliced blob survives a restart: its mapping is an
// entry like any other.
func TestSpliceOnDiskSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	d, err := disk.Open(disk.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ch := chunked.New(d, chunked.Options{WholeBelow: -1})
	parts := [][]byte{random(50<<10, 21), random(60<<10, 22)}
	var chunks []*repb.Digest
	for _, p := range parts {
		c := dg(t, p)
		if err := ch.Put(ctx, key(c), c.SizeBytes, bytes.NewReader(p)); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	blob := bytes.Join(parts, nil)
	bd := dg(t, blob)
	if err := ch.Splice(ctx, key(bd), chunks, repb.ChunkingFunction_UNKNOWN); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = disk.Open(disk.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err := storeRead(chunked.New(d, chunked.Options{WholeBelow: -1}), key(bd))
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("after reopening: %d bytes, %v", len(got), err)
	}
}

func storeRead(s store.Store, k store.Key) ([]byte, error) {
	rc, _, err := s.Get(context.Background(), k, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Below WholeBelow a splice stores the concatenation whole: no mapping, and
// the blob outlives its chunks.
func TestSmallSpliceStoredWhole(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(0)
	ch := chunked.New(mem, chunked.Options{WholeBelow: 1 << 20})
	a, b := random(3000, 31), random(4000, 32)
	var chunks []*repb.Digest
	for _, p := range [][]byte{a, b} {
		c := dg(t, p)
		if err := ch.Put(ctx, key(c), c.SizeBytes, bytes.NewReader(p)); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	blob := append(append([]byte{}, a...), b...)
	bd := dg(t, blob)
	wrong := dg(t, append(append([]byte{}, b...), a...))
	if err := ch.Splice(ctx, key(wrong), chunks, repb.ChunkingFunction_UNKNOWN); err == nil {
		t.Fatal("mismatching small splice accepted")
	}
	if m, _ := mem.FindMissing(ctx, []store.Key{key(wrong)}); len(m) != 1 {
		t.Fatal("mismatching small splice stored something")
	}
	if err := ch.Splice(ctx, key(bd), chunks, repb.ChunkingFunction_UNKNOWN); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Mapping(ctx, key(bd)); err == nil {
		t.Error("a small splice recorded a mapping")
	}
	got, err := storeRead(mem, key(bd))
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("the wrapped store holds %d bytes, %v", len(got), err)
	}
}
