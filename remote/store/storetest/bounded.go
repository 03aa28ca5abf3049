package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
)

// RunBounded checks least-recently-used eviction for a store made by
// newStore to hold at most maxBytes bytes of values. The store must evict
// down to its bound (not below it by more than one entry) and count a Get
// or a FindMissing hit as a use.
func RunBounded(t *testing.T, newStore func(t *testing.T, maxBytes int64) store.Store) {
	RunBoundedCost(t, newStore, func(_ store.Key, size int64) int64 { return size })
}

// RunBoundedCost is RunBounded for a store that counts an entry of size
// value bytes under key as cost(key, size) bytes (its file on disk, say):
// the LRU check bounds the store to ten entries' cost.
func RunBoundedCost(t *testing.T, newStore func(t *testing.T, maxBytes int64) store.Store, cost func(key store.Key, size int64) int64) {
	keys := make([]store.Key, 14)
	blobs := make([][]byte, len(keys))
	for i := range keys {
		blobs[i] = Blob(uint64(500+i), 1000)
		keys[i] = CASKey("lru", repb.DigestFunction_SHA256, blobs[i])
	}
	c := cost(keys[0], 1000)
	t.Run("LRU", func(t *testing.T) { testLRU(t, newStore(t, 10*c), keys, blobs, c) })
	t.Run("TooLarge", func(t *testing.T) { testTooLarge(t, newStore(t, 10_000)) })
}

func testLRU(t *testing.T, s store.Store, keys []store.Key, blobs [][]byte, c int64) {
	ctx := context.Background()
	for i := range 10 {
		MustPut(t, s, keys[i], blobs[i])
	}
	if missing, err := s.FindMissing(ctx, keys[:10]); err != nil || len(missing) != 0 {
		t.Fatalf("10 blobs of %d bytes each in a %d-byte store: missing %v, %v", c, 10*c, missing, err)
	}
	// All ten are now used in order 0..9. Use 0 by Get and 1 by FindMissing:
	// the least recently used are now 2, 3, ...
	MustGet(t, s, keys[0])
	if _, err := s.FindMissing(ctx, []store.Key{keys[1], keys[12]}); err != nil {
		t.Fatal(err)
	}
	MustPut(t, s, keys[10], blobs[10])
	MustPut(t, s, keys[11], blobs[11])
	// keys 2 and 3 must be gone; check without touching the others.
	missing, err := s.FindMissing(ctx, keys[2:4])
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 2 {
		t.Errorf("after two more Puts, least recently used keys 2 and 3: missing %d of them, want both evicted", len(missing))
	}
	missing, err = s.FindMissing(ctx, append([]store.Key{keys[0], keys[1]}, keys[4:12]...))
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("recently used keys were evicted: %v", missing)
	}
	for _, i := range []int{0, 1, 11} {
		if got := MustGet(t, s, keys[i]); !bytes.Equal(got, blobs[i]) {
			t.Errorf("blob %d: wrong bytes after evictions", i)
		}
	}
	if sr, ok := s.(store.StatsReporter); ok {
		st := sr.Stats()
		if st.Entries != 10 || st.Bytes != 10*c || st.MaxBytes != 10*c {
			t.Errorf("Stats = %+v, want 10 entries, %d bytes of %d", st, 10*c, 10*c)
		}
		if st.Evictions != 2 || st.EvictedBytes != 2*c {
			t.Errorf("Stats = %+v, want 2 evictions of %d bytes", st, 2*c)
		}
	}
}

func testTooLarge(t *testing.T, s store.Store) {
	data := Blob(1, 10_001)
	k := CASKey("", repb.DigestFunction_SHA256, data)
	err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("Put of 10001 bytes into a 10000-byte store = %v, want ErrTooLarge", err)
	}
	AssertMissing(t, s, k)
	// Exactly the bound fits.
	fit := Blob(2, 10_000)
	fk := CASKey("", repb.DigestFunction_SHA256, fit)
	MustPut(t, s, fk, fit)
	if got := MustGet(t, s, fk); !bytes.Equal(got, fit) {
		t.Errorf("a value of exactly the bound was not stored intact")
	}
}
