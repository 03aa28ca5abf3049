package store

import (
	"context"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
)

// ErrCorrupt is returned (wrapped) when a stored blob's bytes do not match
// its digest.
var ErrCorrupt = fmt.Errorf("stored blob does not match its digest")

// ReadBlob reads a whole CAS blob into memory and checks it against its
// digest, for the small protocol messages (Action, Command, Directory)
// servers and workers decode. The empty blob needs no store entry. A missing
// blob is ErrNotFound (wrapped); a blob whose bytes do not hash to its key is
// ErrCorrupt (wrapped), never returned as content.
func ReadBlob(ctx context.Context, st Store, instance string, fn repb.DigestFunction_Value, d *repb.Digest) ([]byte, error) {
	if d.GetSizeBytes() == 0 && digest.IsEmpty(fn, d) {
		return nil, nil
	}
	key := Key{Kind: CAS, Instance: instance, Function: fn, Hash: d.GetHash(), Size: d.GetSizeBytes()}
	rc, _, err := st.Get(ctx, key, 0)
	if err != nil {
		return nil, fmt.Errorf("blobs/%s/%d: %w", d.GetHash(), d.GetSizeBytes(), err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, d.GetSizeBytes()+1))
	if err != nil {
		return nil, fmt.Errorf("blobs/%s/%d: %w", d.GetHash(), d.GetSizeBytes(), err)
	}
	got, err := digest.Of(fn, data)
	if err != nil {
		return nil, err
	}
	if got.Hash != d.GetHash() || got.SizeBytes != d.GetSizeBytes() {
		return nil, fmt.Errorf("blobs/%s/%d: %w", d.GetHash(), d.GetSizeBytes(), ErrCorrupt)
	}
	return data, nil
}
