package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func TestVerifyingAcceptsMatchingContent(t *testing.T) {
	s := store.Verifying(memory.New(0))
	for _, fn := range []repb.DigestFunction_Value{repb.DigestFunction_SHA256, repb.DigestFunction_BLAKE3} {
		for _, size := range []int{0, 1, 100_000} {
			b := storetest.Blob(uint64(size), size)
			k := storetest.CASKey("v", fn, b)
			storetest.MustPut(t, s, k, b)
			if got := storetest.MustGet(t, s, k); !bytes.Equal(got, b) {
				t.Errorf("%s/%d: wrong bytes", fn, size)
			}
		}
	}
	// An unset function means SHA256.
	b := []byte("unset")
	k := storetest.CASKey("", repb.DigestFunction_SHA256, b)
	k.Function = repb.DigestFunction_UNKNOWN
	storetest.MustPut(t, s, k, b)
}

func TestVerifyingRejectsMismatches(t *testing.T) {
	dir := t.TempDir()
	d, err := disk.Open(disk.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := store.Verifying(d)
	good := storetest.Blob(1, 50_000)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, good)
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 1
	blake := k
	blake.Function = repb.DigestFunction_BLAKE3 // right bytes, wrong function

	cases := []struct {
		name string
		key  store.Key
		size int64
		data []byte
		want error
	}{
		{"last byte flipped", k, k.Size, bad, store.ErrDigestMismatch},
		{"other function", blake, k.Size, good, store.ErrDigestMismatch},
		{"short", k, k.Size, good[:len(good)-1], store.ErrSizeMismatch},
		{"long", k, k.Size, append(good, 0), store.ErrSizeMismatch},
		{"size differs from digest", k, k.Size - 1, good[:len(good)-1], store.ErrSizeMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Put(context.Background(), c.key, c.size, bytes.NewReader(c.data))
			if !errors.Is(err, c.want) {
				t.Fatalf("Put = %v, want %v", err, c.want)
			}
			if errors.Is(err, store.ErrDigestMismatch) && (!strings.Contains(err.Error(), "expected "+c.key.Hash) || !strings.Contains(err.Error(), "actual ")) {
				t.Errorf("message does not name expected and actual hashes: %v", err)
			}
			storetest.AssertMissing(t, s, c.key)
		})
	}
	// Nothing of the failed writes reached the disk, not even temporaries.
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(path string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			t.Errorf("file left by rejected writes: %s", path)
		}
		return nil
	})
	storetest.MustPut(t, s, k, good)
}

func TestVerifyingPassesActionCache(t *testing.T) {
	s := store.Verifying(memory.New(0))
	k := storetest.ACKey("", "a")
	v := []byte("an ActionResult, not hashed to the key")
	storetest.MustPut(t, s, k, v)
	if got := storetest.MustGet(t, s, k); !bytes.Equal(got, v) {
		t.Error("AC value changed")
	}
}

func TestVerifyingBoundsEndlessStream(t *testing.T) {
	s := store.Verifying(memory.New(0))
	k := storetest.CASKey("", repb.DigestFunction_SHA256, []byte("tiny"))
	err := s.Put(context.Background(), k, k.Size, endless{})
	if !errors.Is(err, store.ErrSizeMismatch) {
		t.Errorf("Put of an endless stream = %v, want ErrSizeMismatch", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestStatsOfUnwraps(t *testing.T) {
	m := memory.New(100)
	storetest.MustPut(t, m, storetest.ACKey("", "x"), []byte("12345"))
	st, ok := store.StatsOf(store.Verifying(store.Verifying(m)))
	if !ok || st.Bytes != 5 || st.MaxBytes != 100 {
		t.Errorf("StatsOf = %+v, %v", st, ok)
	}
	if _, ok := store.StatsOf(store.Verifying(noStats{})); ok {
		t.Error("StatsOf reported stats for a store without them")
	}
}

type noStats struct{ store.Store }

func TestDecodeKey(t *testing.T) {
	good := storetest.ACKey("i", "x")
	k, h, err := store.DecodeKey(good)
	if err != nil || k != good || hex.EncodeToString(h[:]) != good.Hash {
		t.Fatalf("DecodeKey(%s) = %s, %x, %v", good, k, h, err)
	}
	unset := good
	unset.Function = repb.DigestFunction_UNKNOWN
	if k, _, err := store.DecodeKey(unset); err != nil || k != good {
		t.Errorf("unset function: %s, %v", k, err)
	}
	for _, bad := range []store.Key{
		{Kind: 7, Hash: good.Hash},
		{Kind: store.CAS, Hash: good.Hash, Size: -1},
		{Kind: store.CAS, Hash: strings.ToUpper(good.Hash)},
		{Kind: store.CAS, Hash: good.Hash[:40]},
		{Kind: store.CAS, Function: repb.DigestFunction_MD5, Hash: good.Hash},
		{Kind: store.CAS, Hash: "../" + good.Hash[3:]},
	} {
		_, _, err := store.DecodeKey(bad)
		_, cerr := store.CheckKey(bad)
		if !errors.Is(err, store.ErrInvalidKey) || cerr == nil {
			t.Errorf("%+v: DecodeKey %v, CheckKey %v", bad, err, cerr)
		}
	}
}

// A Put through the decorator declaring math.MaxInt64 bytes, on the memory
// and disk stores, fails with ErrSizeMismatch: no slice-bounds panic in the
// verifying reader, no allocation of the declared size. (Before the store
// refactor, store.Verifying's own copy of the reader panicked here.)
func TestVerifyingMaxInt64Size(t *testing.T) {
	disked, err := disk.Open(disk.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disked.Close() })
	for name, next := range map[string]store.Store{"memory": memory.New(0), "disk": disked} {
		s := store.Verifying(next)
		k := storetest.CASKey("", repb.DigestFunction_SHA256, []byte("abc"))
		k.Size = math.MaxInt64
		for _, r := range []io.Reader{strings.NewReader("abc"), strings.NewReader(strings.Repeat("x", 1<<20))} {
			if err := s.Put(context.Background(), k, k.Size, r); !errors.Is(err, store.ErrSizeMismatch) {
				t.Errorf("%s: Put declaring MaxInt64 bytes = %v, want ErrSizeMismatch", name, err)
			}
		}
	}
}
