package disk

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
// order: a map to slot numbers and a doubly linked list threaded through a
// slice by number. It is not safe for concurrent use; Store.mu guards it.
type index struct {
	m          map[entryKey]int32
	slots      []slot
	free       []int32
	head, tail int32 // most and least recently used; -1 when empty
	bytes      int64
}

func newIndex(capacity int) index {
	return index{m: make(map[entryKey]int32, capacity), slots: make([]slot, 0, capacity), head: -1, tail: -1}
}

func (x *index) len() int { return len(x.m) }

func (x *index) lookup(k entryKey) (int32, bool) {
	i, ok := x.m[k]
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
	if i, ok := x.m[k]; ok {
		x.bytes += size - x.slots[i].size
		x.slots[i].size = size
		x.touch(i)
		return
	}
	var i int32
	if n := len(x.free); n > 0 {
		i = x.free[n-1]
		x.free = x.free[:n-1]
		x.slots[i] = slot{key: k, size: size}
	} else {
		i = int32(len(x.slots))
		x.slots = append(x.slots, slot{key: k, size: size})
	}
	x.m[k] = i
	x.pushFront(i)
	x.bytes += size
}

// addOldest inserts k (absent) as the least recently used entry.
func (x *index) addOldest(k entryKey, size int64) {
	if _, ok := x.m[k]; ok {
		return
	}
	x.add(k, size)
	i := x.m[k]
	x.unlink(i)
	s := &x.slots[i]
	s.prev, s.next = x.tail, -1
	if x.tail >= 0 {
		x.slots[x.tail].next = i
	}
	x.tail = i
	if x.head < 0 {
		x.head = i
	}
}

// remove deletes k and returns its value size.
func (x *index) remove(k entryKey) (int64, bool) {
	i, ok := x.m[k]
	if !ok {
		return 0, false
	}
	size := x.slots[i].size
	x.unlink(i)
	delete(x.m, k)
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
