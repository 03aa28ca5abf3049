package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func TestACCacheConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.ACCache(memory.New(0), 1<<20) })
	storetest.RunBounded(t, func(t *testing.T, max int64) store.Store { return store.ACCache(memory.New(max), 1<<20) })
}

// countingGets counts the Gets that reach the wrapped store.
type countingGets struct {
	store.Store
	gets atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, k store.Key, off int64) (io.ReadCloser, int64, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, k, off)
}

func TestACCacheServesFromMemory(t *testing.T) {
	back := &countingGets{Store: memory.New(0)}
	s := store.ACCache(back, 1<<20)
	k := storetest.ACKey("", "a")
	storetest.MustPut(t, s, k, []byte("result one"))
	for range 3 {
		if got := storetest.MustGet(t, s, k); string(got) != "result one" {
			t.Fatalf("got %q", got)
		}
	}
	if n := back.gets.Load(); n != 0 {
		t.Errorf("%d Gets reached the store after a Put; want 0 (cached on Put)", n)
	}
	// An entry put before the cache existed is read once, then cached.
	k2 := storetest.ACKey("", "b")
	storetest.MustPut(t, back, k2, []byte("result two"))
	for range 3 {
		if got := storetest.MustGet(t, s, k2); string(got) != "result two" {
			t.Fatalf("got %q", got)
		}
	}
	if n := back.gets.Load(); n != 1 {
		t.Errorf("%d Gets reached the store; want 1", n)
	}
	// The unset digest function names the same entry.
	k3 := k
	k3.Function = repb.DigestFunction_UNKNOWN
	storetest.MustPut(t, s, k3, []byte("result three"))
	if got := storetest.MustGet(t, s, k); string(got) != "result three" {
		t.Fatalf("after a Put under the unset function: got %q", got)
	}
	// CAS reads are not cached.
	blob := []byte("blob")
	ck := storetest.CASKey("", repb.DigestFunction_SHA256, blob)
	storetest.MustPut(t, s, ck, blob)
	before := back.gets.Load()
	storetest.MustGet(t, s, ck)
	storetest.MustGet(t, s, ck)
	if n := back.gets.Load() - before; n != 2 {
		t.Errorf("%d CAS Gets reached the store; want 2", n)
	}
}

func TestACCachePutReplaces(t *testing.T) {
	s := store.ACCache(memory.New(0), 1<<20)
	k := storetest.ACKey("i", "a")
	storetest.MustPut(t, s, k, []byte("old"))
	storetest.MustGet(t, s, k)
	storetest.MustPut(t, s, k, []byte("newer"))
	if got := storetest.MustGet(t, s, k); string(got) != "newer" {
		t.Fatalf("got %q after a second Put", got)
	}
	// A failed Put leaves what the store holds.
	err := s.Put(context.Background(), k, 10, bytes.NewReader([]byte("short")))
	if err == nil {
		t.Fatal("a short Put succeeded")
	}
	if got := storetest.MustGet(t, s, k); string(got) != "newer" {
		t.Fatalf("got %q after a failed Put", got)
	}
}

func TestACCacheNoticesEviction(t *testing.T) {
	back := memory.New(10_000)
	s := store.ACCache(back, 1<<20)
	now := time.Unix(1000, 0)
	store.SetACCacheClock(s, func() time.Time { return now })
	k := storetest.ACKey("", "evicted")
	storetest.MustPut(t, s, k, []byte("result"))
	storetest.MustGet(t, s, k)
	// Evict it from the wrapped store by filling that with CAS blobs.
	for i := range 20 {
		b := storetest.Blob(uint64(i), 1000)
		storetest.MustPut(t, back, storetest.CASKey("", repb.DigestFunction_SHA256, b), b)
	}
	if m, _ := back.FindMissing(context.Background(), []store.Key{k}); len(m) != 1 {
		t.Fatal("the wrapped store still holds the entry; the test needs it evicted")
	}
	now = now.Add(store.ACCacheCheckInterval)
	if _, err := storetest.ReadAll(s, k, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of an entry the store evicted: %v, want not found", err)
	}
}

func TestACCacheBounded(t *testing.T) {
	const max = 64 << 10
	back := &countingGets{Store: memory.New(0)}
	s := store.ACCache(back, max)
	val := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 500) }
	for i := range 1000 {
		storetest.MustPut(t, s, storetest.ACKey("", fmt.Sprint(i)), val(i))
	}
	// At most max bytes are kept: most of the early entries come from the
	// store again, and all values are right.
	for i := range 1000 {
		if got := storetest.MustGet(t, s, storetest.ACKey("", fmt.Sprint(i))); !bytes.Equal(got, val(i)) {
			t.Fatalf("entry %d: wrong value", i)
		}
	}
	if n := back.gets.Load(); n < 1000-max/500 {
		t.Errorf("only %d of 1000 Gets reached the store with room for fewer than %d entries", n, max/500)
	}
	// Values too large for the cache pass through.
	big := storetest.ACKey("", "big")
	storetest.MustPut(t, s, big, make([]byte, max/32))
	before := back.gets.Load()
	storetest.MustGet(t, s, big)
	if back.gets.Load() == before {
		t.Error("a value of a 32nd of the cache was served from memory")
	}
}

func TestACCacheConcurrentPutGet(t *testing.T) {
	s := store.ACCache(memory.New(0), 1<<20)
	k := storetest.ACKey("", "race")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 200 {
				storetest.MustPut(t, s, k, []byte(fmt.Sprintf("writer %d value %d", w, i)))
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				if _, err := storetest.ReadAll(s, k, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Afterwards the cache serves what the store holds.
	back := s.(store.Unwrapper).Unwrap()
	if got, want := storetest.MustGet(t, s, k), storetest.MustGet(t, back, k); !bytes.Equal(got, want) {
		t.Fatalf("cache serves %q, store holds %q", got, want)
	}
}
