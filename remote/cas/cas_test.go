package cas_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
)

const sha = repb.DigestFunction_SHA256

func setup(t *testing.T, maxBatch int64) (repb.ContentAddressableStorageClient, *memory.Store) {
	t.Helper()
	st := memory.New(0)
	g := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	cas.New(st, cas.Options{MaxBatchBytes: maxBatch}).Register(g)
	conn := grpctest.Dial(t, g, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	return repb.NewContentAddressableStorageClient(conn), st
}

func dg(t *testing.T, fn repb.DigestFunction_Value, data []byte) *repb.Digest {
	t.Helper()
	d, err := digest.Of(fn, data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func put(t *testing.T, st store.Store, instance string, fn repb.DigestFunction_Value, data []byte) *repb.Digest {
	t.Helper()
	d := dg(t, fn, data)
	k := store.Key{Kind: store.CAS, Instance: instance, Function: fn, Hash: d.Hash, Size: d.SizeBytes}
	if err := st.Put(context.Background(), k, d.SizeBytes, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
	if code != codes.OK && status.Convert(err).Message() == "" {
		t.Fatalf("error %v has no message", err)
	}
}

func TestFindMissing(t *testing.T) {
	c, st := setup(t, 0)
	ctx := context.Background()
	have := put(t, st, "", sha, []byte("present"))
	haveB3 := put(t, st, "", repb.DigestFunction_BLAKE3, []byte("b3"))
	missing := dg(t, sha, []byte("absent"))
	resp, err := c.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{
		BlobDigests: []*repb.Digest{have, missing, digest.Empty(sha)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.MissingBlobDigests) != 1 || !proto.Equal(resp.MissingBlobDigests[0], missing) {
		t.Fatalf("missing = %v, want only %v", resp.MissingBlobDigests, missing)
	}
	// Digest functions and instances are separate key spaces.
	resp, err = c.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{have, haveB3}, DigestFunction: repb.DigestFunction_BLAKE3})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.MissingBlobDigests) != 1 || resp.MissingBlobDigests[0].Hash != have.Hash {
		t.Fatalf("blake3 lookup: missing = %v, want the sha256 blob only", resp.MissingBlobDigests)
	}
	resp, err = c.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{InstanceName: "a/b", BlobDigests: []*repb.Digest{have, digest.Empty(sha)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.MissingBlobDigests) != 1 {
		t.Fatalf("other instance: missing = %v, want the blob", resp.MissingBlobDigests)
	}
}

func TestBadInput(t *testing.T) {
	c, _ := setup(t, 0)
	ctx := context.Background()
	good := dg(t, sha, []byte("x"))
	for _, inst := range []string{"../x", "a/../b", "/a", "a/", "a//b", "a/blobs", "uploads", "a\\b", "a\x00b", "."} {
		_, err := c.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{InstanceName: inst, BlobDigests: []*repb.Digest{good}})
		wantCode(t, err, codes.InvalidArgument)
	}
	for _, d := range []*repb.Digest{
		{Hash: good.Hash, SizeBytes: -1},
		{Hash: "abc", SizeBytes: 1},
		{Hash: "ZZ" + good.Hash[2:], SizeBytes: 1},
		{Hash: "../../../../../../../../../../../../../../../../../../../../etc/x", SizeBytes: 1},
		nil,
	} {
		_, err := c.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d}})
		wantCode(t, err, codes.InvalidArgument)
	}
	_, err := c.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{good}, DigestFunction: repb.DigestFunction_MD5})
	wantCode(t, err, codes.InvalidArgument)
}

