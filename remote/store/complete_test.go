package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// Complete serves an action result only while every blob it references,
// the root directory of an output directory included, is present.
func TestCompleteChecksEveryReference(t *testing.T) {
	ctx := context.Background()
	fn := repb.DigestFunction_SHA256
	backend := memory.New(0)
	st := store.Complete(store.Verifying(backend))
	put := func(data []byte) *repb.Digest {
		d, _ := digest.Of(fn, data)
		if err := st.Put(ctx, store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	file := put([]byte("file"))
	root := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file}}}
	rootData, _ := proto.Marshal(root)
	rootDigest := put(rootData)
	treeData, _ := proto.Marshal(&repb.Tree{Root: root})
	tree := put(treeData)
	res, _ := proto.Marshal(&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: tree, RootDirectoryDigest: rootDigest}}})
	ad, _ := digest.Of(fn, []byte("action"))
	acKey := store.Key{Kind: store.AC, Function: fn, Hash: ad.Hash, Size: ad.SizeBytes}
	if err := st.Put(ctx, acKey, int64(len(res)), bytes.NewReader(res)); err != nil {
		t.Fatal(err)
	}
	if data, err := store.ReadBlob(ctx, st, acKey, 1<<20); err != nil || !bytes.Equal(data, res) {
		t.Fatalf("complete result: %d bytes, %v", len(data), err)
	}

	// The same entries without the root directory blob.
	fresh := memory.New(0)
	for _, d := range []*repb.Digest{file, tree} {
		k := store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}
		data, err := store.ReadBlob(ctx, backend, k, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		fresh.Put(ctx, k, k.Size, bytes.NewReader(data))
	}
	fresh.Put(ctx, acKey, int64(len(res)), bytes.NewReader(res))
	if _, err := store.ReadBlob(ctx, store.Complete(fresh), acKey, 1<<20); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("without the root directory: %v, want ErrNotFound", err)
	}
	// An entry that is not an ActionResult is not found either.
	fresh.Put(ctx, acKey, 3, bytes.NewReader([]byte{0xff, 0xff, 0xff}))
	if _, err := store.ReadBlob(ctx, store.Complete(fresh), acKey, 1<<20); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unparsable entry: %v, want ErrNotFound", err)
	}
}

// An output directory without a tree digest (a result no client could use,
// once cached through a worker) is a clean miss, not a served result.
func TestCompleteRefusesOutputDirectoryWithoutTree(t *testing.T) {
	ctx := context.Background()
	fn := repb.DigestFunction_SHA256
	st := store.Complete(memory.New(0))
	res, _ := proto.Marshal(&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out"}}})
	ad, _ := digest.Of(fn, []byte("action"))
	acKey := store.Key{Kind: store.AC, Function: fn, Hash: ad.Hash, Size: ad.SizeBytes}
	if err := st.Put(ctx, acKey, int64(len(res)), bytes.NewReader(res)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ReadBlob(ctx, st, acKey, 1<<20); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("result with a tree-less output directory: %v, want ErrNotFound", err)
	}
}
