package disk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func openCompressed(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, Compress: true, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCompressedConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openCompressed(t, t.TempDir()) })
}

// compressible returns size bytes of text-like data.
func compressible(size int) []byte {
	line := []byte("static PyObject *base64_encode(PyObject *module, PyObject *arg) /* Rust */\n")
	return bytes.Repeat(line, size/len(line)+1)[:size]
}

func TestCompressedRandomAccess(t *testing.T) {
	s := openCompressed(t, t.TempDir())
	data := compressible(3*chunkSize + 12345)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, s, k, data)
	st := s.Stats()
	if st.Bytes <= 0 || st.Bytes >= int64(len(data))/4 {
		t.Errorf("compressible %d bytes stored as %d", len(data), st.Bytes)
	}
	for _, off := range []int64{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 2*chunkSize + 7, int64(len(data)) - 1, int64(len(data))} {
		got, err := storetest.ReadAll(s, k, off)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		if !bytes.Equal(got, data[off:]) {
			t.Errorf("offset %d: wrong bytes", off)
		}
	}
}

func TestCompressionSwitchable(t *testing.T) {
	dir := t.TempDir()
	plain := storetest.Blob(1, 100_000)
	packed := compressible(100_000)
	kp := storetest.CASKey("", repb.DigestFunction_SHA256, plain)
	kc := storetest.CASKey("", repb.DigestFunction_SHA256, packed)
	s := openT(t, dir, 0)
	storetest.MustPut(t, s, kp, plain)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openCompressed(t, dir)
	storetest.MustPut(t, s, kc, packed)
	for k, want := range map[store.Key][]byte{kp: plain, kc: packed} {
		if got := storetest.MustGet(t, s, k); !bytes.Equal(got, want) {
			t.Errorf("%s: wrong bytes with both formats in one store", k)
		}
	}
}

func TestCompressedCorruptionNotServed(t *testing.T) {
	s := openCompressed(t, t.TempDir())
	data := compressible(2*chunkSize + 100)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, s, k, data)
	s.mu.Lock()
	path := s.path(s.nsDirs[0], k)
	s.mu.Unlock()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte inside the first frame's compressed data.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	hdrLen := int64(headerFixedLen + 4)
	b := make([]byte, 1)
	f.ReadAt(b, hdrLen+20)
	f.WriteAt([]byte{b[0] ^ 0xff}, hdrLen+20)
	f.Close()
	rc, _, err := s.Get(context.Background(), k, 0)
	if err != nil {
		return // detected when opening: fine
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err == nil {
		t.Fatalf("read a corrupted compressed blob without error (%d of %d bytes, file %d)", len(got), len(data), fi.Size())
	}
	if !errors.Is(err, errBadHeader) {
		t.Logf("error: %v", err)
	}
	if len(got) > 0 && !bytes.Equal(got, data[:len(got)]) {
		t.Error("served wrong bytes before the error")
	}
}
