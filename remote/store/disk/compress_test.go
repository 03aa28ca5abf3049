package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"

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

func TestGetCompressedFrames(t *testing.T) {
	s := openCompressed(t, t.TempDir())
	ctx := context.Background()
	// Half random, half runs, over several frames and a short last one.
	data := append(storetest.Blob(7, 2*chunkSize), compressible(chunkSize+4321)...)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, s, k, data)
	rc, size, err := s.GetCompressed(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	z, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || size != int64(len(data)) {
		t.Fatalf("GetCompressed: %d bytes, size %d, %v", len(z), size, err)
	}
	got, err := unzstd(t, z)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the stored frames do not decompress to the value (%d bytes, %v)", len(got), err)
	}
	if int64(len(z)) >= s.Stats().Bytes {
		t.Errorf("%d bytes of frames for %d bytes stored: the chunk table was sent too?", len(z), s.Stats().Bytes)
	}
	// Plain reads at any offset still work on the compressed value.
	for _, off := range []int64{0, 1, chunkSize - 1, chunkSize, 2*chunkSize + 5, int64(len(data))} {
		got, err := storetest.ReadAll(s, k, off)
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("plain read at %d: %v", off, err)
		}
	}
	// Missing, and stored uncompressed.
	if _, _, err := s.GetCompressed(ctx, storetest.CASKey("", repb.DigestFunction_SHA256, []byte("no"))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	plain := openT(t, t.TempDir(), 0)
	storetest.MustPut(t, plain, k, data)
	if _, _, err := plain.GetCompressed(ctx, k); !errors.Is(err, store.ErrNotCompressed) {
		t.Errorf("stored plain: %v", err)
	}
	// Through the decorators.
	if _, _, err := store.GetCompressed(ctx, store.Verifying(s), k); err != nil {
		t.Errorf("through Verifying: %v", err)
	}
}

func TestGetCompressedCorruptionNotServed(t *testing.T) {
	for _, where := range []string{"first frame", "last frame", "table", "truncated"} {
		t.Run(where, func(t *testing.T) {
			s := openCompressed(t, t.TempDir())
			data := append(storetest.Blob(3, chunkSize), compressible(chunkSize+100)...)
			k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
			storetest.MustPut(t, s, k, data)
			s.mu.Lock()
			path := s.path(s.nsDirs[0], k)
			s.mu.Unlock()
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := f.Stat()
			_, hlen, err := readHeader(f)
			if err != nil {
				t.Fatal(err)
			}
			starts, _, err := chunkTable(f, hlen, fi.Size(), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			flip := func(at int64) {
				b := make([]byte, 1)
				f.ReadAt(b, at)
				f.WriteAt([]byte{b[0] ^ 0x55}, at)
			}
			switch where {
			case "first frame":
				flip(starts[0] + (starts[1]-starts[0])/2)
			case "last frame":
				flip(starts[2] - 6) // in the frame's checksum or last block
			case "table":
				flip(starts[2] + 1) // a frame length
			case "truncated":
				f.Truncate(starts[2] - 3)
			}
			f.Close()
			rc, _, err := s.GetCompressed(context.Background(), k)
			if err != nil {
				return // detected when opening
			}
			z, err := io.ReadAll(rc)
			rc.Close()
			if err == nil {
				t.Fatalf("served %d bytes of a damaged compressed file without error", len(z))
			}
			// What was passed on before the error is whole, good frames.
			if got, derr := unzstd(t, z); derr != nil || !bytes.Equal(got, data[:len(got)]) {
				t.Errorf("bytes passed on before the error do not decompress to a prefix of the value: %v", derr)
			}
		})
	}
}

// unzstd decodes a whole zstd stream (any number of frames).
func unzstd(t *testing.T, z []byte) ([]byte, error) {
	t.Helper()
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	return d.DecodeAll(z, nil)
}

func TestSmallValuesStayPlain(t *testing.T) {
	s := openCompressed(t, t.TempDir())
	ctx := context.Background()
	for _, n := range []int{1, 4096, MinCompressSize - 1, MinCompressSize} {
		data := compressible(n)
		k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
		storetest.MustPut(t, s, k, data)
		if got := storetest.MustGet(t, s, k); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: wrong value", n)
		}
		_, _, err := s.GetCompressed(ctx, k)
		if small := n < MinCompressSize; small != errors.Is(err, store.ErrNotCompressed) || !small && err != nil {
			t.Errorf("%d bytes (minimum for compression %d): GetCompressed: %v", n, MinCompressSize, err)
		}
	}
}

// TestFirstFormatFiles checks files whose chunk table has lengths only
// ("FRZ1", written before the table had CRCs): readable both ways, and a
// damaged frame is still caught (by decompressing it).
func TestFirstFormatFiles(t *testing.T) {
	s := openCompressed(t, t.TempDir())
	ctx := context.Background()
	data := append(storetest.Blob(9, chunkSize+999), compressible(chunkSize)...)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, s, k, data)
	s.mu.Lock()
	path := s.path(s.nsDirs[0], k)
	s.mu.Unlock()
	toV1 := func() {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		_, hlen, err := readHeader(f)
		if err != nil {
			t.Fatal(err)
		}
		starts, crcs, err := chunkTable(f, hlen, fi.Size(), int64(len(data)))
		if err != nil || crcs == nil {
			t.Fatalf("table: %v, crcs %v", err, crcs)
		}
		var tab []byte
		for i := range len(starts) - 1 {
			tab = binary.LittleEndian.AppendUint32(tab, uint32(starts[i+1]-starts[i]))
		}
		tab = binary.LittleEndian.AppendUint32(tab, uint32(len(starts)-1))
		tab = append(tab, trailerMagicV1...)
		end := starts[len(starts)-1]
		f.WriteAt(tab, end)
		f.Truncate(end + int64(len(tab)))
		if _, crcs, err := chunkTable(f, hlen, end+int64(len(tab)), int64(len(data))); err != nil || crcs != nil {
			t.Fatalf("rewritten table: %v, crcs %v", err, crcs)
		}
	}
	toV1()
	if got := storetest.MustGet(t, s, k); !bytes.Equal(got, data) {
		t.Fatal("plain read of a first-format file: wrong bytes")
	}
	rc, _, err := s.GetCompressed(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	z, err := io.ReadAll(rc)
	rc.Close()
	if got, derr := unzstd(t, z); err != nil || derr != nil || !bytes.Equal(got, data) {
		t.Fatalf("compressed read of a first-format file: %v, %v", err, derr)
	}
	// Damage the second frame.
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	fi, _ := f.Stat()
	_, hlen, _ := readHeader(f)
	starts, _, _ := chunkTable(f, hlen, fi.Size(), int64(len(data)))
	b := make([]byte, 1)
	at := starts[1] + (starts[2]-starts[1])/2
	f.ReadAt(b, at)
	f.WriteAt([]byte{b[0] ^ 0x55}, at)
	f.Close()
	rc, _, err = s.GetCompressed(ctx, k)
	if err != nil {
		return
	}
	z, err = io.ReadAll(rc)
	rc.Close()
	if err == nil {
		t.Fatal("a damaged frame of a first-format file was passed on")
	}
	if got, derr := unzstd(t, z); derr != nil || !bytes.Equal(got, data[:len(got)]) || len(got) > chunkSize {
		t.Errorf("before the error: %d bytes, %v (want at most the first frame's)", len(got), derr)
	}
}
