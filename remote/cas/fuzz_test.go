package cas_test

import (
	"bytes"
	"context"
	"io"
	"slices"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// batchSeed is a BatchUpdateBlobsRequest with one good and one mislabelled
// blob, for the seeds.
func batchSeed() []byte {
	good, _ := digest.Of(sha, []byte("hello"))
	req := &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: good, Data: []byte("hello")},
		{Digest: &repb.Digest{Hash: good.Hash, SizeBytes: 4}, Data: []byte("hell")},
		{Digest: good, Data: []byte("(\xb5/\xfd"), Compressor: repb.Compressor_ZSTD},
	}}
	data, _ := proto.Marshal(req)
	return data
}

// FuzzBatchUpdateBlobs: any BatchUpdateBlobsRequest (plus one blob labelled
// with its true digest) is an RPC error or a response with one status per
// blob; a blob reported stored reads back with the content its digest names.
// Run: go test -run '^$' -fuzz '^FuzzBatchUpdateBlobs$' -fuzztime 10s ./remote/cas/
func FuzzBatchUpdateBlobs(f *testing.F) {
	f.Add(batchSeed(), []byte("extra"), "")
	f.Add([]byte{0x0a, 0x03, 'a', '/', 'b'}, []byte(nil), "inst")
	f.Add([]byte{0xff, 0xff}, []byte("x"), "blobs")
	st := memory.New(64 << 20)
	srv := cas.New(st, cas.Options{MaxBatchBytes: 1 << 20})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, reqBytes, extra []byte, instance string) {
		req := &repb.BatchUpdateBlobsRequest{}
		if proto.Unmarshal(reqBytes, req) != nil {
			return // gRPC would not decode it either
		}
		d, _ := digest.Of(sha, extra)
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: extra})
		if instance != "" {
			req.InstanceName = instance
		}
		resp, err := srv.BatchUpdateBlobs(ctx, req)
		if err != nil {
			return
		}
		if len(resp.Responses) != len(req.Requests) {
			t.Fatalf("%d responses to %d blobs", len(resp.Responses), len(req.Requests))
		}
		for _, r := range resp.Responses {
			if codes.Code(r.GetStatus().GetCode()) != codes.OK || r.Digest.GetSizeBytes() == 0 {
				continue // the empty blob is present without being stored
			}
			fn, err := digest.Resolve(req.DigestFunction, r.Digest.GetHash())
			if err != nil {
				t.Fatalf("blob %v stored under an unresolvable digest: %v", r.Digest, err)
			}
			k := store.Key{Kind: store.CAS, Instance: req.InstanceName, Function: fn, Hash: r.Digest.Hash, Size: r.Digest.SizeBytes}
			rc, _, err := st.Get(ctx, k, 0)
			if err != nil {
				t.Fatalf("blob %v reported stored: %v", r.Digest, err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			if got, _ := digest.Of(fn, data); got.Hash != r.Digest.Hash || got.SizeBytes != r.Digest.SizeBytes {
				t.Fatalf("blob %v stored with content of digest %v", r.Digest, got)
			}
		}
	})
}

