package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

func TestReadBlob(t *testing.T) {
	ctx := context.Background()
	st := memory.New(0)
	fn := repb.DigestFunction_SHA256
	good := []byte("an Action message")
	d, _ := digest.Of(fn, good)
	key := store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}

	if _, err := store.ReadBlob(ctx, st, key, 1<<20); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing blob: err = %v, want ErrNotFound", err)
	}
	if data, err := store.ReadBlob(ctx, st, store.Key{Kind: store.CAS, Function: fn, Hash: digest.Empty(fn).Hash}, 1<<20); err != nil || len(data) != 0 {
		t.Errorf("empty blob: %q, %v", data, err)
	}

	// The memory store keeps what it is given, so a wrong value can be
	// planted under the key: ReadBlob must refuse it.
	bad := []byte("an Action messagX")
	if err := st.Put(ctx, key, int64(len(bad)), bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	if data, err := store.ReadBlob(ctx, st, key, 1<<20); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("corrupt blob: got %q, %v; want ErrCorrupt", data, err)
	}

	other := store.Key{Kind: store.CAS, Instance: "other", Function: fn, Hash: d.Hash, Size: d.SizeBytes}
	if err := st.Put(ctx, other, d.SizeBytes, bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if data, err := store.ReadBlob(ctx, st, other, 1<<20); err != nil || !bytes.Equal(data, good) {
		t.Errorf("good blob: %q, %v", data, err)
	}
	if _, err := store.ReadBlob(ctx, st, other, d.SizeBytes-1); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("blob over the limit: err = %v, want ErrTooLarge", err)
	}
}
