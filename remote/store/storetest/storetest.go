// Package storetest is the conformance suite every store.Store backend and
// decorator runs from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return New(...) })
//	}
//
// Stores bounded in bytes also run RunBounded.
package storetest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// Blob returns size pseudo-random bytes derived from seed.
func Blob(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// CASKey returns the CAS key of data under fn in instance.
func CASKey(instance string, fn repb.DigestFunction_Value, data []byte) store.Key {
	d, err := digest.Of(fn, data)
	if err != nil {
		panic(err) // only for unsupported functions: a bug in the test
	}
	return store.Key{Kind: store.CAS, Instance: instance, Function: fn, Hash: d.Hash, Size: d.SizeBytes}
}

// ACKey returns an AC key whose hash is derived from name.
func ACKey(instance string, name string) store.Key {
	k := CASKey(instance, repb.DigestFunction_SHA256, []byte("action:"+name))
	k.Kind = store.AC
	return k
}

// Run runs the conformance suite against fresh stores made by newStore.
// The stores must be unbounded or large enough for a few MiB.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("PutGet", func(t *testing.T) { testPutGet(t, newStore(t)) })
	t.Run("Offsets", func(t *testing.T) { testOffsets(t, newStore(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, newStore(t)) })
	t.Run("FindMissing", func(t *testing.T) { testFindMissing(t, newStore(t)) })
	t.Run("PutExisting", func(t *testing.T) { testPutExisting(t, newStore(t)) })
	t.Run("FailedPuts", func(t *testing.T) { testFailedPuts(t, newStore(t)) })
	t.Run("KeySpaces", func(t *testing.T) { testKeySpaces(t, newStore(t)) })
	t.Run("UnsetFunction", func(t *testing.T) { testUnsetFunction(t, newStore(t)) })
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, newStore(t)) })
	t.Run("ActionCacheSizes", func(t *testing.T) { testACSizes(t, newStore(t)) })
	t.Run("Canceled", func(t *testing.T) { testCanceled(t, newStore(t)) })
	t.Run("ConcurrentSameKey", func(t *testing.T) { testConcurrentSameKey(t, newStore(t)) })
	t.Run("ConcurrentManyKeys", func(t *testing.T) { testConcurrentManyKeys(t, newStore(t)) })
}

// MustPut stores data under k or fails the test.
func MustPut(t testing.TB, s store.Store, k store.Key, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%s): %v", k, err)
	}
}

// MustGet reads the whole value of k or fails the test.
func MustGet(t testing.TB, s store.Store, k store.Key) []byte {
	t.Helper()
	got, err := ReadAll(s, k, 0)
	if err != nil {
		t.Fatalf("Get(%s): %v", k, err)
	}
	return got
}

// ReadAll reads the value of k from offset and checks that the size Get
// reports matches what was read.
func ReadAll(s store.Store, k store.Key, offset int64) ([]byte, error) {
	rc, size, err := s.Get(context.Background(), k, offset)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", k, err)
	}
	if int64(len(b)) != size-offset {
		return b, fmt.Errorf("get %s at %d: read %d bytes, reported size %d", k, offset, len(b), size)
	}
	return b, nil
}

// AssertMissing fails the test unless k is absent both to Get and to
// FindMissing.
func AssertMissing(t testing.TB, s store.Store, k store.Key) {
	t.Helper()
	rc, _, err := s.Get(context.Background(), k, 0)
	if err == nil {
		rc.Close()
		t.Errorf("Get(%s) found an entry that should not exist", k)
	} else if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%s) = %v, want ErrNotFound", k, err)
	}
	missing, err := s.FindMissing(context.Background(), []store.Key{k})
	if err != nil {
		t.Errorf("FindMissing(%s): %v", k, err)
	} else if len(missing) != 1 {
		t.Errorf("FindMissing(%s) = %v, want it reported missing", k, missing)
	}
}

func testPutGet(t *testing.T, s store.Store) {
	for i, size := range []int{0, 1, 100, 32*1024 - 1, 32 * 1024, 200_000, 3 << 20} {
		for _, fn := range digest.Supported {
			data := Blob(uint64(i), size)
			k := CASKey("", fn, data)
			MustPut(t, s, k, data)
			if got := MustGet(t, s, k); !bytes.Equal(got, data) {
				t.Errorf("Get(%s) returned %d bytes that differ from the %d stored", k, len(got), len(data))
			}
		}
	}
}

