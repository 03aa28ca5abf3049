package disk

import "hash/maphash"

// entryKey identifies an entry in the index. ns is the number of the
// (kind, digest function, instance) namespace in Store.nsList. The struct
// holds no pointers, so a map of millions of them costs the garbage
// collector nothing to scan.
type entryKey struct {
	ns   uint32
	hash [32]byte
	size int64 // the Key's size
}

// slot is one entry of the LRU list.
type slot struct {
	key        entryKey
	size       int64 // bytes of the stored value
	prev, next int32 // toward the most / least recently used; -1 at the ends
}

// index is the in-memory set of stored entries in least-recently-used
// order: slots in a slice, a doubly linked list threaded through them by
// number, and an open-addressing hash table (linear probing, seeded hash,
// backward-shift deletion) whose buckets hold a slot number and 32 bits of
// the key's hash, so that probing rarely touches the slots. Unlike a Go map
// keyed by entryKey it holds each key once, which more than halves the
// memory of a large cache (under 80 bytes an entry) and its loading time.
// It is not safe for concurrent use; Store.mu guards it.
type index struct {
	slots      []slot
	free       []int32
	head, tail int32 // most and least recently used; -1 when empty
	bytes      int64
	perNS      []int64 // entries per namespace

	seed  maphash.Seed
	table []uint64 // hash<<32 | slot number+1; 0 is an empty bucket
	mask  uint64
	count int
}

func newIndex(capacity int) index {
	x := index{slots: make([]slot, 0, capacity), head: -1, tail: -1, seed: maphash.MakeSeed()}
	x.resize(capacity)
	return x
}

func (x *index) len() int { return x.count }

// nsLen is the number of entries in namespace ns.
func (x *index) nsLen(ns uint32) int64 {
	if int(ns) < len(x.perNS) {
		return x.perNS[ns]
	}
	return 0
}

func (x *index) hash(k *entryKey) uint64 {
	h := maphash.Bytes(x.seed, k.hash[:])
	return h ^ uint64(k.ns)*0x9e3779b97f4a7c15 ^ uint64(k.size)*0xc2b2ae3d27d4eb4f
}

func bucket(h uint64, slot int32) uint64 { return h&^0xffffffff | uint64(slot+1) }

// resize makes a table for at least n entries at a load of at most 3/4 and
// reinserts the live slots.
func (x *index) resize(n int) {
	size := 16
	for size*3 < n*4+4 {
		size *= 2
	}
	x.table = make([]uint64, size)
	x.mask = uint64(size - 1)
	for i := x.head; i >= 0; i = x.slots[i].next {
		h := x.hash(&x.slots[i].key)
		p := h & x.mask
		for x.table[p] != 0 {
			p = (p + 1) & x.mask
		}
		x.table[p] = bucket(h, i)
	}
}

// find returns the bucket of k and its slot number, or the empty bucket
// where it would go and false. h is the key's hash.
func (x *index) find(k *entryKey) (p, h uint64, i int32, ok bool) {
	h = x.hash(k)
	fp := h >> 32
	for p = h & x.mask; ; p = (p + 1) & x.mask {
		b := x.table[p]
		if b == 0 {
			return p, h, -1, false
		}
		if b>>32 == fp {
			if i := int32(uint32(b)) - 1; x.slots[i].key == *k {
				return p, h, i, true
			}
		}
	}
}

// deleteBucket empties bucket p and shifts later entries of its probe run
// back, so that lookups never stop early at the hole.
func (x *index) deleteBucket(p uint64) {
	x.table[p] = 0
	for j := (p + 1) & x.mask; x.table[j] != 0; j = (j + 1) & x.mask {
		home := x.hash(&x.slots[int32(uint32(x.table[j]))-1].key) & x.mask
		// Move the entry at j into the hole at p if p lies on its probe
		// path, i.e. p is no further from home than j is (cyclically).
		if (j-home)&x.mask >= (j-p)&x.mask {
			x.table[p] = x.table[j]
			x.table[j] = 0
			p = j
		}
	}
}

func (x *index) lookup(k entryKey) (int32, bool) {
	_, _, i, ok := x.find(&k)
	return i, ok
}

func (x *index) unlink(i int32) {
	s := &x.slots[i]
	if s.prev >= 0 {
		x.slots[s.prev].next = s.next
	} else {
		x.head = s.next
	}
	if s.next >= 0 {
		x.slots[s.next].prev = s.prev
	} else {
		x.tail = s.prev
	}
	s.prev, s.next = -1, -1
}

func (x *index) pushFront(i int32) {
	s := &x.slots[i]
	s.prev, s.next = -1, x.head
	if x.head >= 0 {
		x.slots[x.head].prev = i
	}
	x.head = i
	if x.tail < 0 {
		x.tail = i
	}
}

// touch makes slot i the most recently used.
func (x *index) touch(i int32) {
	if x.head == i {
		return
	}
	x.unlink(i)
	x.pushFront(i)
}

// add inserts k as the most recently used entry, or updates its size and
// recency if it is present.
func (x *index) add(k entryKey, size int64) {
	p, h, i, ok := x.find(&k)
	if ok {
		x.bytes += size - x.slots[i].size
		x.slots[i].size = size
		x.touch(i)
		return
	}
	if (x.count+1)*4 > len(x.table)*3 {
		x.resize((x.count + 1) * 2)
		p, h, _, _ = x.find(&k)
	}
	if n := len(x.free); n > 0 {
		i = x.free[n-1]
		x.free = x.free[:n-1]
		x.slots[i] = slot{key: k, size: size}
	} else {
		i = int32(len(x.slots))
		x.slots = append(x.slots, slot{key: k, size: size})
	}
	x.table[p] = bucket(h, i)
	x.count++
	x.pushFront(i)
	x.bytes += size
	for int(k.ns) >= len(x.perNS) {
		x.perNS = append(x.perNS, 0)
	}
	x.perNS[k.ns]++
}

// remove deletes k and returns its value size.
func (x *index) remove(k entryKey) (int64, bool) {
	p, _, i, ok := x.find(&k)
	if !ok {
		return 0, false
	}
	size := x.slots[i].size
	x.unlink(i)
	x.deleteBucket(p)
	x.count--
	x.perNS[k.ns]--
	x.slots[i] = slot{prev: -1, next: -1}
	x.free = append(x.free, i)
	x.bytes -= size
	return size, true
}

// each calls f for every entry from the least to the most recently used.
func (x *index) each(f func(s *slot)) {
	for i := x.tail; i >= 0; i = x.slots[i].prev {
		f(&x.slots[i])
	}
}
