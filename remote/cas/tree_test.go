package cas_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// countingStore counts the values read from the store under it.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, k store.Key, offset int64) (io.ReadCloser, int64, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, k, offset)
}

func (c *countingStore) Unwrap() store.Store { return c.Store }

// wideTree stores a root Directory with n distinct child directories.
func wideTree(tb testing.TB, st store.Store, n int) *repb.Digest {
	tb.Helper()
	putDir := func(d *repb.Directory) *repb.Digest {
		data, err := proto.Marshal(d)
		if err != nil {
			tb.Fatal(err)
		}
		dg, _ := digest.Of(sha, data)
		k := store.Key{Kind: store.CAS, Function: sha, Hash: dg.Hash, Size: dg.SizeBytes}
		if err := st.Put(context.Background(), k, dg.SizeBytes, bytesReader(data)); err != nil {
			tb.Fatal(err)
		}
		return dg
	}
	file, _ := digest.Of(sha, nil)
	root := &repb.Directory{}
	for i := range n {
		name := fmt.Sprintf("d%06d", i)
		child := &repb.Directory{Files: []*repb.FileNode{{Name: name, Digest: file}}}
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: name, Digest: putDir(child)})
	}
	return putDir(root)
}

func treeClient(tb testing.TB, st store.Store) repb.ContentAddressableStorageClient {
	g := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	cas.New(st, cas.Options{}).Register(g)
	conn := grpctest.Dial(tb, g, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	return repb.NewContentAddressableStorageClient(conn)
}

// pageAll fetches the whole tree in pages of pageSize and returns the
// number of directories and of pages.
func pageAll(tb testing.TB, c repb.ContentAddressableStorageClient, root *repb.Digest, pageSize int32) (dirs, pages int) {
	token := ""
	for {
		stream, err := c.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: root, PageSize: pageSize, PageToken: token})
		if err != nil {
			tb.Fatal(err)
		}
		next := ""
		for {
			r, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatal(err)
			}
			dirs += len(r.Directories)
			next = r.NextPageToken
		}
		pages++
		if next == "" {
			return dirs, pages
		}
		token = next
	}
}

// TestGetTreePagingLinear: a directory of 50,000 children fetched in pages
// reads each Directory from the store once (plus the root once per page
// at most), not once per page.
func TestGetTreePagingLinear(t *testing.T) {
	const n = 50_000
	st := &countingStore{Store: memory.New(0)}
	root := wideTree(t, st, n)
	c := treeClient(t, st)
	st.gets.Store(0)
	dirs, pages := pageAll(t, c, root, 1000)
	if dirs != n+1 {
		t.Fatalf("%d directories, want %d", dirs, n+1)
	}
	if pages != (n+1+999)/1000 {
		t.Fatalf("%d pages of 1000 for %d directories", pages, n+1)
	}
	if reads := st.gets.Load(); reads > int64(n+1+pages) {
		t.Errorf("%d store reads for %d directories in %d pages; want at most %d", reads, n+1, pages, n+1+pages)
	}
}

func BenchmarkGetTree50k(b *testing.B) {
	const n = 50_000
	st := &countingStore{Store: memory.New(0)}
	root := wideTree(b, st, n)
	c := treeClient(b, st)
	st.gets.Store(0)
	b.ResetTimer()
	for range b.N {
		pageAll(b, c, root, 1000)
	}
	b.ReportMetric(float64(st.gets.Load())/float64(b.N), "reads/op")
}

// TestGetTreeTokens: a malformed page token is INVALID_ARGUMENT; a token
// of another tree does not resume this one's walk.
func TestGetTreeTokens(t *testing.T) {
	st := memory.New(0)
	c := treeClient(t, st)
	root := wideTree(t, st, 30)
	for _, tok := range []string{"bogus", "!!", base64.RawURLEncoding.EncodeToString([]byte("c-1.00")), base64.RawURLEncoding.EncodeToString([]byte("cx.zz")), base64.RawURLEncoding.EncodeToString([]byte("o"))} {
		stream, err := c.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: root, PageSize: 10, PageToken: tok})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("token %q: got %v, want INVALID_ARGUMENT", tok, err)
		}
	}
}

// TestGetTreeTokenReused: a token used a second time (its walk was
// taken by the first use) gives the same page, walked again.
func TestGetTreeTokenReused(t *testing.T) {
	st := memory.New(0)
	c := treeClient(t, st)
	root := wideTree(t, st, 30)
	page := func(tok string) ([]*repb.Directory, string) {
		stream, err := c.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: root, PageSize: 10, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r.Directories, r.NextPageToken
	}
	_, tok := page("")
	first, next1 := page(tok)
	again, next2 := page(tok)
	if len(first) != 10 || len(again) != 10 || next1 == "" || next2 == "" {
		t.Fatalf("pages of %d and %d directories", len(first), len(again))
	}
	for i := range first {
		if !proto.Equal(first[i], again[i]) {
			t.Fatalf("directory %d differs between the two uses of one token", i)
		}
	}
}

// TestGetTreeMalformedChild: a child that is not a Directory is
// FAILED_PRECONDITION naming its digest, not INTERNAL.
func TestGetTreeMalformedChild(t *testing.T) {
	st := memory.New(0)
	c := treeClient(t, st)
	junk := []byte{0xff, 0xff, 0xff}
	jd, _ := digest.Of(sha, junk)
	if err := st.Put(context.Background(), store.Key{Kind: store.CAS, Function: sha, Hash: jd.Hash, Size: jd.SizeBytes}, jd.SizeBytes, bytesReader(junk)); err != nil {
		t.Fatal(err)
	}
	data, _ := proto.Marshal(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "bad", Digest: jd}}})
	rd, _ := digest.Of(sha, data)
	if err := st.Put(context.Background(), store.Key{Kind: store.CAS, Function: sha, Hash: rd.Hash, Size: rd.SizeBytes}, rd.SizeBytes, bytesReader(data)); err != nil {
		t.Fatal(err)
	}
	stream, err := c.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: rd})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition || !containsStr(status.Convert(err).Message(), jd.Hash) {
		t.Fatalf("malformed child: got %v, want FAILED_PRECONDITION naming %s", err, jd.Hash)
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }
