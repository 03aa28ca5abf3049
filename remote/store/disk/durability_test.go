package disk

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

// TestPowerCutJournalLost simulates a power cut that loses the index
// journal (every record after its magic) while the blob files, fsynced and
// renamed into place, survive: the reopened store must adopt every one of
// them, CAS blobs and AC entries, instead of deleting them as orphans.
func TestPowerCutJournalLost(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, Fsync: true, Compress: compress, SnapshotInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			const n = 300
			blob := func(i int) []byte {
				size := 100 + i*37%5000
				if i%10 == 0 {
					size = 2*MinCompressSize + i*1000
				}
				return storetest.Blob(uint64(i), size)
			}
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < n; i += 8 {
						b := blob(i)
						storetest.MustPut(t, s, storetest.CASKey("power", repb.DigestFunction_SHA256, b), b)
						storetest.MustPut(t, s, storetest.ACKey("power", fmt.Sprint(i)), b[:50])
					}
				}()
			}
			wg.Wait()
			journal := s.journal.Name()
			crash(s)
			if err := os.Truncate(journal, int64(len(fileMagic))); err != nil {
				t.Fatal(err)
			}

			s = openCleanup(t, dir, 0)
			if _, err := s.sweep(); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				b := blob(i)
				k := storetest.CASKey("power", repb.DigestFunction_SHA256, b)
				got, err := storetest.ReadAll(s, k, 0)
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("blob %d acknowledged before the power cut: %v (%d bytes)", i, err, len(got))
				}
				got, err = storetest.ReadAll(s, storetest.ACKey("power", fmt.Sprint(i)), 0)
				if err != nil || !bytes.Equal(got, b[:50]) {
					t.Fatalf("AC entry %d acknowledged before the power cut: %v", i, err)
				}
			}
			if st := s.Stats(); st.Entries != 2*n {
				t.Errorf("%d entries after recovery, want %d", st.Entries, 2*n)
			}
			// The adoptions were journaled: a second crash keeps them.
			crash(s)
			s = openCleanup(t, dir, 0)
			storetest.MustGet(t, s, storetest.CASKey("power", repb.DigestFunction_SHA256, blob(1)))
		})
	}
}

// flipBit flips one bit of the file at path, at offset from its end if
// fromEnd, else from its start.
func flipBit(t *testing.T, path string, off int64, fromEnd bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fromEnd {
		fi, _ := f.Stat()
		off = fi.Size() - off
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{b[0] ^ 0x10}, off); err != nil {
		t.Fatal(err)
	}
}

// TestBitFlipDetectedAndHealed flips one bit in the value of stored files,
// in both storage modes, for small and large CAS blobs and AC entries: the
// read fails with store.ErrCorrupt (at an offset too), FindMissing then
// reports the entry missing, and putting it again stores it whole.
func TestBitFlipDetectedAndHealed(t *testing.T) {
	ctx := context.Background()
	for _, compress := range []bool{false, true} {
		s, err := Open(Options{Dir: t.TempDir(), Compress: compress, SnapshotInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cases := []struct {
			name   string
			key    store.Key
			data   []byte
			off    int64 // where the bit flips, from the end of the value
			readAt int64 // offset of the read that must fail
		}{
			{name: "small", data: storetest.Blob(1, 100), off: 50},
			{name: "last-byte", data: storetest.Blob(2, 4000), off: 1},
			{name: "large-first-block", data: storetest.Blob(3, 3*chunkSize+5), off: 3*chunkSize - 7},
			{name: "large-read-at-offset", data: storetest.Blob(4, 3*chunkSize+5), off: chunkSize, readAt: 2*chunkSize + 3},
			{name: "large-later-block", data: storetest.Blob(6, 3*chunkSize+5), off: chunkSize},
			{name: "ac", key: storetest.ACKey("flip", "r"), data: storetest.Blob(5, 300), off: 100},
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("compress=%v/%s", compress, c.name), func(t *testing.T) {
				k := c.key
				if k.Kind != store.AC {
					k = storetest.CASKey("flip", repb.DigestFunction_SHA256, c.data)
				}
				storetest.MustPut(t, s, k, c.data)
				nk, _, _ := keyOf(k)
				s.mu.Lock()
				path := s.path(s.nsDirs[s.nsByName[nsOf(nk)]], nk)
				s.mu.Unlock()
				// The value ends where the block CRCs or chunk table start.
				e := &entryFile{key: nk}
				f, _ := os.Open(path)
				e.f = f
				if err := e.check([32]byte(mustHex(t, nk.Hash))); err != nil {
					t.Fatal(err)
				}
				f.Close()
				end := e.fi.Size()
				switch e.hdr.flags {
				case flagChecked:
					end -= 4 * blocks(e.hdr.valueSize)
				case flagZstd:
					// Flip inside the compressed frame holding the byte.
					i := (int64(len(c.data)) - c.off) / chunkSize
					end = e.starts[i+1] - (e.starts[i+1]-e.starts[i])/2 + c.off%7
					c.off = 0
				}
				flipBit(t, path, end-c.off, false)

				rc, _, err := s.Get(ctx, k, c.readAt)
				if err == nil {
					// Reads of a whole block and more go straight into
					// the caller's buffer: checked there too.
					buf := make([]byte, 2*chunkSize)
					for err == nil {
						_, err = rc.Read(buf)
					}
					if err == io.EOF {
						err = nil
					}
					rc.Close()
				}
				if !errors.Is(err, store.ErrCorrupt) {
					t.Fatalf("read of a value with a flipped bit: %v, want ErrCorrupt", err)
				}
				if missing, err := s.FindMissing(ctx, []store.Key{k}); err != nil || len(missing) != 1 {
					t.Fatalf("FindMissing after the damage was found: %v, %v; want it missing", missing, err)
				}
				if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("damaged file still on disk (%v)", err)
				}
				storetest.MustPut(t, s, k, c.data)
				if got := storetest.MustGet(t, s, k); !bytes.Equal(got, c.data) {
					t.Fatal("the re-uploaded value is wrong")
				}
			})
		}
	}
}

