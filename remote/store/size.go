package store

import (
	"context"
	"errors"
)

// Sizer is implemented by backends that find a CAS blob's size from its
// hash alone (Key.Size is ignored), for protocols that name blobs by hash
// (Bazel's HTTP cache). A missing blob is ErrNotFound.
type Sizer interface {
	Size(ctx context.Context, key Key) (int64, error)
}

// errNoSizer is returned by SizeOf when no store in the chain is a Sizer.
var errNoSizer = errors.New("store cannot find sizes by hash")

// SizeOf asks s, or the first store it wraps (through Unwrap) that is a
// Sizer, for the size of the blob key names by its hash.
func SizeOf(ctx context.Context, s Store, key Key) (int64, error) {
	for s != nil {
		if sz, ok := s.(Sizer); ok {
			return sz.Size(ctx, key)
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return 0, errNoSizer
}