func testOffsets(t *testing.T, s store.Store) {
	data := Blob(7, 100_000)
	k := CASKey("inst", repb.DigestFunction_SHA256, data)
	MustPut(t, s, k, data)
	for _, off := range []int64{0, 1, 4095, 4096, 65_537, 99_999, 100_000} {
		got, err := ReadAll(s, k, off)
		if err != nil {
			t.Errorf("Get at offset %d: %v", off, err)
			continue
		}
		if !bytes.Equal(got, data[off:]) {
			t.Errorf("Get at offset %d returned the wrong bytes", off)
		}
	}
	for _, off := range []int64{-1, 100_001, 1 << 40} {
		rc, _, err := s.Get(context.Background(), k, off)
		if err == nil {
			rc.Close()
			t.Errorf("Get at offset %d of 100000 succeeded", off)
		} else if !errors.Is(err, store.ErrOutOfRange) {
			t.Errorf("Get at offset %d = %v, want ErrOutOfRange", off, err)
		}
	}
	// Reading only part of a value and closing early must be fine.
	rc, _, err := s.Get(context.Background(), k, 10)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 10)
	if _, err := io.ReadFull(rc, p); err != nil || !bytes.Equal(p, data[10:20]) {
		t.Errorf("partial read at offset 10 = %x, %v", p, err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close after a partial read: %v", err)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	AssertMissing(t, s, CASKey("", repb.DigestFunction_SHA256, []byte("never stored")))
	AssertMissing(t, s, ACKey("", "never stored"))
}

func testFindMissing(t *testing.T, s store.Store) {
	ctx := context.Background()
	missing, err := s.FindMissing(ctx, nil)
	if err != nil || len(missing) != 0 {
		t.Errorf("FindMissing(nil) = %v, %v", missing, err)
	}
	var keys, want []store.Key
	for i := range 50 {
		data := Blob(uint64(1000+i), 10+i)
		k := CASKey("fm", repb.DigestFunction_SHA256, data)
		keys = append(keys, k)
		if i%3 == 0 {
			MustPut(t, s, k, data)
		} else {
			want = append(want, k)
		}
	}
	// Duplicates in the request are reported as often as they appear.
	keys = append(keys, keys[1], keys[0])
	want = append(want, keys[1])
	got, err := s.FindMissing(ctx, keys)
	if err != nil {
		t.Fatalf("FindMissing: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("FindMissing returned %d keys, want %d in request order:\n got %v\nwant %v", len(got), len(want), got, want)
	}
}

func testPutExisting(t *testing.T, s store.Store) {
	data := Blob(3, 5000)
	k := CASKey("", repb.DigestFunction_SHA256, data)
	MustPut(t, s, k, data)
	MustPut(t, s, k, data)
	if got := MustGet(t, s, k); !bytes.Equal(got, data) {
		t.Errorf("value changed after a second Put")
	}
	// An AC entry can be replaced or kept; either way it must be whole.
	ak := ACKey("", "replace")
	v1, v2 := Blob(4, 300), Blob(5, 400)
	MustPut(t, s, ak, v1)
	MustPut(t, s, ak, v2)
	if got := MustGet(t, s, ak); !bytes.Equal(got, v1) && !bytes.Equal(got, v2) {
		t.Errorf("AC entry after two Puts is neither value (%d bytes)", len(got))
	}
}

var errBoom = errors.New("reader failed on purpose")

// failingReader yields data and then fails with err instead of io.EOF.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// finalErrReader returns all of data together with err in a single Read,
// the way a verifying reader reports a mismatch at the end.
type finalErrReader struct {
	data []byte
	err  error
	done bool
}

func (f *finalErrReader) Read(p []byte) (int, error) {
	if f.done {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	if len(f.data) == 0 {
		f.done = true
		return n, f.err
	}
	return n, nil
}

func testFailedPuts(t *testing.T, s store.Store) {
	ctx := context.Background()
	data := Blob(11, 70_000)
	cases := []struct {
		name    string
		size    int64
		r       func() io.Reader
		wantErr error
	}{
		{"ErrorMidway", int64(len(data)), func() io.Reader {
			return &failingReader{r: bytes.NewReader(data[:30_000]), err: errBoom}
		}, errBoom},
		{"ErrorAtEnd", int64(len(data)), func() io.Reader {
			return &failingReader{r: bytes.NewReader(data), err: errBoom}
		}, errBoom},
		{"ErrorWithLastBytes", int64(len(data)), func() io.Reader {
			return &finalErrReader{data: data, err: errBoom}
		}, errBoom},
		{"TooFew", int64(len(data)), func() io.Reader {
			return bytes.NewReader(data[:len(data)-1])
		}, store.ErrSizeMismatch},
		{"TooMany", int64(len(data)) - 1, func() io.Reader {
			return bytes.NewReader(data)
		}, store.ErrSizeMismatch},
		{"EmptyButDeclared", 10, func() io.Reader {
			return bytes.NewReader(nil)
		}, store.ErrSizeMismatch},
		{"NegativeSize", -1, func() io.Reader {
			return bytes.NewReader(nil)
		}, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A distinct key per case, so one case cannot mask another.
			k := CASKey(fmt.Sprintf("failed-%d", i), repb.DigestFunction_SHA256, data)
			err := s.Put(ctx, k, c.size, c.r())
			if err == nil {
				t.Fatalf("Put succeeded")
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Errorf("Put = %v, want an error wrapping %v", err, c.wantErr)
			}
			AssertMissing(t, s, k)
			// The key is still usable afterwards.
			MustPut(t, s, k, data)
			if got := MustGet(t, s, k); !bytes.Equal(got, data) {
				t.Errorf("Get after a failed then good Put returned the wrong bytes")
			}
		})
	}
}

func testKeySpaces(t *testing.T, s store.Store) {
	data := []byte("one value, many keys")
	base := CASKey("a", repb.DigestFunction_SHA256, data)
	variants := map[string]store.Key{}
	variants["base"] = base
	k := base
	k.Kind = store.AC
	variants["ac"] = k
	k = base
	k.Function = repb.DigestFunction_BLAKE3
	variants["blake3"] = k
	for _, inst := range []string{"", "b", "a/b", "a/", "/a", "A", "a b", "../a", "..", "a/../a", "ä\x00x", "a%2Fb"} {
		k = base
		k.Instance = inst
		variants["instance "+fmt.Sprintf("%q", inst)] = k
	}
	names := make([]string, 0, len(variants))
	for n := range variants {
		names = append(names, n)
	}
	for i, n := range names {
		MustPut(t, s, variants[n], append([]byte(n+": "), data...))
		for _, m := range names[i+1:] {
			AssertMissing(t, s, variants[m])
		}
	}
	for _, n := range names {
		want := append([]byte(n+": "), data...)
		if got := MustGet(t, s, variants[n]); !bytes.Equal(got, want) {
			t.Errorf("key %s returned %q, want %q", n, got, want)
		}
	}
}

func testUnsetFunction(t *testing.T, s store.Store) {
	data := []byte("unset function means sha256")
	k := CASKey("", repb.DigestFunction_SHA256, data)
	unset := k
	unset.Function = repb.DigestFunction_UNKNOWN
	MustPut(t, s, unset, data)
	if got := MustGet(t, s, k); !bytes.Equal(got, data) {
		t.Errorf("value put with an unset function is not found under SHA256")
	}
	b := k
	b.Function = repb.DigestFunction_BLAKE3
	AssertMissing(t, s, b)
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	good := CASKey("", repb.DigestFunction_SHA256, []byte("x"))
	bad := map[string]store.Key{}
	k := good
	k.Hash = "../../../../etc/passwd"
	bad["traversal"] = k
	k = good
	k.Hash = "../" + good.Hash[3:]
	bad["traversal of hash length"] = k
	k = good
	k.Hash = hex.EncodeToString([]byte("x"))
	bad["short"] = k
	k = good
	k.Hash = good.Hash + "00"
	bad["long"] = k
	k = good
	k.Hash = string(bytes.ToUpper([]byte(good.Hash)))
	bad["uppercase"] = k
	k = good
	k.Hash = ""
	bad["empty"] = k
	k = good
	k.Size = -1
	bad["negative size"] = k
	k = good
	k.Kind = store.Kind(9)
	bad["kind"] = k
	k = good
	k.Function = repb.DigestFunction_MD5
	bad["md5"] = k
	for name, k := range bad {
		t.Run(name, func(t *testing.T) {
			if err := s.Put(ctx, k, 1, bytes.NewReader([]byte("x"))); err == nil {
				t.Errorf("Put accepted an invalid key")
			}
			if rc, _, err := s.Get(ctx, k, 0); err == nil {
				rc.Close()
				t.Errorf("Get accepted an invalid key")
			}
			if _, err := s.FindMissing(ctx, []store.Key{good, k}); err == nil {
				t.Errorf("FindMissing accepted an invalid key")
			}
		})
	}
}

func testACSizes(t *testing.T, s store.Store) {
	// For the action cache, Key.Size is the Action's size, unrelated to
	// the size of the stored ActionResult.
	k := ACKey("", "sizes")
	k.Size = 12345
	v := Blob(21, 77)
	MustPut(t, s, k, v)
	rc, size, err := s.Get(context.Background(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if size != int64(len(v)) {
		t.Errorf("Get reported size %d, want the value's %d", size, len(v))
	}
}

func testCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := []byte("canceled")
	k := CASKey("", repb.DigestFunction_SHA256, data)
	if err := s.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err == nil {
		t.Errorf("Put with a canceled context succeeded")
	}
	AssertMissing(t, s, k)
}

// slowReader yields its data a few bytes at a time, yielding the processor
// between reads, so that concurrent readers get to look during the write.
type slowReader struct {
	data  []byte
	chunk int
	fail  error // returned instead of io.EOF when set
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.fail != nil {
			return 0, r.fail
		}
		return 0, io.EOF
	}
	n := min(len(p), r.chunk, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func testConcurrentSameKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	data := Blob(99, 256*1024)
	k := CASKey("concurrent", repb.DigestFunction_SHA256, data)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	readers := func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := ReadAll(s, k, 0)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				report("Get during writes: %v", err)
			case !bytes.Equal(got, data):
				report("Get during writes returned %d bytes that are not the value", len(got))
			}
			if missing, err := s.FindMissing(ctx, []store.Key{k}); err != nil {
				report("FindMissing during writes: %v", err)
			} else if len(missing) == 0 {
				// Present: it must then be readable in full.
				if got, err := ReadAll(s, k, 0); err != nil || !bytes.Equal(got, data) {
					report("present by FindMissing but Get = %d bytes, %v", len(got), err)
				}
			}
		}
	}
	for range 3 {
		wg.Add(1)
		go readers()
	}
	var writers sync.WaitGroup
	for i := range 6 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			r := &slowReader{data: data, chunk: 4096 + i*1000}
			var fail error
			if i%2 == 1 {
				// Half the writers fail at the very end, after all bytes.
				fail = errBoom
				r.fail = fail
			}
			err := s.Put(ctx, k, int64(len(data)), r)
			if fail == nil && err != nil {
				report("writer %d: %v", i, err)
			}
			if fail != nil && err == nil {
				// A failing writer may return nil only if the entry
				// already existed and its bytes were not needed.
				if missing, ferr := s.FindMissing(ctx, []store.Key{k}); ferr != nil || len(missing) != 0 {
					report("failing writer %d succeeded but the entry is missing", i)
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	if got := MustGet(t, s, k); !bytes.Equal(got, data) {
		t.Errorf("after concurrent writes, Get returned the wrong %d bytes", len(got))
	}
}

func testConcurrentManyKeys(t *testing.T, s store.Store) {
	const workers, per = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				data := Blob(uint64(w*1000+i), 100+i*37)
				k := CASKey("many", repb.DigestFunction_BLAKE3, data)
				if err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
					errs <- err
					continue
				}
				got, err := ReadAll(s, k, 0)
				if err != nil {
					errs <- err
				} else if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s: wrong bytes", k)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
