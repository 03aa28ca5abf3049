package store

import (
	"context"
	"errors"
	"io"
)

// ErrNotCompressed is returned (possibly wrapped) by GetCompressed when the
// entry exists but is not kept compressed (or the store cannot hand out its
// compressed form); Get still reads it.
var ErrNotCompressed = errors.New("not stored compressed")

// CompressedReader is implemented by stores that keep values zstd-compressed
// at rest and can hand out the stored compressed bytes as they are, so that
// a compressed read need not compress the value again. Decorators that pass
// reads through implement it by calling GetCompressed on the store they
// wrap.
type CompressedReader interface {
	// GetCompressed opens the zstd form of key's whole value: one or more
	// concatenated zstd frames that decompress to exactly the value. It
	// returns the uncompressed size of the value. Each frame is checked
	// (it decompresses, to the expected length, with a matching checksum)
	// before any of its bytes is returned, so a corrupt file makes Read
	// fail rather than pass on bad data. A missing entry is ErrNotFound;
	// an entry stored uncompressed is ErrNotCompressed. A successful call
	// counts as a use for eviction purposes.
	GetCompressed(ctx context.Context, key Key) (rc io.ReadCloser, size int64, err error)
}

// GetCompressed calls s.GetCompressed if s is a CompressedReader, and
// returns ErrNotCompressed otherwise. It deliberately does not look through
// decorators (Unwrap) that do not implement CompressedReader themselves:
// a decorator that does not know about compressed reads might change what
// reads return, and skipping it would bypass that.
func GetCompressed(ctx context.Context, s Store, key Key) (io.ReadCloser, int64, error) {
	if cr, ok := s.(CompressedReader); ok {
		return cr.GetCompressed(ctx, key)
	}
	return nil, 0, ErrNotCompressed
}
