package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/ferrule-build/ferrule/remote/digest"
)

// Verifying returns a Store that checks every CAS value against its key as
// it is written: the stream is hashed with the key's digest function, and
// if its hash or length does not match the key, the Put fails with an error
// wrapping ErrDigestMismatch (or ErrSizeMismatch) and nothing is stored.
// Action cache entries pass through unchecked.
//
// The check fails the reader's final Read instead of returning io.EOF, so
// the wrapped store, which commits only on a clean end of stream, never
// commits a mismatching value.
func Verifying(s Store) Store { return &verifying{next: s} }

type verifying struct{ next Store }

// Unwrap returns the wrapped store.
func (v *verifying) Unwrap() Store { return v.next }

func (v *verifying) Get(ctx context.Context, key Key, offset int64) (io.ReadCloser, int64, error) {
	return v.next.Get(ctx, key, offset)
}

// GetCompressed implements CompressedReader by passing the call on.
func (v *verifying) GetCompressed(ctx context.Context, key Key) (io.ReadCloser, int64, error) {
	return GetCompressed(ctx, v.next, key)
}

func (v *verifying) FindMissing(ctx context.Context, keys []Key) ([]Key, error) {
	return v.next.FindMissing(ctx, keys)
}

func (v *verifying) Put(ctx context.Context, key Key, size int64, r io.Reader) error {
	if key.Kind != CAS {
		return v.next.Put(ctx, key, size, r)
	}
	k, err := CheckKey(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if size != k.Size {
		return fmt.Errorf("put %s: %w: %d bytes offered for a digest of %d", k, ErrSizeMismatch, size, k.Size)
	}
	vr, err := VerifyReader(k, r)
	if err != nil {
		return fmt.Errorf("put %s: %w", k, err)
	}
	return v.next.Put(ctx, key, size, vr)
}

// VerifyReader wraps r so that reading it to the end fails with an error
// wrapping ErrSizeMismatch or ErrDigestMismatch, in place of io.EOF,
// unless r yields exactly the content that the CAS key names. It never
// reads more than one byte past key.Size, so a source that does not end
// (a decompression bomb) costs no more than that. It is the one check of
// content against digest: the Verifying decorator, whole-blob reads
// (ReadBlob) and the worker's file cache use it.
func VerifyReader(key Key, r io.Reader) (io.Reader, error) {
	h, err := digest.New(key.Function)
	if err != nil {
		return nil, err
	}
	return &verifyingReader{r: r, h: h, key: key}, nil
}

// verifyingReader passes r through while hashing it and replaces the final
// io.EOF with an error if the content does not match key.
type verifyingReader struct {
	r   io.Reader
	h   hash.Hash
	key Key
	n   int64
	err error // sticky result once the end was reached
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	// Never read more than one byte past the declared size, so a stream
	// that does not end cannot make us hash without bound (written so
	// that a size near the int64 limit cannot overflow).
	if rest := v.key.Size - v.n; rest < int64(len(p)) {
		p = p[:rest+1]
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.n > v.key.Size {
		v.err = fmt.Errorf("%w: %s: more than the %d bytes declared", ErrSizeMismatch, v.key, v.key.Size)
		return 0, v.err
	}
	v.h.Write(p[:n])
	if err == io.EOF {
		if v.n != v.key.Size {
			v.err = fmt.Errorf("%w: %s: got %d bytes, declared %d", ErrSizeMismatch, v.key, v.n, v.key.Size)
		} else if got := hex.EncodeToString(v.h.Sum(nil)); got != v.key.Hash {
			v.err = fmt.Errorf("%w: %s hash: expected %s, actual %s", ErrDigestMismatch, v.key.Function, v.key.Hash, got)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

// Unwrapper is implemented by decorators: Unwrap returns the wrapped store.
type Unwrapper interface {
	Unwrap() Store
}

// StatsOf returns the Stats of s or of the first store it wraps (through
// Unwrap) that reports them.
func StatsOf(s Store) (Stats, bool) {
	for s != nil {
		if sr, ok := s.(StatsReporter); ok {
			return sr.Stats(), true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return Stats{}, false
}
