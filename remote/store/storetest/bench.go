package storetest

import (
	"bytes"
	"context"
	"io"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
)

// Bench runs the store hot-path benchmarks against stores made by newStore.
// The stores should be bounded (a few hundred MiB is plenty), since the Put
// benchmarks write b.N new values:
//
//	PutSmall         4 KiB CAS Puts of new blobs
//	GetSmall         whole reads of 4 KiB blobs
//	FindMissing1000  FindMissing calls of 1000 keys, half of them present
//	PutLarge         16 MiB Puts
//	GetLarge         whole reads of a 16 MiB blob
func Bench(b *testing.B, newStore func(b *testing.B) store.Store) {
	ctx := context.Background()
	b.Run("PutSmall", func(b *testing.B) {
		s := newStore(b)
		blobs, keys := smallBlobs(b.N, 4096)
		b.SetBytes(4096)
		b.ResetTimer()
		for i := range b.N {
			if err := s.Put(ctx, keys[i], int64(len(blobs[i])), bytes.NewReader(blobs[i])); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetSmall", func(b *testing.B) {
		s := newStore(b)
		const n = 1000
		blobs, keys := smallBlobs(n, 4096)
		for i := range n {
			MustPut(b, s, keys[i], blobs[i])
		}
		buf := make([]byte, 8192)
		b.SetBytes(4096)
		b.ResetTimer()
		for i := range b.N {
			rc, _, err := s.Get(ctx, keys[i%n], 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("FindMissing1000", func(b *testing.B) {
		s := newStore(b)
		const n = 1000
		blobs, keys := smallBlobs(n, 64)
		for i := 0; i < n; i += 2 {
			MustPut(b, s, keys[i], blobs[i])
		}
		b.ResetTimer()
		for range b.N {
			missing, err := s.FindMissing(ctx, keys)
			if err != nil {
				b.Fatal(err)
			}
			if len(missing) != n/2 {
				b.Fatalf("%d missing, want %d", len(missing), n/2)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "keys/s")
	})
	const large = 16 << 20
	b.Run("PutLarge", func(b *testing.B) {
		s := newStore(b)
		data := Blob(1, large)
		b.SetBytes(large)
		b.ResetTimer()
		for i := range b.N {
			// A different key each time (the store would skip a known one);
			// the store does not verify, so the digest need not match.
			k := CASKey("", repb.DigestFunction_SHA256, data)
			k.Hash = k.Hash[:56] + hexOf(uint32(i))
			if err := s.Put(ctx, k, large, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetLarge", func(b *testing.B) {
		s := newStore(b)
		data := Blob(2, large)
		k := CASKey("", repb.DigestFunction_SHA256, data)
		MustPut(b, s, k, data)
		buf := make([]byte, 256<<10)
		b.SetBytes(large)
		b.ResetTimer()
		for range b.N {
			rc, _, err := s.Get(ctx, k, 0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, rc, buf); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}

func hexOf(v uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b[:])
}

// smallBlobs returns n distinct blobs of size bytes and their SHA256 keys.
func smallBlobs(n, size int) ([][]byte, []store.Key) {
	blobs := make([][]byte, n)
	keys := make([]store.Key, n)
	base := Blob(42, size)
	for i := range n {
		b := append([]byte(nil), base...)
		copy(b, hexOf(uint32(i))) // distinct without generating each
		blobs[i] = b
		keys[i] = CASKey("bench", repb.DigestFunction_SHA256, b)
	}
	return blobs, keys
}
