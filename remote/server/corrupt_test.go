package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store/disk"
)

// TestCorruptBlobHealsOverGRPC flips a bit in a blob stored on disk, in
// both storage modes: a ByteStream read fails with DATA_LOSS,
// FindMissingBlobs then lists the blob, and uploading it again (not
// skipped as already present) makes it readable.
func TestCorruptBlobHealsOverGRPC(t *testing.T) {
	for _, compress := range []bool{false, true} {
		for _, size := range []int{300, 100_000} {
			t.Run(fmt.Sprintf("compress=%v/size=%d", compress, size), func(t *testing.T) {
				dir := t.TempDir()
				d, err := disk.Open(disk.Options{Dir: dir, Compress: compress})
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				r := start(t, server.Config{Store: d}, nil)
				ctx := context.Background()
				cas := repb.NewContentAddressableStorageClient(r.conn)
				bs := bspb.NewByteStreamClient(r.conn)
				data := bytes.Repeat([]byte(fmt.Sprintf("blob of %d bytes ", size)), size)[:size]
				dg, _ := digest.Of(repb.DigestFunction_SHA256, data)
				upload := func() {
					t.Helper()
					resp, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: dg, Data: data}}})
					if err != nil || codes.Code(resp.Responses[0].GetStatus().GetCode()) != codes.OK {
						t.Fatalf("upload: %v %v", err, resp)
					}
				}
				read := func(name string) ([]byte, error) {
					stream, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: name})
					if err != nil {
						return nil, err
					}
					var got []byte
					for {
						m, err := stream.Recv()
						if err == io.EOF {
							return got, nil
						}
						if err != nil {
							return got, err
						}
						got = append(got, m.Data...)
					}
				}
				upload()
				var path string
				filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, de fs.DirEntry, err error) error {
					if err == nil && strings.HasPrefix(de.Name(), dg.Hash+"-") {
						path = p
					}
					return nil
				})
				if path == "" {
					t.Fatal("blob file not found")
				}
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 1)
				f.ReadAt(b, 90) // inside the value: past the 66-byte header, before any table
				f.WriteAt([]byte{b[0] ^ 1}, 90)
				f.Close()

				name := fmt.Sprintf("blobs/%s/%d", dg.Hash, dg.SizeBytes)
				if _, err := read(name); status.Code(err) != codes.DataLoss {
					t.Fatalf("read of a damaged blob: %v, want DATA_LOSS", err)
				}
				fm, err := cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{dg}})
				if err != nil || len(fm.MissingBlobDigests) != 1 {
					t.Fatalf("FindMissingBlobs after the damage was found: %v, %v; want it missing", fm, err)
				}
				upload()
				for _, n := range []string{name, fmt.Sprintf("compressed-blobs/zstd/%s/%d", dg.Hash, dg.SizeBytes)} {
					got, err := read(n)
					if err != nil {
						t.Fatalf("read %s after the re-upload: %v", n, err)
					}
					if strings.HasPrefix(n, "blobs/") && !bytes.Equal(got, data) {
						t.Fatal("wrong bytes after the re-upload")
					}
				}
			})
		}
	}
}

// TestCorruptACEntryIsAMiss flips a bit in an action cache entry stored on
// disk: GetActionResult answers NOT_FOUND from the first read on (a cache
// miss, so the client runs the action), and storing the result again
// makes it readable.
func TestCorruptACEntryIsAMiss(t *testing.T) {
	dir := t.TempDir()
	d, err := disk.Open(disk.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// No entry cache: every read reaches the disk.
	r := start(t, server.Config{Store: d, ACCacheBytes: -1}, nil)
	ctx := context.Background()
	ac := repb.NewActionCacheClient(r.conn)
	action, _ := digest.Of(repb.DigestFunction_SHA256, []byte("an action"))
	res := &repb.ActionResult{ExitCode: 3, StdoutRaw: bytes.Repeat([]byte("stdout "), 40)}
	put := func() {
		t.Helper()
		if _, err := ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: res}); err != nil {
			t.Fatal(err)
		}
	}
	put()
	var path string
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), action.Hash+"-") {
			path = p
		}
		return nil
	})
	if path == "" {
		t.Fatal("entry file not found")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	at := fi.Size() - 20 // inside the value, which ends the file
	b := make([]byte, 1)
	f.ReadAt(b, at)
	f.WriteAt([]byte{b[0] ^ 1}, at)
	f.Close()

	for i := range 2 {
		if _, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action}); status.Code(err) != codes.NotFound {
			t.Fatalf("read %d of a damaged entry: %v, want NOT_FOUND", i+1, err)
		}
	}
	put()
	got, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
	if err != nil || got.ExitCode != 3 {
		t.Fatalf("read after storing it again: %v, %v", got, err)
	}
}