func TestBatchUpdateAndRead(t *testing.T) {
	c, st := setup(t, 0)
	ctx := context.Background()
	a, b := []byte("alpha"), bytes.Repeat([]byte("beta"), 1000)
	da, db := dg(t, sha, a), dg(t, sha, b)
	bad := dg(t, sha, []byte("something else"))
	resp, err := c.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: da, Data: a},
		{Digest: db, Data: zstdcodec.Compress(b), Compressor: repb.Compressor_ZSTD},
		{Digest: bad, Data: []byte("something els!")},                // hash mismatch
		{Digest: &repb.Digest{Hash: da.Hash, SizeBytes: 4}, Data: a}, // size mismatch
		{Digest: digest.Empty(sha)},
		{Digest: &repb.Digest{Hash: "nothex", SizeBytes: 1}, Data: []byte("x")},
		{Digest: da, Data: a, Compressor: repb.Compressor_DEFLATE},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.OK, codes.InvalidArgument, codes.InvalidArgument, codes.OK, codes.InvalidArgument, codes.InvalidArgument}
	for i, r := range resp.Responses {
		if codes.Code(r.Status.Code) != want[i] {
			t.Errorf("blob %d: status %v, want %s", i, r.Status, want[i])
		}
	}
	// Nothing was stored for the mismatches.
	if s := st.Stats(); s.Entries != 2 {
		t.Fatalf("store holds %d entries, want 2", s.Entries)
	}
	missing := dg(t, sha, []byte("never"))
	for _, zstdOK := range []bool{false, true} {
		req := &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{da, db, missing, digest.Empty(sha)}}
		if zstdOK {
			req.AcceptableCompressors = []repb.Compressor_Value{repb.Compressor_ZSTD}
		}
		rr, err := c.BatchReadBlobs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		wantData := [][]byte{a, b, nil, {}}
		wantCodes := []codes.Code{codes.OK, codes.OK, codes.NotFound, codes.OK}
		for i, r := range rr.Responses {
			if codes.Code(r.Status.Code) != wantCodes[i] {
				t.Fatalf("read %d: %v, want %s", i, r.Status, wantCodes[i])
			}
			if wantCodes[i] != codes.OK {
				continue
			}
			data := r.Data
			if r.Compressor == repb.Compressor_ZSTD {
				if !zstdOK {
					t.Fatalf("read %d compressed though not asked", i)
				}
				dec, _ := zstd.NewReader(nil)
				data, err = dec.DecodeAll(r.Data, nil)
				dec.Close()
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
			} else if zstdOK {
				t.Fatalf("read %d not compressed though asked", i)
			}
			if !bytes.Equal(data, wantData[i]) {
				t.Fatalf("read %d: got %d bytes, want %d", i, len(data), len(wantData[i]))
			}
		}
	}
}

func TestBatchLimits(t *testing.T) {
	c, _ := setup(t, 1000)
	ctx := context.Background()
	big := bytes.Repeat([]byte{'x'}, 1001)
	_, err := c.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: dg(t, sha, big), Data: big}}})
	wantCode(t, err, codes.InvalidArgument)
	var reqs []*repb.BatchUpdateBlobsRequest_Request
	for i := range 3 {
		data := bytes.Repeat([]byte{byte(i)}, 400)
		reqs = append(reqs, &repb.BatchUpdateBlobsRequest_Request{Digest: dg(t, sha, data), Data: data})
	}
	_, err = c.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: reqs})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{dg(t, sha, big)}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: reqs[:2]})
	wantCode(t, err, codes.OK)
}

func TestBatchZstdBomb(t *testing.T) {
	c, st := setup(t, 0)
	ctx := context.Background()
	// 64 MiB of zeros compresses to a few KiB but claims to be 10 bytes.
	bomb := zstdcodec.Compress(make([]byte, 64<<20))
	small := make([]byte, 10)
	resp, err := c.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: dg(t, sha, small), Data: bomb, Compressor: repb.Compressor_ZSTD},
		{Digest: dg(t, sha, []byte("garbage")), Data: []byte("not zstd at all"), Compressor: repb.Compressor_ZSTD},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Responses {
		if codes.Code(r.Status.Code) != codes.InvalidArgument || r.Status.Message == "" {
			t.Errorf("blob %d: %v, want INVALID_ARGUMENT with a message", i, r.Status)
		}
	}
	if n := st.Stats().Entries; n != 0 {
		t.Fatalf("%d entries stored", n)
	}
}

func dirBlob(t *testing.T, st store.Store, d *repb.Directory) *repb.Digest {
	t.Helper()
	data, err := proto.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return put(t, st, "", sha, data)
}

