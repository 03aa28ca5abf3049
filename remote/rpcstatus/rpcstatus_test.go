package rpcstatus

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ferrule-build/ferrule/remote/store"
)

func TestCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{fmt.Errorf("get x: %w", store.ErrNotFound), codes.NotFound},
		{fmt.Errorf("put x: %w", store.ErrDigestMismatch), codes.InvalidArgument},
		// A stored value found damaged, as the disk store and ReadBlob
		// report it (ReadBlob wraps the digest mismatch it found too).
		{fmt.Errorf("%w: block 0 does not match its CRC", store.ErrCorrupt), codes.DataLoss},
		{fmt.Errorf("x: %w: %w", store.ErrCorrupt, store.ErrDigestMismatch), codes.DataLoss},
		{fmt.Errorf("x: %w", store.ErrOutOfRange), codes.OutOfRange},
		{fmt.Errorf("disk on fire"), codes.Internal},
	} {
		if got := Code(c.err); got != c.want {
			t.Errorf("Code(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
