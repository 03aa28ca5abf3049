package disk

import (
	"math/rand/v2"
	"testing"
)

// TestIndexAgainstMap drives the index and a reference (a map plus an
// ordered list) with random adds, removals and uses, over keys chosen to
// collide often in the hash table, and compares them after every step.
func TestIndexAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := newIndex(0)
	ref := map[entryKey]int64{}
	var order []entryKey // least recently used first
	moveToEnd := func(k entryKey) {
		for i, o := range order {
			if o == k {
				order = append(order[:i], order[i+1:]...)
				break
			}
		}
		order = append(order, k)
	}
	key := func() entryKey {
		var k entryKey
		k.ns = uint32(r.IntN(3))
		k.hash[0] = byte(r.IntN(40))
		k.size = int64(r.IntN(4))
		return k
	}
	for step := range 20_000 {
		k := key()
		switch op := r.IntN(10); {
		case op < 5:
			size := int64(r.IntN(1000))
			x.add(k, size)
			ref[k] = size
			moveToEnd(k)
		case op < 8:
			size, ok := x.remove(k)
			want, wok := ref[k]
			if ok != wok || size != want {
				t.Fatalf("step %d: remove = %d, %v; want %d, %v", step, size, ok, want, wok)
			}
			if wok {
				delete(ref, k)
				for i, o := range order {
					if o == k {
						order = append(order[:i], order[i+1:]...)
						break
					}
				}
			}
		default:
			i, ok := x.lookup(k)
			if _, wok := ref[k]; ok != wok {
				t.Fatalf("step %d: lookup = %v, want %v", step, ok, wok)
			}
			if ok {
				x.touch(i)
				moveToEnd(k)
			}
		}
		if x.len() != len(ref) {
			t.Fatalf("step %d: len %d, want %d", step, x.len(), len(ref))
		}
		if step%97 == 0 {
			var got []entryKey
			var bytes int64
			x.each(func(s *slot) {
				got = append(got, s.key)
				bytes += s.size
				if ref[s.key] != s.size {
					t.Fatalf("step %d: size of %v = %d, want %d", step, s.key, s.size, ref[s.key])
				}
			})
			if len(got) != len(order) {
				t.Fatalf("step %d: %d entries in LRU order, want %d", step, len(got), len(order))
			}
			for i := range got {
				if got[i] != order[i] {
					t.Fatalf("step %d: LRU order differs at %d", step, i)
				}
			}
			if bytes != x.bytes {
				t.Fatalf("step %d: bytes %d, sum %d", step, x.bytes, bytes)
			}
			for k := range ref {
				if _, ok := x.lookup(k); !ok {
					t.Fatalf("step %d: %v lost", step, k)
				}
			}
		}
	}
}
