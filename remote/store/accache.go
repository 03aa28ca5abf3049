package store

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/digest"
)

// ACCacheCheckInterval is how long a cached action cache entry is served
// before the wrapped store is asked again whether it still holds it (which
// also keeps the entry's place in that store's LRU current).
const ACCacheCheckInterval = 10 * time.Second

// entryOverhead approximates the memory an ACCache entry costs beyond its
// value (map slot, list element, key strings).
const entryOverhead = 256

// ACCache returns a Store that keeps up to maxBytes of recently read or
// written action cache entries (serialized ActionResults, a few hundred
// bytes each) in memory in front of s, so that a GetActionResult hit does
// not touch the file system. Entries larger than maxBytes/64 are not kept.
// CAS reads and writes, and every FindMissing, pass straight through.
//
// A Put of an entry replaces its cached value (with exactly what s
// stored, or nothing if the Put failed); a cached entry that s no longer
// holds (evicted) stops being served within ACCacheCheckInterval. The cache
// holds action cache entries only: checking that the blobs a result
// references still exist is the caller's business, and is not cached.
func ACCache(s Store, maxBytes int64) Store {
	return &acCache{next: s, max: maxBytes, items: map[Key]*list.Element{}, now: time.Now}
}

type acCache struct {
	next Store
	max  int64
	now  func() time.Time

	// puts serializes, per key stripe, storing an entry with caching it, so
	// that the cache and s agree on the last value put.
	puts [64]sync.Mutex

	mu    sync.Mutex
	items map[Key]*list.Element // of *acItem
	lru   list.List             // front: most recently used
	bytes int64
	gen   uint64 // bumped by every Put of an AC entry
}

type acItem struct {
	key     Key
	data    []byte
	checked time.Time // when s last confirmed it holds the entry
}

// Unwrap returns the wrapped store.
func (c *acCache) Unwrap() Store { return c.next }

// normal gives the key the digest function its hash implies when it has
// none, so that both spellings share one cache entry (as CheckKey does).
func normal(k Key) Key {
	if k.Function == repb.DigestFunction_UNKNOWN {
		if fn, err := digest.Resolve(k.Function, k.Hash); err == nil {
			k.Function = fn
		}
	}
	return k
}

func (c *acCache) stripe(k Key) *sync.Mutex {
	var h byte
	if len(k.Hash) > 1 {
		h = k.Hash[0] ^ k.Hash[1]<<3
	}
	return &c.puts[int(h)%len(c.puts)]
}

func (c *acCache) Get(ctx context.Context, key Key, offset int64) (io.ReadCloser, int64, error) {
	if key.Kind != AC || c.max <= 0 {
		return c.next.Get(ctx, key, offset)
	}
	k := normal(key)
	if data, ok := c.lookup(ctx, k); ok {
		if offset < 0 || offset > int64(len(data)) {
			return nil, 0, fmt.Errorf("get %s at offset %d of %d bytes: %w", k, offset, len(data), ErrOutOfRange)
		}
		return io.NopCloser(bytes.NewReader(data[offset:])), int64(len(data)), nil
	}
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	rc, size, err := c.next.Get(ctx, key, offset)
	if err != nil || offset != 0 || size+entryOverhead > c.max/64 {
		return rc, size, err
	}
	defer rc.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(rc, data); err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", k, err)
	}
	c.mu.Lock()
	if c.gen == gen { // no Put since the read began: data is current
		c.insertLocked(k, data)
	}
	c.mu.Unlock()
	return io.NopCloser(bytes.NewReader(data)), size, nil
}

// lookup returns the cached value of k, first asking s whether it still
// holds k if that was last confirmed more than ACCacheCheckInterval ago.
func (c *acCache) lookup(ctx context.Context, k Key) ([]byte, bool) {
	c.mu.Lock()
	e, ok := c.items[k]
	if !ok {
		c.mu.Unlock()
		return nil, false
	}
	it := e.Value.(*acItem)
	c.lru.MoveToFront(e)
	data, checked := it.data, it.checked
	c.mu.Unlock()
	if now := c.now(); now.Sub(checked) >= ACCacheCheckInterval {
		missing, err := c.next.FindMissing(ctx, []Key{k})
		c.mu.Lock()
		defer c.mu.Unlock()
		if e2, ok := c.items[k]; !ok || e2 != e {
			return nil, false // replaced or dropped meanwhile: read s
		}
		if err != nil || len(missing) > 0 {
			c.removeLocked(e)
			return nil, false
		}
		it.checked = now
	}
	return data, true
}

func (c *acCache) insertLocked(k Key, data []byte) {
	if e, ok := c.items[k]; ok {
		c.removeLocked(e)
	}
	c.items[k] = c.lru.PushFront(&acItem{key: k, data: data, checked: c.now()})
	c.bytes += int64(len(data)) + entryOverhead
	for c.bytes > c.max {
		c.removeLocked(c.lru.Back())
	}
}

func (c *acCache) removeLocked(e *list.Element) {
	it := e.Value.(*acItem)
	c.lru.Remove(e)
	delete(c.items, it.key)
	c.bytes -= int64(len(it.data)) + entryOverhead
}

func (c *acCache) drop(k Key) {
	c.mu.Lock()
	if e, ok := c.items[k]; ok {
		c.removeLocked(e)
	}
	c.gen++
	c.mu.Unlock()
}

func (c *acCache) Put(ctx context.Context, key Key, size int64, r io.Reader) error {
	if key.Kind != AC || c.max <= 0 {
		return c.next.Put(ctx, key, size, r)
	}
	k := normal(key)
	mu := c.stripe(k)
	mu.Lock()
	defer mu.Unlock()
	c.drop(k)
	var keep *bytes.Buffer
	if size >= 0 && size+entryOverhead <= c.max/64 {
		keep = bytes.NewBuffer(make([]byte, 0, size))
		r = io.TeeReader(r, keep)
	}
	err := c.next.Put(ctx, key, size, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if e, ok := c.items[k]; ok {
		c.removeLocked(e) // a Get that raced with the Put may have added it
	}
	if err == nil && keep != nil && int64(keep.Len()) == size {
		c.insertLocked(k, keep.Bytes())
	}
	return err
}

func (c *acCache) FindMissing(ctx context.Context, keys []Key) ([]Key, error) {
	return c.next.FindMissing(ctx, keys)
}

// GetCompressed implements CompressedReader by passing the call on (only
// CAS blobs are stored compressed).
func (c *acCache) GetCompressed(ctx context.Context, key Key) (io.ReadCloser, int64, error) {
	return GetCompressed(ctx, c.next, key)
}
