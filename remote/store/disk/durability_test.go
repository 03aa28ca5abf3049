package disk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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

var _ = errors.Is
var _ = filepath.Join
var _ store.Key
