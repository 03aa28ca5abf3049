package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/ferrule-build/ferrule/remote/digest"
)

// ErrCorrupt is returned (wrapped) when a stored blob's bytes do not match
// its digest.
var ErrCorrupt = fmt.Errorf("stored blob does not match its digest")

// IsEmpty reports whether k names the empty blob, which every CAS holds
// without a store entry.
func IsEmpty(k Key) bool {
	return k.Kind == CAS && k.Size == 0 && k.Hash == digest.Empty(k.Function).Hash
}

// ReadBlob reads a whole value into memory: the one capped read of a blob
// for every service and the execution engine (Action, Command, Directory
// and Tree messages, batch reads, action results). A value of more than
// limit bytes is ErrTooLarge (wrapped) and is not read. A CAS blob is
// checked against its digest as it is read (VerifyReader): one whose bytes
// do not match is ErrCorrupt (wrapped), never returned as content. The
// empty blob needs no store entry. A missing value is ErrNotFound
// (wrapped).
func ReadBlob(ctx context.Context, st Store, k Key, limit int64) ([]byte, error) {
	if IsEmpty(k) {
		return []byte{}, nil
	}
	if k.Kind == CAS && k.Size > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the %d read into memory", k, ErrTooLarge, k.Size, limit)
	}
	rc, size, err := st.Get(ctx, k, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	defer rc.Close()
	if size > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the %d read into memory", k, ErrTooLarge, size, limit)
	}
	if k.Kind != CAS {
		buf := bytes.NewBuffer(make([]byte, 0, size))
		if err := ReadExactly(buf, rc, size, nil); err != nil {
			return nil, fmt.Errorf("reading %s: %w", k, err)
		}
		return buf.Bytes(), nil
	}
	if size != k.Size {
		return nil, fmt.Errorf("%s: %w: the store has %d bytes", k, ErrCorrupt, size)
	}
	v, err := VerifyReader(k, rc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if err := ReadExactly(buf, v, size, nil); err != nil {
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) {
			return nil, fmt.Errorf("%s: %w: %w", k, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("reading %s: %w", k, err)
	}
	return buf.Bytes(), nil
}
