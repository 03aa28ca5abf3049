package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func openT(t testing.TB, dir string, max int64) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: max, SnapshotInterval: -1})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func openCleanup(t testing.TB, dir string, max int64) *Store {
	t.Helper()
	s := openT(t, dir, max)
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, errClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openCleanup(t, t.TempDir(), 0) })
}

func TestBounded(t *testing.T) {
	storetest.RunBoundedCost(t, func(t *testing.T, max int64) store.Store { return openCleanup(t, t.TempDir(), max) }, diskCost(t))
}

// diskCost is what an entry takes in a store under t.TempDir(): its
// file (header, value, block CRCs) rounded up to the file system block.
func diskCost(t *testing.T) func(store.Key, int64) int64 {
	bsize := blockSize(t.TempDir())
	return func(k store.Key, size int64) int64 {
		k, h, err := keyOf(k)
		if err != nil {
			t.Fatal(err)
		}
		hdr := header{ns: nsOf(k), hash: h, keySize: k.Size, valueSize: size, flags: flagChecked}
		n := checkedSize(int64(len(hdr.marshal())), size)
		return (n + bsize - 1) / bsize * bsize
	}
}

// TestConformanceAfterReopen runs the suite against a store that is closed
// and reopened before every operation's results are checked... at least
// once: it reopens a store that already holds entries from another run.
func TestConformanceReopened(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		dir := t.TempDir()
		s := openT(t, dir, 0)
		storetest.MustPut(t, s, storetest.CASKey("other", repb.DigestFunction_SHA256, []byte("x")), []byte("x"))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return openCleanup(t, dir, 0)
	})
}

// tempFiles lists temporary files anywhere under dir.
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	var tmps []string
	filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), ".tmp-") {
			tmps = append(tmps, path)
		}
		return nil
	})
	return tmps
}

func TestReopenKeepsEntriesAndLRUOrder(t *testing.T) {
	dir := t.TempDir()
	// Room for five 1000-byte blobs; the AC entry makes it six.
	max := 5 * diskCost(t)(storetest.CASKey("inst/0", repb.DigestFunction_BLAKE3, nil), 1000)
	s := openT(t, dir, max)
	var keys []store.Key
	var blobs [][]byte
	for i := range 5 {
		b := storetest.Blob(uint64(i), 1000)
		k := storetest.CASKey(fmt.Sprintf("inst/%d", i%2), repb.DigestFunction_BLAKE3, b)
		storetest.MustPut(t, s, k, b)
		keys, blobs = append(keys, k), append(blobs, b)
	}
	ac := storetest.ACKey("inst/0", "result")
	storetest.MustPut(t, s, ac, []byte("first"))
	storetest.MustPut(t, s, ac, []byte("second")) // replaces; evicts keys[0]
	storetest.MustGet(t, s, keys[1])              // keys[2] is now the oldest
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openCleanup(t, dir, max)
	if got := s.Stats(); got.Entries != before.Entries || got.Bytes != before.Bytes {
		t.Errorf("Stats after reopen = %+v, before %+v", got, before)
	}
	if got := storetest.MustGet(t, s, ac); string(got) != "second" {
		t.Errorf("AC entry after reopen = %q, want the replacement", got)
	}
	missing, err := s.FindMissing(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(missing) != fmt.Sprint(keys[:1]) {
		t.Errorf("missing after reopen = %v, want only the evicted %v", missing, keys[0])
	}
	// FindMissing just used all of them in order 1..4; use 2 and 3 again,
	// then a new blob must evict keys[1] (the oldest use), proving the order
	// survived and is still maintained.
	storetest.MustGet(t, s, keys[2])
	storetest.MustGet(t, s, keys[3])
	storetest.MustGet(t, s, keys[4])
	storetest.MustGet(t, s, ac)
	b := storetest.Blob(99, 1000)
	storetest.MustPut(t, s, storetest.CASKey("", repb.DigestFunction_SHA256, b), b)
	missing, _ = s.FindMissing(context.Background(), keys[1:])
	if fmt.Sprint(missing) != fmt.Sprint(keys[1:2]) {
		t.Errorf("after one more Put, missing = %v, want %v", missing, keys[1])
	}
}

// crash simulates the process dying: it drops the store without a
// snapshot, leaving the journal and the DIRTY marker behind.
func crash(s *Store) {
	close(s.stop)
	s.bg.Wait()
	s.mu.Lock()
	s.closed = true
	s.journal.Close()
	s.mu.Unlock()
	s.lockFile.Close()
}

func TestRecoverFromJournalAndTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, 0)
	var keys []store.Key
	for i := range 20 {
		b := storetest.Blob(uint64(i), 100+i)
		k := storetest.CASKey("j", repb.DigestFunction_SHA256, b)
		storetest.MustPut(t, s, k, b)
		keys = append(keys, k)
	}
	journal := s.journal.Name()
	crash(s)
	// A torn record at the end, as a kill during a journal write leaves.
	f, err := os.OpenFile(journal, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(appendAdd(nil, entryKey{}, 5)[:20])
	f.Close()
	// And debris of an earlier run.
	debris := filepath.Join(dir, "blobs", "stray.tmp")
	os.WriteFile(filepath.Join(filepath.Dir(s.pathOf(entryKey{ns: 0, hash: [32]byte{7}})), ".tmp-dead-1"), []byte("partial"), 0o644)
	_ = debris

	s = openCleanup(t, dir, 0)
	if missing, err := s.FindMissing(context.Background(), keys); err != nil || len(missing) != 0 {
		t.Fatalf("after a crash, missing %d of %d journaled entries (%v)", len(missing), len(keys), err)
	}
	if _, err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if tmps := tempFiles(t, filepath.Join(dir, "blobs")); len(tmps) != 0 {
		t.Errorf("temporary files of a dead run survived the sweep: %v", tmps)
	}
}

func TestRebuildWithoutSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, 0)
	b := storetest.Blob(1, 5000)
	k := storetest.CASKey("r/e/b", repb.DigestFunction_SHA256, b)
	storetest.MustPut(t, s, k, b)
	ac := storetest.ACKey("r/e/b", "x")
	storetest.MustPut(t, s, ac, []byte("result"))
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Corrupt every index file: the store must rebuild from the blobs.
	des, _ := os.ReadDir(filepath.Join(dir, "index"))
	for _, de := range des {
		os.WriteFile(filepath.Join(dir, "index", de.Name()), []byte("garbage"), 0o644)
	}
	s = openCleanup(t, dir, 0)
	if got := storetest.MustGet(t, s, k); !bytes.Equal(got, b) {
		t.Error("CAS blob wrong after rebuild")
	}
	if got := storetest.MustGet(t, s, ac); string(got) != "result" {
		t.Errorf("AC entry after rebuild = %q", got)
	}
	if st := s.Stats(); st.Entries != 2 || st.Bytes != before.Bytes {
		t.Errorf("Stats after rebuild = %+v", st)
	}
}

func TestDamagedFileNeverServed(t *testing.T) {
	dir := t.TempDir()
	s := openCleanup(t, dir, 0)
	ctx := context.Background()
	b := storetest.Blob(5, 10_000)
	cases := map[string]func(path string){
		"truncated": func(p string) { os.Truncate(p, 5000) },
		"header":    func(p string) { f, _ := os.OpenFile(p, os.O_WRONLY, 0); f.WriteAt([]byte{0xff}, 30); f.Close() },
		"deleted":   func(p string) { os.Remove(p) },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			k := storetest.CASKey(name, repb.DigestFunction_SHA256, b)
			storetest.MustPut(t, s, k, b)
			s.mu.Lock()
			ns := s.nsByName[nsOf(k)]
			path := s.path(s.nsDirs[ns], k)
			s.mu.Unlock()
			damage(path)
			if _, err := storetest.ReadAll(s, k, 0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get of a damaged blob = %v, want ErrNotFound", err)
			}
			if missing, _ := s.FindMissing(ctx, []store.Key{k}); len(missing) != 1 {
				t.Error("FindMissing still reports a damaged blob present")
			}
			storetest.MustPut(t, s, k, b)
			if got := storetest.MustGet(t, s, k); !bytes.Equal(got, b) {
				t.Error("re-uploaded blob is wrong")
			}
		})
	}
}

func TestPathsStayInsideDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "cache")
	s := openCleanup(t, dir, 0)
	for _, inst := range []string{"../../escape", "/abs/path", "..", "a/../../b", "\x00", strings.Repeat("long/", 300)} {
		b := []byte("data for " + inst)
		for _, k := range []store.Key{storetest.CASKey(inst, repb.DigestFunction_SHA256, b), storetest.ACKey(inst, "a")} {
			storetest.MustPut(t, s, k, b)
			if got := storetest.MustGet(t, s, k); !bytes.Equal(got, b) {
				t.Errorf("instance %q: wrong bytes", inst)
			}
		}
	}
	des, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || des[0].Name() != "cache" {
		t.Errorf("files appeared beside the cache directory: %v", des)
	}
	filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && de.Type()&fs.ModeSymlink != 0 {
			t.Errorf("unexpected symlink %s", path)
		}
		return nil
	})
}

func TestFailedPutLeavesNoDebris(t *testing.T) {
	dir := t.TempDir()
	s := openCleanup(t, dir, 0)
	b := storetest.Blob(3, 100_000)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, b)
	r := io.MultiReader(bytes.NewReader(b[:50_000]), errReader{})
	if err := s.Put(context.Background(), k, int64(len(b)), r); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	if tmps := tempFiles(t, dir); len(tmps) != 0 {
		t.Errorf("a failed Put left temporary files: %v", tmps)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client went away") }

// fullDisk fails every write after limit bytes with ENOSPC, as a full file
// system does.
type fullDisk struct {
	w     io.Writer
	limit int
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if len(p) > d.limit {
		n, _ := d.w.Write(p[:d.limit])
		d.limit = 0
		return n, &fs.PathError{Op: "write", Path: "blob", Err: syscall.ENOSPC}
	}
	d.limit -= len(p)
	return d.w.Write(p)
}

func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	s := openCleanup(t, dir, 0)
	s.wrapWriter = func(w io.Writer) io.Writer { return &fullDisk{w: w, limit: 40_000} }
	b := storetest.Blob(8, 100_000)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, b)
	err := s.Put(context.Background(), k, int64(len(b)), bytes.NewReader(b))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk = %v, want ENOSPC", err)
	}
	storetest.AssertMissing(t, s, k)
	if tmps := tempFiles(t, dir); len(tmps) != 0 {
		t.Errorf("a Put on a full disk left temporary files: %v", tmps)
	}
	s.wrapWriter = nil
	storetest.MustPut(t, s, k, b)
	if got := storetest.MustGet(t, s, k); !bytes.Equal(got, b) {
		t.Error("Put after the disk freed up stored wrong bytes")
	}
}

func TestDirectoryLockedOnce(t *testing.T) {
	dir := t.TempDir()
	openCleanup(t, dir, 0)
	if s, err := Open(Options{Dir: dir}); err == nil {
		s.Close()
		t.Error("a second Open of the same directory succeeded")
	}
}

func TestSweepRemovesOrphans(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, 0)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, storetest.Blob(4, 300))
	kept := storetest.Blob(5, 300)
	kk := storetest.CASKey("", repb.DigestFunction_SHA256, kept)
	storetest.MustPut(t, s, kk, kept)
	crash(s)
	// A file the index does not hold, whose header names another key: the
	// sweep removes it (a valid one it adopts: TestPowerCutJournalLost).
	s = openCleanup(t, dir, 0)
	s.mu.Lock()
	keptPath := s.path(s.nsDirs[0], kk)
	path := s.path(s.nsDirs[0], k)
	s.mu.Unlock()
	storetest.AssertMissing(t, s, k)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(keptPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The sweep that the unclean start began may get there first.
	if _, err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("orphan not removed by the sweep (stat %v)", err)
	}
	if got := storetest.MustGet(t, s, kk); !bytes.Equal(got, kept) {
		t.Error("sweep damaged an indexed blob")
	}
}
