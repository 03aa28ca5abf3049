package chunkclient_test

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/capabilities"
	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/chunkclient"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/split"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/chunked"
	"github.com/ferrule-build/ferrule/remote/store/grpcstore"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

func serve(t *testing.T, chunking bool) *grpc.ClientConn {
	t.Helper()
	ch := chunked.New(memory.New(0), chunked.Options{})
	c := cas.New(ch, cas.Options{})
	g := grpc.NewServer()
	copts := capabilities.Options{}
	if chunking {
		sp, err := split.New(c, ch, split.Options{FastCDC: &repb.FastCdc2020Params{AvgChunkSizeBytes: 16 << 10}})
		if err != nil {
			t.Fatal(err)
		}
		sp.Register(g)
		copts.Chunking = sp
	} else {
		c.Register(g)
	}
	bytestream.New(ch, bytestream.Options{}).Register(g)
	capabilities.New(copts).Register(g)
	conn := grpctest.Dial(t, g)
	return conn
}

func client(t *testing.T, conn *grpc.ClientConn) *chunkclient.Store {
	t.Helper()
	s, err := chunkclient.New(context.Background(), conn, "", grpcstore.New(conn), chunkclient.Options{Local: store.Verifying(memory.New(0)), TempDir: t.TempDir()})
	if err != nil || s == nil {
		t.Fatalf("chunking client: %v, %v", s, err)
	}
	return s
}

func key(t *testing.T, b []byte) store.Key {
	d, err := digest.Of(repb.DigestFunction_SHA256, b)
	if err != nil {
		t.Fatal(err)
	}
	return store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: d.Hash, Size: d.SizeBytes}
}

func get(t *testing.T, s store.Store, k store.Key) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An edited blob moves only the chunks around the edit, both ways, and the
// server holds it whole for clients that do not chunk.
func TestEditMovesFewChunks(t *testing.T) {
	conn := serve(t, true)
	ctx := context.Background()
	v1 := make([]byte, 2<<20)
	rand.New(rand.NewSource(1)).Read(v1)
	v2 := append(append(append([]byte{}, v1[:1<<20]...), []byte("an edit in the middle")...), v1[1<<20:]...)
	k1, k2 := key(t, v1), key(t, v2)

	up := client(t, conn)
	if err := up.Put(ctx, k1, k1.Size, bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	first := up.Stats.UploadSent.Load()
	if err := up.Put(ctx, k2, k2.Size, bytes.NewReader(v2)); err != nil {
		t.Fatal(err)
	}
	second := up.Stats.UploadSent.Load() - first
	if first != k1.Size || second <= 0 || second > 200<<10 {
		t.Fatalf("uploads sent %d bytes of %d, then %d of %d", first, k1.Size, second, k2.Size)
	}
	plain := grpcstore.New(conn)
	if !bytes.Equal(get(t, plain, k2), v2) {
		t.Fatal("spliced blob does not read whole")
	}

	down := client(t, conn)
	if !bytes.Equal(get(t, down, k1), v1) {
		t.Fatal("chunked download of v1 differs")
	}
	recv1 := down.Stats.DownloadRecv.Load()
	if !bytes.Equal(get(t, down, k2), v2) {
		t.Fatal("chunked download of v2 differs")
	}
	recv2 := down.Stats.DownloadRecv.Load() - recv1
	if recv1 != k1.Size || recv2 <= 0 || recv2 > 200<<10 {
		t.Fatalf("downloads received %d bytes of %d, then %d of %d", recv1, k1.Size, recv2, k2.Size)
	}
	// A short blob passes through whole.
	small := []byte("small")
	if err := down.Put(ctx, key(t, small), 5, bytes.NewReader(small)); err != nil || down.Stats.UploadBlobs.Load() != 0 {
		t.Fatalf("small put: %v, %d chunked", err, down.Stats.UploadBlobs.Load())
	}
	// A wrong digest is refused before anything is spliced.
	bad := k1
	bad.Hash = k2.Hash
	if err := down.Put(ctx, bad, bad.Size, bytes.NewReader(v1)); err == nil {
		t.Fatal("put of mismatching content accepted")
	}
}

func TestServerWithoutChunking(t *testing.T) {
	conn := serve(t, false)
	s, err := chunkclient.New(context.Background(), conn, "", grpcstore.New(conn), chunkclient.Options{Local: memory.New(0)})
	if err != nil || s != nil {
		t.Fatalf("got %v, %v; want no chunking client", s, err)
	}
}