func mustHex(t *testing.T, h string) []byte {
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFsyncGroupCommit checks that with Options.Fsync concurrent Puts share
// journal fsyncs and that none returns before a sync that began after its
// record was written has finished.
func TestFsyncGroupCommit(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), Fsync: true, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	syncs := 0
	release := make(chan struct{})
	s.dur.mu.Lock()
	s.dur.syncFile = func(f *os.File) error {
		<-release // a slow disk: every sync waits for the test
		mu.Lock()
		syncs++
		mu.Unlock()
		return f.Sync()
	}
	s.dur.mu.Unlock()

	const n = 32
	returned := make(chan int, n)
	for i := range n {
		go func() {
			b := storetest.Blob(uint64(i), 200)
			storetest.MustPut(t, s, storetest.CASKey("group", repb.DigestFunction_SHA256, b), b)
			returned <- i
		}()
	}
	// Every Put has written its journal record and waits for a sync.
	for s.dur.written.Load() < n+1 { // +1: the namespace record
		runtime.Gosched()
	}
	select {
	case i := <-returned:
		t.Fatalf("Put %d returned before its journal record was synced", i)
	default:
	}
	close(release)
	for range n {
		<-returned
	}
	// One round was running when the others queued: they share the next.
	if syncs > 2 {
		t.Errorf("%d journal fsyncs for %d concurrent Puts, want at most 2", syncs, n)
	}
	if s.dur.synced != s.dur.written.Load() {
		t.Errorf("%d journal records written, %d synced", s.dur.written.Load(), s.dur.synced)
	}
}

// TestFsyncErrorFailsPut: a Put whose journal sync fails is not
// acknowledged.
func TestFsyncErrorFailsPut(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), Fsync: true, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.dur.mu.Lock()
	s.dur.syncFile = func(*os.File) error { return syscall.EIO }
	s.dur.mu.Unlock()
	b := storetest.Blob(1, 200)
	if err := s.Put(context.Background(), storetest.CASKey("", repb.DigestFunction_SHA256, b), 200, bytes.NewReader(b)); !errors.Is(err, syscall.EIO) {
		t.Errorf("Put with a failing journal fsync = %v, want EIO", err)
	}
}

