package store_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// Moved from the CAS service's tests with the verifier.
func TestVerify(t *testing.T) {
	data := []byte("hello")
	d, _ := digest.Of(repb.DigestFunction_SHA256, data)
	k := store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: d.Hash, Size: d.SizeBytes}
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{data, nil},
		{[]byte("hellO"), store.ErrDigestMismatch},
		{[]byte("hell"), store.ErrSizeMismatch},
		{[]byte("hello!"), store.ErrSizeMismatch},
	} {
		v, err := store.VerifyReader(k, bytes.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(v)
		if (tc.want == nil) != (err == nil) || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Verify(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

// Moved from the CAS service's TestHugeSizes with the verifier.
func TestVerifyReaderHugeSize(t *testing.T) {
	d, _ := digest.Of(repb.DigestFunction_SHA256, []byte("x"))
	k := store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: d.Hash, Size: 1<<63 - 1}
	v, _ := store.VerifyReader(k, bytes.NewReader([]byte("abc")))
	if _, err := io.ReadAll(v); !errors.Is(err, store.ErrSizeMismatch) {
		t.Fatalf("Verify with a huge size: %v", err)
	}
}
