// Package memory is an in-memory store.Store, optionally bounded in bytes
// with least-recently-used eviction. It is meant for tests and small
// deployments; values live only as long as the process.
package memory

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/ferrule-build/ferrule/remote/store"
)

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	max int64 // 0 means unbounded

	mu        sync.Mutex
	entries   map[store.Key]*list.Element // values are *entry
	sizes     map[store.Key]int64         // CAS keys without their size -> size
	lru       list.List                   // front is most recently used
	bytes     int64                       // of the stored values
	receiving int64                       // buffered by Puts in progress
	evictions int64
	evicted   int64
}

type entry struct {
	key  store.Key
	data []byte
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.StatsReporter = (*Store)(nil)
	_ store.Sizer         = (*Store)(nil)
)

// New returns an empty store holding at most maxBytes bytes of values
// (0 means no bound), counting what Puts in progress have buffered. When a
// value or a Put's buffer would exceed the bound, the least recently used
// entries are evicted; a Put whose buffer cannot fit beside the others in
// progress fails with store.ErrFull.
func New(maxBytes int64) *Store {
	if maxBytes < 0 {
		maxBytes = 0
	}
	return &Store{max: maxBytes, entries: make(map[store.Key]*list.Element), sizes: make(map[store.Key]int64)}
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key store.Key, offset int64) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	key, err := store.CheckKey(key)
	if err != nil {
		return nil, 0, err
	}
	var data []byte // never modified once stored
	s.mu.Lock()
	el, ok := s.entries[key]
	if ok {
		s.lru.MoveToFront(el)
		data = el.Value.(*entry).data
	}
	s.mu.Unlock()
	if !ok {
		return nil, 0, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
	}
	size := int64(len(data))
	if offset < 0 || offset > size {
		return nil, 0, fmt.Errorf("get %s at offset %d of %d bytes: %w", key, offset, size, store.ErrOutOfRange)
	}
	return io.NopCloser(bytes.NewReader(data[offset:])), size, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key store.Key, size int64, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.CheckKey(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: %w: negative size %d", key, store.ErrSizeMismatch, size)
	}
	if s.max > 0 && size > s.max {
		return fmt.Errorf("put %s: %d bytes, limit %d: %w", key, size, s.max, store.ErrTooLarge)
	}
	// Read the whole value before taking the lock: readers see the entry
	// only once it is complete.
	buf := sizedBuffer{size: size}
	if s.max > 0 {
		buf.reserve = s.reserve
	}
	err = store.ReadExactly(&buf, r, size, nil)
	if err == nil {
		err = ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if buf.reserve != nil {
		s.receiving -= int64(cap(buf.data))
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	data := buf.data

	if el, ok := s.entries[key]; ok {
		s.lru.MoveToFront(el)
		e := el.Value.(*entry)
		if key.Kind == store.AC {
			// Action results are replaced by newer ones; CAS content
			// under one key is the same whoever writes it.
			s.bytes += size - int64(len(e.data))
			el.Value = &entry{key: key, data: data}
		}
	} else {
		s.entries[key] = s.lru.PushFront(&entry{key: key, data: data})
		s.bytes += size
		if key.Kind == store.CAS {
			s.sizes[sizeless(key)] = key.Size
		}
	}
	s.evictLocked()
	return nil
}

// evictLocked drops least recently used entries until the stored values
// and the buffers of Puts in progress fit the bound, or nothing is left.
func (s *Store) evictLocked() {
	for s.max > 0 && s.bytes+s.receiving > s.max && s.lru.Len() > 0 {
		el := s.lru.Back()
		e := el.Value.(*entry)
		s.lru.Remove(el)
		delete(s.entries, e.key)
		if n, ok := s.sizes[sizeless(e.key)]; ok && n == e.key.Size {
			delete(s.sizes, sizeless(e.key))
		}
		s.bytes -= int64(len(e.data))
		s.evictions++
		s.evicted += int64(len(e.data))
	}
}

// reserve counts n more bytes buffered by a Put in progress, evicting
// stored entries to make room; it fails if the Puts in progress would hold
// more than the bound.
func (s *Store) reserve(n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.receiving+n > s.max {
		return fmt.Errorf("%w: uploads in progress hold %d bytes, %d more would exceed the memory store's bound of %d bytes (--max_size); retry later",
			store.ErrFull, s.receiving, n, s.max)
	}
	s.receiving += n
	s.evictLocked()
	return nil
}

func sizeless(k store.Key) store.Key {
	k.Size = 0
	return k
}

// Size implements store.Sizer: the size of the CAS blob with key's hash.
func (s *Store) Size(ctx context.Context, key store.Key) (int64, error) {
	key.Size = 0
	key, err := store.CheckKey(key)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.sizes[key]
	if !ok {
		return 0, fmt.Errorf("size of %s: %w", key, store.ErrNotFound)
	}
	return n, nil
}

// FindMissing implements store.Store.
func (s *Store) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	norm := make([]store.Key, len(keys))
	for i, k := range keys {
		nk, err := store.CheckKey(k)
		if err != nil {
			return nil, err
		}
		norm[i] = nk
	}
	var missing []store.Key
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range norm {
		if el, ok := s.entries[k]; ok {
			s.lru.MoveToFront(el)
		} else {
			missing = append(missing, keys[i])
		}
	}
	return missing, nil
}

// Receiving returns the bytes that Puts in progress have buffered, which
// count against the bound.
func (s *Store) Receiving() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.receiving
}

// Stats implements store.StatsReporter.
func (s *Store) Stats() store.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return store.Stats{
		Entries:      int64(len(s.entries)),
		Bytes:        s.bytes,
		MaxBytes:     s.max,
		Evictions:    s.evictions,
		EvictedBytes: s.evicted,
	}
}

// sizedBuffer collects a value of a declared size. Memory follows the bytes
// that arrived, not the declaration (a stalled upload that declared 64 MiB
// holds what it sent), and capacity never exceeds the declared size.
type sizedBuffer struct {
	data    []byte
	size    int64
	reserve func(n int64) error // if set, called before capacity grows by n
}

// initialBytes is what a value is given before it has to grow.
const initialBytes = 32 << 10

func (b *sizedBuffer) Write(p []byte) (int, error) {
	need := int64(len(b.data)) + int64(len(p))
	if need > b.size {
		return 0, fmt.Errorf("%w: more than the %d bytes declared", store.ErrSizeMismatch, b.size)
	}
	if need > int64(cap(b.data)) {
		n := min(max(2*int64(cap(b.data)), need, initialBytes), b.size)
		if b.reserve != nil {
			if err := b.reserve(n - int64(cap(b.data))); err != nil {
				return 0, err
			}
		}
		grown := make([]byte, len(b.data), n)
		copy(grown, b.data)
		b.data = grown
	}
	b.data = append(b.data, p...)
	return len(p), nil
}
