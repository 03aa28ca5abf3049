package disk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return openCleanup(b, b.TempDir(), 512<<20) })
}

func BenchmarkStoreCompressed(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		s, err := Open(Options{Dir: b.TempDir(), MaxBytes: 512 << 20, Compress: true, SnapshotInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// fill puts n small blobs (seeded from first) into s with several writers
// (creating files is latency-bound on some file systems).
func fill(tb testing.TB, s *Store, first, n int) {
	tb.Helper()
	var wg sync.WaitGroup
	const writers = 8
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := first + w; i < first+n; i += writers {
				b := []byte("blob " + strconv.Itoa(i))
				k := storetest.CASKey("", repb.DigestFunction_SHA256, b)
				if err := s.Put(context.Background(), k, int64(len(b)), bytes.NewReader(b)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// BenchmarkOpen measures opening a directory of 10,000 blobs after a clean
// Close (snapshot) and after a crash (snapshot plus a journal of all of
// them). See TestOpenMillionBlobs for the large measurement.
func BenchmarkOpen(b *testing.B) {
	const n = 10_000
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(dir string) *Store {
		s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	// Fill each directory once: the framework runs each sub-benchmark
	// several times to find b.N.
	parent := b.TempDir()
	dirs := map[bool]string{}
	for _, clean := range []bool{true, false} {
		dir := filepath.Join(parent, fmt.Sprint(clean))
		s := open(dir)
		if err := s.Close(); err != nil { // a snapshot of nothing
			b.Fatal(err)
		}
		s = open(dir)
		fill(b, s, 0, n)
		if clean {
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		} else {
			crash(s) // every entry is in the journal only
		}
		dirs[clean] = dir
	}
	for _, clean := range []bool{true, false} {
		b.Run(fmt.Sprintf("blobs=%d/clean=%v", n, clean), func(b *testing.B) {
			for range b.N {
				s := open(dirs[clean])
				b.StopTimer()
				if got := s.Stats().Entries; got != n {
					b.Fatalf("%d entries after open, want %d", got, n)
				}
				// Leave the directory as it was.
				if clean {
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
				} else {
					crash(s)
				}
				b.StartTimer()
			}
		})
	}
}

// TestOpenMillionBlobs measures start-up on a large cache. It runs only when
// FERRULE_BENCH_OPEN_BLOBS is set to the number of blobs (e.g. 1000000); it
// prints figures and asserts no timing. FERRULE_BENCH_DIR keeps the cache
// between runs (it is filled only up to the number asked for);
// FERRULE_BENCH_OPEN_ONLY=1 skips the crash measurement that adds blobs.
//
//	FERRULE_BENCH_OPEN_BLOBS=1000000 go test -run TestOpenMillionBlobs -v -timeout 1h ./remote/store/disk/
func TestOpenMillionBlobs(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FERRULE_BENCH_OPEN_BLOBS"))
	if n <= 0 {
		t.Skip("set FERRULE_BENCH_OPEN_BLOBS=1000000 to measure start-up on a large cache")
	}
	dir := os.Getenv("FERRULE_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "cache")
	}
	s := openT(t, dir, 0)
	if have := int(s.Stats().Entries); have < n {
		start := time.Now()
		fill(t, s, have, n-have)
		t.Logf("filled %d blobs in %v", n-have, time.Since(start).Round(time.Millisecond))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	measure := func(what string) *Store {
		runtime.GC()
		cpu0 := cpuTime()
		start := time.Now()
		s := openT(t, dir, 0)
		took := time.Since(start)
		cpu := cpuTime() - cpu0
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := s.Stats()
		fmt.Printf("open %s: %d blobs (%d bytes) in %v (CPU %v); heap in use after open %d MiB\n",
			what, st.Entries, st.Bytes, took.Round(time.Millisecond), cpu.Round(time.Millisecond), ms.HeapInuse>>20)
		if st.Entries < int64(n) {
			t.Errorf("opened %d entries, want at least %d", st.Entries, n)
		}
		return s
	}
	s = measure("after clean close (snapshot)")
	if os.Getenv("FERRULE_BENCH_OPEN_ONLY") != "" {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	// Put 100,000 more and crash: the next open replays a journal too.
	extra := 100_000
	fill(t, s, 1<<40+int(s.Stats().Entries), extra) // seeds not used before
	crash(s)
	s = measure(fmt.Sprintf("after kill (snapshot + journal of %d, sweep in background)", extra))
	start := time.Now()
	st, err := s.sweep()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("background sweep after the crash: %v (%d orphans adopted, %d files removed, %d entries dropped)\n", time.Since(start).Round(time.Millisecond), st.adopted, st.removed, st.dropped)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// cpuTime is the user plus system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPutConcurrent measures 4 KiB CAS Puts from 16 writers at once,
// with and without Options.Fsync: with it, concurrent Puts share fsyncs.
func BenchmarkPutConcurrent(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		for _, compress := range []bool{false, true} {
			b.Run(fmt.Sprintf("fsync=%v/compress=%v", fsync, compress), func(b *testing.B) {
				s, err := Open(Options{Dir: b.TempDir(), MaxBytes: 512 << 20, Fsync: fsync, Compress: compress, SnapshotInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				base := storetest.Blob(7, 4096)
				var next atomic.Int64
				b.SetBytes(4096)
				b.SetParallelism(8) // 8 per core: 16 writers on 2 cores
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					v := append([]byte(nil), base...)
					for pb.Next() {
						copy(v, strconv.FormatInt(next.Add(1), 16)+"-")
						k := storetest.CASKey("bench", repb.DigestFunction_SHA256, v)
						if err := s.Put(context.Background(), k, int64(len(v)), bytes.NewReader(v)); err != nil {
							b.Fatal(err)
						}
					}
				})
				if fsync {
					s.dur.mu.Lock()
					b.ReportMetric(float64(s.dur.done)/float64(b.N), "syncrounds/op")
					s.dur.mu.Unlock()
				}
			})
		}
	}
}
