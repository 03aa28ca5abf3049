package server

import (
	"bytes"
	"context"
	"errors"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
)

// The stack verifies writes and still hands out the disk store's zstd
// frames (every decorator passes GetCompressed on), so that compressed
// reads are not compressed again.
func TestStack(t *testing.T) {
	ctx := context.Background()
	d, err := disk.Open(disk.Options{Dir: t.TempDir(), Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, err := Stack(d, 0, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("abcdefgh"), 100000)
	dg, _ := digest.Of(repb.DigestFunction_SHA256, data)
	k := store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: dg.Hash, Size: dg.SizeBytes}
	bad := append([]byte{'x'}, data[1:]...)
	if err := st.Put(ctx, k, k.Size, bytes.NewReader(bad)); !errors.Is(err, store.ErrDigestMismatch) {
		t.Fatalf("mismatching write: %v, want ErrDigestMismatch", err)
	}
	if err := st.Put(ctx, k, k.Size, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rc, size, err := store.GetCompressed(ctx, st, k)
	if err != nil {
		t.Fatalf("GetCompressed through the stack: %v", err)
	}
	rc.Close()
	if size != k.Size {
		t.Errorf("GetCompressed size %d, want %d", size, k.Size)
	}
}
