package cas_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
)

// twoFrames is a memory store that hands out blobs as two zstd frames (the
// halves, compressed separately), except for blobs listed in plain
// (ErrNotCompressed) or broken (a reader that fails).
type twoFrames struct {
	*memory.Store
	plain, broken map[string]bool
}

func halves(data []byte) []byte {
	h := len(data) / 2
	return append(zstdcodec.Compress(data[:h]), zstdcodec.Compress(data[h:])...)
}

func (s *twoFrames) GetCompressed(ctx context.Context, k store.Key) (io.ReadCloser, int64, error) {
	if s.plain[k.Hash] {
		return nil, 0, store.ErrNotCompressed
	}
	rc, size, err := s.Get(ctx, k, 0)
	if err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, 0, err
	}
	if s.broken[k.Hash] {
		return io.NopCloser(io.MultiReader(bytes.NewReader(halves(data)[:10]), failing{})), size, nil
	}
	return io.NopCloser(bytes.NewReader(halves(data))), size, nil
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("corrupt frame") }

func TestBatchReadStoredFrames(t *testing.T) {
	st := &twoFrames{Store: memory.New(0), plain: map[string]bool{}, broken: map[string]bool{}}
	g := grpc.NewServer()
	cas.New(st, cas.Options{}).Register(g)
	conn := grpctest.Dial(t, g)
	c := repb.NewContentAddressableStorageClient(conn)

	blobs := [][]byte{bytes.Repeat([]byte("framed "), 1000), []byte("stored plain, compressed here"), bytes.Repeat([]byte("broken "), 500)}
	var ds []*repb.Digest
	for _, b := range blobs {
		ds = append(ds, put(t, st, "", sha, b))
	}
	st.plain[ds[1].Hash] = true
	st.broken[ds[2].Hash] = true
	resp, err := c.BatchReadBlobs(context.Background(), &repb.BatchReadBlobsRequest{
		Digests:               append(ds, dg(t, sha, []byte("missing"))),
		AcceptableCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Responses
	if r[0].Status.GetCode() != 0 || r[0].Compressor != repb.Compressor_ZSTD || !bytes.Equal(r[0].Data, halves(blobs[0])) {
		t.Errorf("blob kept compressed: status %v, compressor %s, %d bytes (want the store's %d bytes of frames)", r[0].Status, r[0].Compressor, len(r[0].Data), len(halves(blobs[0])))
	}
	if r[1].Status.GetCode() != 0 || r[1].Compressor != repb.Compressor_ZSTD || !bytes.Equal(unzstd(t, r[1].Data), blobs[1]) {
		t.Errorf("blob stored plain: status %v, compressor %s", r[1].Status, r[1].Compressor)
	}
	if codes.Code(r[2].Status.GetCode()) != codes.Internal || len(r[2].Data) != 0 {
		t.Errorf("blob with a corrupt frame: status %v, %d bytes", r[2].Status, len(r[2].Data))
	}
	if codes.Code(r[3].Status.GetCode()) != codes.NotFound || len(r[3].Data) != 0 {
		t.Errorf("missing blob: status %v, %d bytes", r[3].Status, len(r[3].Data))
	}
}

func unzstd(t *testing.T, b []byte) []byte {
	t.Helper()
	z, err := zstdcodec.NewDecompressor(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	out, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
