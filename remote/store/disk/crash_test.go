package disk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

// crashBlob is the CAS blob the crash child writes for seed: every third
// one large, so that kills often land in the middle of writing a file.
func crashBlob(seed int) []byte {
	size := 100 + seed%5000
	if seed%3 == 0 {
		size = 500_000 + seed%1_000_000
	}
	return storetest.Blob(uint64(seed), size)
}

// crashAC returns the AC key the child rewrites for seed and a value that
// carries its own checksum: sha256(rest) || rest.
func crashAC(seed int) (store.Key, []byte) {
	rest := storetest.Blob(uint64(seed)+1<<32, 50+seed%3000)
	sum := sha256.Sum256(rest)
	return storetest.ACKey("crash/ac", strconv.Itoa(seed%13)), append(sum[:], rest...)
}

// TestCrashChild is the writer that TestKill9 runs as a subprocess.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("FERRULE_DISK_CRASH_DIR")
	if dir == "" {
		t.Skip("only runs as TestKill9's subprocess")
	}
	first, _ := strconv.Atoi(os.Getenv("FERRULE_DISK_CRASH_FIRST"))
	max, _ := strconv.ParseInt(os.Getenv("FERRULE_DISK_CRASH_MAX"), 10, 64)
	fsync := os.Getenv("FERRULE_DISK_CRASH_FSYNC") != ""
	s, err := Open(Options{Dir: dir, MaxBytes: max, Fsync: fsync, SnapshotInterval: 30 * time.Millisecond})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	// Make snapshots happen often too, so kills land in them as well.
	go func() {
		for {
			time.Sleep(20 * time.Millisecond)
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}()
	var next atomic.Int64
	next.Store(int64(first))
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for range 3 {
		go func() {
			for {
				seed := int(next.Add(1) - 1)
				b := crashBlob(seed)
				// A paced reader keeps each write open for a while, as a
				// network upload does, so kills land in the middle of one.
				r := &pacedReader{data: b}
				if err := s.Put(context.Background(), storetest.CASKey("crash", repb.DigestFunction_SHA256, b), int64(len(b)), r); err != nil {
					fmt.Fprintln(os.Stderr, "put:", err)
					os.Exit(3)
				}
				k, v := crashAC(seed)
				if err := s.Put(context.Background(), k, int64(len(v)), bytes.NewReader(v)); err != nil {
					fmt.Fprintln(os.Stderr, "put ac:", err)
					os.Exit(3)
				}
				out.Lock()
				fmt.Fprintln(w, seed)
				w.Flush()
				out.Unlock()
			}
		}()
	}
	select {}
}

// TestKill9 kills a process writing blobs with SIGKILL, several times over
// the same directory, and checks after each kill that the reopened store
// serves only whole, correct blobs, holds every blob whose Put returned,
// and leaves no debris after its sweep.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns subprocesses")
	}
	for _, c := range []struct{ bounded, fsync bool }{{false, false}, {true, false}, {false, true}} {
		bounded := c.bounded
		t.Run(fmt.Sprintf("bounded=%v/fsync=%v", c.bounded, c.fsync), func(t *testing.T) {
			var max int64
			if bounded {
				max = 4 << 20 // far less than written: evictions during the kills
			}
			dir := t.TempDir()
			next := 0
			confirmed := map[int]bool{} // Puts that returned, over all rounds
			for round := range 4 {
				last := next
				for seed := range runAndKill(t, dir, next, max, c.fsync, 60+round*25) {
					confirmed[seed] = true
					last = max0(last, seed+1)
				}
				checkAfterCrash(t, dir, max, last+3, confirmed, round%2 == 0)
				next = last + 3
			}
		})
	}
}

func max0(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// runAndKill starts the child (with Options.Fsync if fsync), waits for it to
// confirm at least n Puts, kills it with SIGKILL and returns the seeds it
// confirmed.
func runAndKill(t *testing.T, dir string, first int, max int64, fsync bool, n int) map[int]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"FERRULE_DISK_CRASH_DIR="+dir,
		"FERRULE_DISK_CRASH_FIRST="+strconv.Itoa(first),
		"FERRULE_DISK_CRASH_MAX="+strconv.FormatInt(max, 10))
	if fsync {
		cmd.Env = append(cmd.Env, "FERRULE_DISK_CRASH_FSYNC=1")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Keep draining the child's output so that it is busy writing (not
	// blocked on a full pipe) at the moment it is killed.
	seeds := make(chan int)
	bad := make(chan string, 1)
	go func() {
		defer close(seeds)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			seed, err := strconv.Atoi(sc.Text())
			if err != nil {
				bad <- sc.Text()
				return
			}
			seeds <- seed
		}
	}()
	confirmed := map[int]bool{}
	killed := false
	for seed := range seeds {
		confirmed[seed] = true
		if len(confirmed) >= n && !killed {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	select {
	case line := <-bad:
		t.Fatalf("child said %q; stderr: %s", line, stderr.String())
	default:
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL (%v); stderr: %s", err, stderr.String())
	}
	if len(confirmed) < n {
		t.Fatalf("child confirmed only %d Puts; stderr: %s", len(confirmed), stderr.String())
	}
	return confirmed
}

func checkAfterCrash(t *testing.T, dir string, max int64, end int, confirmed map[int]bool, cleanClose bool) {
	t.Helper()
	s := openT(t, dir, max)
	ctx := context.Background()
	present := 0
	for seed := 0; seed < end; seed++ {
		b := crashBlob(seed)
		k := storetest.CASKey("crash", repb.DigestFunction_SHA256, b)
		missing, err := s.FindMissing(ctx, []store.Key{k})
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 1 {
			if max == 0 && confirmed[seed] {
				t.Errorf("seed %d: Put returned before the kill but the blob is missing", seed)
			}
			continue
		}
		present++
		got, err := storetest.ReadAll(s, k, 0)
		if err != nil {
			t.Errorf("seed %d: present but Get failed: %v", seed, err)
		} else if !bytes.Equal(got, b) {
			t.Errorf("seed %d: served %d bytes that do not hash to the key", seed, len(got))
		}
	}
	for i := range 13 {
		k, _ := crashAC(i)
		got, err := storetest.ReadAll(s, k, 0)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Errorf("AC %d: %v", i, err)
		} else if len(got) < 32 || sha256.Sum256(got[32:]) != [32]byte(got[:32]) {
			t.Errorf("AC %d: served a value that is not whole (%d bytes)", i, len(got))
		}
	}
	if present == 0 {
		t.Error("no blob survived at all")
	}
	if st := s.Stats(); max > 0 && st.Bytes > max {
		t.Errorf("store holds %d bytes, bound %d", st.Bytes, max)
	}
	if _, err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	// After the sweep, every file is an indexed entry: no debris, no orphans.
	files := 0
	filepath.WalkDir(filepath.Join(dir, "blobs"), func(path string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			files++
			if strings.HasPrefix(de.Name(), ".tmp-") {
				t.Errorf("temporary file survived the sweep: %s", path)
			}
		}
		return nil
	})
	if st := s.Stats(); int64(files) != st.Entries {
		t.Errorf("%d blob files on disk, %d entries indexed", files, st.Entries)
	}
	if cleanClose {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		crash(s)
	}
}

// pacedReader yields 32 KiB at a time with a short pause before each chunk.
type pacedReader struct{ data []byte }

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(50 * time.Microsecond)
	n := copy(b[:min(len(b), 32<<10)], p.data)
	p.data = p.data[n:]
	return n, nil
}