// FuzzBatchReadBlobs: any BatchReadBlobsRequest over a store holding a few
// blobs is an RPC error or one status per digest; data returned as found
// (uncompressed) is the blob its digest names.
// Run: go test -run '^$' -fuzz '^FuzzBatchReadBlobs$' -fuzztime 10s ./remote/cas/
func FuzzBatchReadBlobs(f *testing.F) {
	st := memory.New(16 << 20)
	ctx := context.Background()
	var present []*repb.Digest
	for _, b := range [][]byte{[]byte("hello"), nil, bytes.Repeat([]byte("ab"), 1000)} {
		d, _ := digest.Of(sha, b)
		if err := st.Put(ctx, store.Key{Kind: store.CAS, Function: sha, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(b)); err != nil {
			f.Fatal(err)
		}
		present = append(present, d)
	}
	seed, _ := proto.Marshal(&repb.BatchReadBlobsRequest{Digests: present, AcceptableCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD}})
	f.Add(seed)
	seed, _ = proto.Marshal(&repb.BatchReadBlobsRequest{Digests: []*repb.Digest{{Hash: present[0].Hash, SizeBytes: -1}, {Hash: "zz"}}, DigestFunction: repb.DigestFunction_BLAKE3})
	f.Add(seed)
	f.Add([]byte{0x12, 0x00})
	srv := cas.New(st, cas.Options{MaxBatchBytes: 1 << 20})
	f.Fuzz(func(t *testing.T, reqBytes []byte) {
		req := &repb.BatchReadBlobsRequest{}
		if proto.Unmarshal(reqBytes, req) != nil {
			return
		}
		resp, err := srv.BatchReadBlobs(ctx, req)
		if err != nil {
			return
		}
		if len(resp.Responses) != len(req.Digests) {
			t.Fatalf("%d responses to %d digests", len(resp.Responses), len(req.Digests))
		}
		for _, r := range resp.Responses {
			if codes.Code(r.GetStatus().GetCode()) != codes.OK || r.Compressor != repb.Compressor_IDENTITY {
				continue
			}
			fn, err := digest.Resolve(req.DigestFunction, r.Digest.GetHash())
			if err != nil {
				t.Fatalf("read %v under an unresolvable digest: %v", r.Digest, err)
			}
			if got, _ := digest.Of(fn, r.Data); got.Hash != r.Digest.Hash || got.SizeBytes != r.Digest.SizeBytes {
				t.Fatalf("read %v returned data of digest %v", r.Digest, got)
			}
		}
	})
}

// FuzzGetTree: GetTree over a fuzzed DAG of three Directory messages (the
// first's subdirectories rewritten to point at the second and third, the
// second's at the third), with a fuzzed page size and first page token,
// ends with an error or pages of directories that were stored; following
// next_page_token terminates.
// Run: go test -run '^$' -fuzz '^FuzzGetTree$' -fuzztime 10s ./remote/cas/
func FuzzGetTree(f *testing.F) {
	leaf, _ := proto.Marshal(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: &repb.Digest{Hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}}})
	mid, _ := proto.Marshal(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a"}, {Name: "b"}}})
	f.Add(mid, mid, leaf, int32(1), "")
	f.Add(mid, leaf, leaf, int32(0), "1:00000000000000000000000000000000")
	f.Add([]byte{0x1a, 0x00}, []byte(nil), []byte{0xff}, int32(-5), "garbage")
	st := memory.New(64 << 20)
	c := treeClient(f, st)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, d1, d2, d3 []byte, pageSize int32, token string) {
		var stored []*repb.Directory // what parses of the blobs put
		put := func(data []byte) *repb.Digest {
			d, _ := digest.Of(sha, data)
			if err := st.Put(ctx, store.Key{Kind: store.CAS, Function: sha, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if dir := (&repb.Directory{}); proto.Unmarshal(data, dir) == nil {
				stored = append(stored, dir)
			}
			return d
		}
		point := func(data []byte, to ...*repb.Digest) []byte {
			dir := &repb.Directory{}
			if proto.Unmarshal(data, dir) != nil {
				return data
			}
			for i, n := range dir.Directories {
				n.Digest = to[i%len(to)]
			}
			out, _ := proto.Marshal(dir)
			return out
		}
		third := put(d3)
		second := put(point(d2, third))
		root := put(point(d1, second, third))
		for pages := 0; pages < 1000; pages++ {
			stream, err := c.GetTree(ctx, &repb.GetTreeRequest{RootDigest: root, PageSize: pageSize, PageToken: token})
			if err != nil {
				return
			}
			next := ""
			for {
				resp, err := stream.Recv()
				if err != nil {
					if err != io.EOF {
						return
					}
					break
				}
				for _, dir := range resp.Directories {
					if !slices.ContainsFunc(stored, func(s *repb.Directory) bool { return proto.Equal(s, dir) }) {
						t.Fatalf("GetTree returned a directory that was not stored: %v", dir)
					}
				}
				next = resp.NextPageToken
			}
			if next == "" {
				return
			}
			token = next
		}
		t.Fatalf("GetTree of 3 directories still paging after 1000 pages (page size %d)", pageSize)
	})
}