func getTree(t *testing.T, c repb.ContentAddressableStorageClient, root *repb.Digest, pageSize int32, token string) ([]*repb.Directory, string, error) {
	t.Helper()
	stream, err := c.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: root, PageSize: pageSize, PageToken: token})
	if err != nil {
		return nil, "", err
	}
	var dirs []*repb.Directory
	next := ""
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return dirs, next, nil
		}
		if err != nil {
			return nil, "", err
		}
		dirs = append(dirs, r.Directories...)
		next = r.NextPageToken
	}
}

func TestGetTree(t *testing.T) {
	c, st := setup(t, 0)
	// root -> a, b; a -> leaf; b -> leaf (shared); plus 20 distinct leaves under b.
	leaf := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: dg(t, sha, []byte("f"))}}}
	dLeaf := dirBlob(t, st, leaf)
	a := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "leaf", Digest: dLeaf}}}
	b := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "leaf", Digest: dLeaf}}}
	for i := range 20 {
		d := &repb.Directory{Files: []*repb.FileNode{{Name: fmt.Sprint("g", i), Digest: dg(t, sha, []byte{byte(i)})}}}
		b.Directories = append(b.Directories, &repb.DirectoryNode{Name: fmt.Sprint("d", i), Digest: dirBlob(t, st, d)})
	}
	// A child that is missing from the CAS is left out.
	b.Directories = append(b.Directories, &repb.DirectoryNode{Name: "gone", Digest: dg(t, sha, []byte("no such dir"))})
	root := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: dirBlob(t, st, a)}, {Name: "b", Digest: dirBlob(t, st, b)}}}
	dRoot := dirBlob(t, st, root)

	all, next, err := getTree(t, c, dRoot, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if next != "" || len(all) != 24 { // root, a, b, leaf, 20 leaves
		t.Fatalf("one page: %d directories, token %q; want 24 and none", len(all), next)
	}
	if !proto.Equal(all[0], root) {
		t.Fatalf("first directory is not the root")
	}
	var paged []*repb.Directory
	token, pages := "", 0
	for {
		dirs, next, err := getTree(t, c, dRoot, 5, token)
		if err != nil {
			t.Fatal(err)
		}
		if len(dirs) > 5 {
			t.Fatalf("page of %d directories with page_size 5", len(dirs))
		}
		paged = append(paged, dirs...)
		pages++
		if next == "" {
			break
		}
		token = next
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(paged) != len(all) {
		t.Fatalf("paged %d directories, unpaged %d", len(paged), len(all))
	}
	for i := range all {
		if !proto.Equal(all[i], paged[i]) {
			t.Fatalf("directory %d differs between paged and unpaged", i)
		}
	}
	_, _, err = getTree(t, c, dg(t, sha, []byte("no root")), 0, "")
	wantCode(t, err, codes.NotFound)
	_, _, err = getTree(t, c, dRoot, 0, "bogus")
	wantCode(t, err, codes.InvalidArgument)
	_, _, err = getTree(t, c, dRoot, -1, "")
	wantCode(t, err, codes.InvalidArgument)
	_, _, err = getTree(t, c, &repb.Digest{Hash: "x", SizeBytes: 1}, 0, "")
	wantCode(t, err, codes.InvalidArgument)
	// A root that is not a Directory.
	_, _, err = getTree(t, c, put(t, st, "", sha, []byte{0xff, 0xff, 0xff}), 0, "")
	wantCode(t, err, codes.InvalidArgument)
}

func TestHugeSizes(t *testing.T) {
	c, _ := setup(t, 0)
	ctx := context.Background()
	h := dg(t, sha, []byte("x")).Hash
	huge := &repb.Digest{Hash: h, SizeBytes: 1<<63 - 1}
	_, err := c.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{huge, huge}})
	wantCode(t, err, codes.InvalidArgument)
	resp, err := c.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: huge, Data: []byte("x")},
		{Digest: huge, Data: zstdcodec.Compress([]byte("x")), Compressor: repb.Compressor_ZSTD},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Responses {
		if codes.Code(r.Status.Code) != codes.InvalidArgument {
			t.Errorf("blob %d: %v", i, r.Status)
		}
	}
	m, err := c.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{huge}})
	if err != nil || len(m.MissingBlobDigests) != 1 {
		t.Fatalf("FindMissing of a huge digest: %v %v", m, err)
	}
}
