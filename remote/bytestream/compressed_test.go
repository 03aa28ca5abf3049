package bytestream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
)

// framedStore is a memory store that also hands out a compressed form of
// its blobs through store.CompressedReader: the zstd frames of each
// frameSize bytes, compressed when asked. failAfter > 0 makes the reader
// fail after that many bytes; notCompressed answers ErrNotCompressed.
type framedStore struct {
	*memory.Store
	calls         atomic.Int64
	failAfter     int64
	notCompressed bool
}

const frameSize = 100_000

func (f *framedStore) frames(t testing.TB, data []byte) []byte {
	var out []byte
	for len(data) > 0 {
		n := min(len(data), frameSize)
		out = append(out, zstdcodec.Compress(data[:n])...)
		data = data[n:]
	}
	return out
}

func (f *framedStore) GetCompressed(ctx context.Context, k store.Key) (io.ReadCloser, int64, error) {
	f.calls.Add(1)
	if f.notCompressed {
		return nil, 0, store.ErrNotCompressed
	}
	rc, size, err := f.Store.Get(ctx, k, 0)
	if err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, 0, err
	}
	z := f.frames(nil, data)
	var r io.Reader = bytes.NewReader(z)
	if f.failAfter > 0 {
		r = io.MultiReader(io.LimitReader(r, f.failAfter), errReader{})
	}
	return io.NopCloser(r), size, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("frame 3 is corrupt") }

func TestReadStoredFrames(t *testing.T) {
	fs := &framedStore{Store: memory.New(0)}
	e := setupWith(t, fs, bytestream.Options{})
	ctx := context.Background()
	data := append(randBytes(600_000), make([]byte, 400_000)...)
	up, _ := name(t, "", sha, data, "u1", false)
	if _, err := write(ctx, e.c, up, 0, data, 1<<20, true); err != nil {
		t.Fatal(err)
	}
	zrd, _ := name(t, "", sha, data, "", true)

	// From offset 0 the store's frames are sent exactly as they are.
	got, err := read(ctx, e.c, zrd, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := fs.frames(t, data); !bytes.Equal(got, want) {
		t.Fatalf("compressed read sent %d bytes, not the store's %d bytes of frames", len(got), len(want))
	}
	if !bytes.Equal(unzstd(t, got), data) {
		t.Fatal("the frames do not decompress to the blob")
	}
	if fs.calls.Load() != 1 {
		t.Fatalf("GetCompressed called %d times, want 1", fs.calls.Load())
	}

	// At an offset the blob is compressed from there.
	got, err = read(ctx, e.c, zrd, 12345, 0)
	if err != nil || !bytes.Equal(unzstd(t, got), data[12345:]) {
		t.Fatalf("compressed read at an offset: %v", err)
	}
	if fs.calls.Load() != 1 {
		t.Fatal("GetCompressed used for a read at an offset")
	}

	// A store that does not keep the blob compressed: compressed here.
	fs.notCompressed = true
	got, err = read(ctx, e.c, zrd, 0, 0)
	if err != nil || !bytes.Equal(unzstd(t, got), data) {
		t.Fatalf("compressed read without stored frames: %v", err)
	}
	fs.notCompressed = false

	// A store whose frames turn out bad mid-way: the read fails.
	fs.failAfter = 300_000
	_, err = read(ctx, e.c, zrd, 0, 0)
	wantCode(t, err, codes.Internal)
	fs.failAfter = 0

	// Missing blobs are NOT_FOUND.
	other, _ := name(t, "", sha, []byte("never written"), "", true)
	_, err = read(ctx, e.c, other, 0, 0)
	wantCode(t, err, codes.NotFound)
}

// TestOnDiskCompressed runs the read and write tests on the disk store with
// zstd at rest, where compressed reads send the stored frames.
func TestOnDiskCompressed(t *testing.T) {
	saved := newStore
	newStore = func(t *testing.T) testStore {
		d, err := disk.Open(disk.Options{Dir: t.TempDir(), Compress: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	defer func() { newStore = saved }()
	t.Run("WriteRead", TestWriteRead)
	t.Run("WriteRejects", TestWriteRejects)
	t.Run("ConcurrentWritersAndReaders", TestConcurrentWritersAndReaders)
	t.Run("CompressedReadIsStoredFrames", func(t *testing.T) {
		e := setup(t, bytestream.Options{})
		ctx := context.Background()
		data := append(randBytes(700_000), bytes.Repeat([]byte("run of text "), 60_000)...)
		up, _ := name(t, "", sha, data, "u", true)
		if _, err := write(ctx, e.c, up, 0, zstdcodec.Compress(data), 64<<10, true); err != nil {
			t.Fatal(err)
		}
		zrd, d := name(t, "", sha, data, "", true)
		got, err := read(ctx, e.c, zrd, 0, 0)
		if err != nil || !bytes.Equal(unzstd(t, got), data) {
			t.Fatalf("compressed read: %v", err)
		}
		rc, _, err := e.st.(store.CompressedReader).GetCompressed(ctx, key("", sha, d))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("compressed read sent %d bytes, the store holds %d bytes of frames", len(got), len(want))
		}
		for _, off := range []int64{1, 262143, 262144, 500_000, int64(len(data)) - 1} {
			got, err := read(ctx, e.c, resourceName("", sha, d, "", false), off, 0)
			if err != nil || !bytes.Equal(got, data[off:]) {
				t.Fatalf("plain read at %d: %v", off, err)
			}
		}
	})
}
