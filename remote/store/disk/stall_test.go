package disk

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

// TestStalledPutsHoldWhatArrived: Puts of 1 MiB values that got 64 KiB
// through a pipe (as ByteStream feeds them) and wait for more hold about
// what arrived, not the full write buffers (a chunk, a copy buffer and a
// file buffer: 544 KiB each).
func TestStalledPutsHoldWhatArrived(t *testing.T) {
	for _, compress := range []bool{true, false} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			s, err := Open(Options{Dir: t.TempDir(), Compress: compress, SnapshotInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n, size, sent = 200, 1 << 20, 64 << 10
			// The bound: twice what arrived (the chunk buffer doubles) and
			// 32 KiB for the rest (file, goroutine, pipe).
			perPut := uint64(2*sent + 32<<10)
			if !compress {
				// A plain value is written through its 32 KiB file buffer.
				perPut = 64 << 10
			}
			heap := func() uint64 {
				runtime.GC() // twice: pooled buffers survive one
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapAlloc
			}
			chunk := make([]byte, sent)
			base := heap()
			var writers []*io.PipeWriter
			done := make(chan error, n)
			for i := range n {
				pr, pw := io.Pipe()
				writers = append(writers, pw)
				k := storetest.CASKey("", repb.DigestFunction_SHA256, []byte(fmt.Sprint("stalled ", i)))
				k.Size = size
				go func() { done <- s.Put(context.Background(), k, size, pr) }()
				if _, err := pw.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			held := heap() - base
			t.Logf("%d stalled Puts hold %d KiB each (bound %d KiB)", n, held/n>>10, perPut>>10)
			if held > n*perPut {
				t.Errorf("%d stalled Puts hold %d bytes, %d each; want at most %d each", n, held, held/n, perPut)
			}
			for _, pw := range writers {
				pw.CloseWithError(io.ErrUnexpectedEOF)
			}
			for range n {
				if err := <-done; err == nil {
					t.Error("a Put whose data stopped succeeded")
				}
			}
		})
	}
}
