package store

import (
	"errors"
	"fmt"
	"io"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/digest"
)

// ErrInvalidKey is returned (wrapped) for a key that no store can hold: an
// unknown kind, an unsupported digest function, a hash that is not lowercase
// hex of the right length, or a negative size.
var ErrInvalidKey = errors.New("invalid key")

// ErrOutOfRange is returned (wrapped) by Get for an offset outside [0, size].
var ErrOutOfRange = errors.New("offset out of range")

// ErrSizeMismatch is returned (wrapped) by Put when the reader yields fewer or
// more bytes than the size given.
var ErrSizeMismatch = errors.New("content size does not match the declared size")

// ErrDigestMismatch is returned (wrapped) when content does not hash to the
// digest it is stored under (see Verifying).
var ErrDigestMismatch = errors.New("content does not match its digest")

// CheckKey validates k and returns it normalized: an unset digest function
// is resolved from the hash length (SHA256 for 64 hex characters, what REAPI
// 2.0 clients mean), so that both spellings name the same entry. Backends
// call it on every key they receive; its result is safe to use in a path.
func CheckKey(k Key) (Key, error) {
	if k.Kind != CAS && k.Kind != AC {
		return k, fmt.Errorf("%w: %s", ErrInvalidKey, k.Kind)
	}
	fn, err := digest.Resolve(k.Function, k.Hash)
	if err != nil {
		return k, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	k.Function = fn
	if err := digest.Validate(fn, &repb.Digest{Hash: k.Hash, SizeBytes: k.Size}); err != nil {
		return k, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return k, nil
}

// DecodeKey is CheckKey for backends that index by the hash's bytes: it
// validates and normalizes k like CheckKey and returns the decoded hash,
// checking and decoding the hex in one pass.
func DecodeKey(k Key) (Key, [digest.HashLen / 2]byte, error) {
	var h [digest.HashLen / 2]byte
	if k.Kind != CAS && k.Kind != AC {
		return k, h, fmt.Errorf("%w: %s", ErrInvalidKey, k.Kind)
	}
	fn, err := digest.Resolve(k.Function, k.Hash)
	if err != nil {
		return k, h, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	k.Function = fn
	if k.Size < 0 || !digest.DecodeHash(&h, k.Hash) {
		// Validate says what is wrong.
		err := digest.Validate(fn, &repb.Digest{Hash: k.Hash, SizeBytes: k.Size})
		if err == nil {
			err = errors.New("bad hash")
		}
		return k, h, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return k, h, nil
}

// A Lender is a Writer that lends ReadExactly its own buffer, so that a
// value is read where it is kept instead of through a copy buffer:
// ReadBuffer returns where the next bytes go (at least one byte), Filled
// says that the first n bytes of it were filled.
type Lender interface {
	io.Writer
	ReadBuffer() []byte
	Filled(n int) error
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadExactly copies exactly size bytes from r to w and then checks that r
// is at its end. It fails with ErrSizeMismatch if r yields fewer or more
// bytes, and with r's error if r fails (including on the final read that
// would otherwise report io.EOF), so a backend that commits only when
// ReadExactly returns nil never stores a short, long or rejected value.
// buf is the copy buffer; nil means a pooled 32 KiB one. A reader that never
// ends costs at most len(buf) bytes beyond size. If w is a Lender, r is
// read into w's buffer instead and buf is not used.
func ReadExactly(w io.Writer, r io.Reader, size int64, buf []byte) error {
	if size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrSizeMismatch, size)
	}
	lender, lends := w.(Lender)
	if len(buf) == 0 && !lends {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		buf = *bp
	}
	var n int64
	empty := 0
	for {
		if lends {
			// One byte more than is left, to see a reader yield too much.
			buf = lender.ReadBuffer()
			if left := size - n; left < int64(len(buf)) {
				buf = buf[:left+1]
			}
		}
		m, err := r.Read(buf)
		if m > 0 {
			empty = 0
			if n+int64(m) > size {
				return fmt.Errorf("%w: more than the %d bytes declared", ErrSizeMismatch, size)
			}
			var werr error
			if lends {
				werr = lender.Filled(m)
			} else {
				_, werr = w.Write(buf[:m])
			}
			if werr != nil {
				return werr
			}
			n += int64(m)
		}
		switch {
		case err == io.EOF:
			if n != size {
				return fmt.Errorf("%w: got %d bytes, declared %d", ErrSizeMismatch, n, size)
			}
			return nil
		case err != nil:
			return err
		case m == 0:
			if empty++; empty > 100 {
				return io.ErrNoProgress
			}
		}
	}
}
