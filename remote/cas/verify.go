package cas

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// ErrDigestMismatch is returned (wrapped) when written content does not
// match the digest it was written under. It is the store's sentinel, so
// that the services and store.Verifying report mismatches alike.
var ErrDigestMismatch = store.ErrDigestMismatch

// ErrSizeMismatch is returned (wrapped) when written content is longer or
// shorter than the size in its digest.
var ErrSizeMismatch = store.ErrSizeMismatch

// verifier passes through exactly key.Size bytes of r, hashing them, and
// fails instead of returning io.EOF when the content's length or hash does
// not match key.
type verifier struct {
	r    io.Reader
	key  store.Key
	h    hash.Hash
	n    int64
	done bool
}

// Verify wraps r so that reading it to the end fails with ErrSizeMismatch or
// ErrDigestMismatch unless r yields exactly the content that key names.
// Reading stops one byte past key.Size, so a source that never ends (a
// decompression bomb) cannot make it read more than that.
func Verify(key store.Key, r io.Reader) (io.Reader, error) {
	h, err := digest.New(key.Function)
	if err != nil {
		return nil, err
	}
	return &verifier{r: r, key: key, h: h}, nil
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.done {
		return 0, io.EOF
	}
	// Read at most one byte past the declared size (written so that a
	// size near the int64 limit cannot overflow).
	if rest := v.key.Size - v.n; rest < int64(len(p)) {
		p = p[:rest+1]
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.n > v.key.Size {
		return 0, fmt.Errorf("%w: more than the %d bytes declared", ErrSizeMismatch, v.key.Size)
	}
	v.h.Write(p[:n])
	if err == io.EOF {
		if v.n != v.key.Size {
			return n, fmt.Errorf("%w: got %d bytes, declared %d", ErrSizeMismatch, v.n, v.key.Size)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.key.Hash {
			return n, fmt.Errorf("%w: %s hash is %s, declared %s", ErrDigestMismatch, v.key.Function, got, v.key.Hash)
		}
		v.done = true
	}
	return n, err
}

// Status turns an error from a store, a verifier or a decompressor into a
// gRPC status error with a message. Status errors pass through unchanged.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrSizeMismatch), errors.Is(err, ErrCorrupt), errors.Is(err, store.ErrInvalidKey):
		code = codes.InvalidArgument
	case errors.Is(err, store.ErrOutOfRange):
		code = codes.OutOfRange
	case errors.Is(err, store.ErrTooLarge):
		code = codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