// TestBoundCountsDiskBlocks puts many small blobs and checks that the
// bytes the store counts are at least what their files take on disk
// (allocated blocks), and that a bound of N blocks holds about N of them.
func TestBoundCountsDiskBlocks(t *testing.T) {
	dir := t.TempDir()
	const n = 400
	s := openCleanup(t, dir, 0)
	for i := range n {
		b := storetest.Blob(uint64(i), 100)
		storetest.MustPut(t, s, storetest.CASKey("small", repb.DigestFunction_SHA256, b), b)
	}
	var allocated, apparent int64
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(path string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			fi, _ := de.Info()
			allocated += fi.Sys().(*syscall.Stat_t).Blocks * 512
			apparent += fi.Size()
		}
		return nil
	})
	st := s.Stats()
	t.Logf("%d blobs of 100 bytes: %d bytes counted, %d apparent, %d allocated", n, st.Bytes, apparent, allocated)
	if st.Bytes < allocated || st.Bytes < apparent {
		t.Errorf("store counts %d bytes for files taking %d on disk (%d apparent)", st.Bytes, allocated, apparent)
	}
	bsize := blockSize(dir)
	b := openCleanup(t, t.TempDir(), 10*bsize)
	for i := range 30 {
		v := storetest.Blob(uint64(i), 100)
		storetest.MustPut(t, b, storetest.CASKey("small", repb.DigestFunction_SHA256, v), v)
	}
	if st := b.Stats(); st.Entries != 10 || st.Bytes != 10*bsize {
		t.Errorf("bound of 10 blocks of %d: %+v, want 10 entries", bsize, st)
	}
}

// TestNamespaceDirsReclaimed checks that the directory of an instance name
// goes when its last entry is evicted or found damaged.
func TestNamespaceDirsReclaimed(t *testing.T) {
	dir := t.TempDir()
	bsize := blockSize(dir)
	s := openCleanup(t, dir, 4*bsize)
	nsDir := func(k store.Key) string {
		return filepath.Join(dir, "blobs", nsOf(k).dirName())
	}
	var old []store.Key
	for i := range 4 {
		b := storetest.Blob(uint64(i), 100)
		k := storetest.CASKey("tmp-instance", repb.DigestFunction_SHA256, b)
		storetest.MustPut(t, s, k, b)
		old = append(old, k)
	}
	if _, err := os.Stat(nsDir(old[0])); err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // evicts all of tmp-instance
		b := storetest.Blob(uint64(100+i), 100)
		storetest.MustPut(t, s, storetest.CASKey("other", repb.DigestFunction_SHA256, b), b)
	}
	if _, err := os.Stat(nsDir(old[0])); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory of an instance whose entries were all evicted: stat %v, want it gone", err)
	}
	// A Put into the namespace again makes its directories again.
	storetest.MustPut(t, s, old[0], storetest.Blob(0, 100))
	storetest.MustGet(t, s, old[0])

	// Damage found on read empties a namespace too.
	ac := storetest.ACKey("damaged-instance", "x")
	storetest.MustPut(t, s, ac, []byte("result"))
	nk, _, _ := keyOf(ac)
	s.mu.Lock()
	path := s.path(s.nsDirs[s.nsByName[nsOf(nk)]], nk)
	s.mu.Unlock()
	flipBit(t, path, 6, true) // the first byte of "result"
	if _, err := storetest.ReadAll(s, ac, 0); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("read of a damaged AC entry: %v", err)
	}
	if _, err := os.Stat(nsDir(nk)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory of an instance whose only entry was dropped: stat %v, want it gone", err)
	}
}

// TestCheckedRandomAccess reads a plain checked value of several blocks at
// offsets around block boundaries, with buffers smaller and larger than a
// block.
func TestCheckedRandomAccess(t *testing.T) {
	s := openCleanup(t, t.TempDir(), 0)
	data := storetest.Blob(8, 3*chunkSize+12345)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	storetest.MustPut(t, s, k, data)
	for _, off := range []int64{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 2*chunkSize + 7, int64(len(data)) - 1, int64(len(data))} {
		for _, bufSize := range []int{1000, chunkSize, 3 * chunkSize} {
			rc, _, err := s.Get(context.Background(), k, off)
			if err != nil {
				t.Fatalf("offset %d: %v", off, err)
			}
			var got []byte
			buf := make([]byte, bufSize)
			for {
				n, err := rc.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("offset %d, buffer %d: %v", off, bufSize, err)
				}
			}
			rc.Close()
			if !bytes.Equal(got, data[off:]) {
				t.Errorf("offset %d, buffer %d: wrong bytes (%d of %d)", off, bufSize, len(got), len(data)-int(off))
			}
		}
	}
}
