package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// background takes snapshots (at start if asked, when the journal grows, and
// every interval if the index changed) and sweeps after an unclean start.
func (s *Store) background(interval time.Duration, snapshotNow, sweep bool) {
	defer s.bg.Done()
	if snapshotNow {
		if err := s.snapshot(); err != nil {
			s.log.Error("index snapshot failed", "err", err)
		}
	}
	if sweep {
		start := time.Now()
		removed, dropped, err := s.sweep()
		if err != nil {
			s.log.Error("sweep after unclean shutdown failed", "err", err)
		} else {
			s.log.Info("swept after unclean shutdown", "orphans_removed", removed, "missing_dropped", dropped, "took", time.Since(start))
		}
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-tick:
			s.mu.Lock()
			changed := s.changes > 0
			s.mu.Unlock()
			if !changed {
				continue
			}
		}
		if err := s.snapshot(); err != nil {
			s.log.Error("index snapshot failed", "err", err)
		}
	}
}

// snapshot writes the whole index (in LRU order) as snapshot <gen+1>,
// switches to journal <gen+1>, and then removes older index files.
func (s *Store) snapshot() error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	gen := s.gen + 1
	old := s.journal
	if err := s.openJournal(gen); err != nil {
		s.mu.Unlock()
		return err
	}
	old.Close()
	s.gen = gen
	buf := make([]byte, 0, len(fileMagic)+s.idx.len()*(8+53)+len(s.nsList)*64+32)
	buf = append(buf, fileMagic...)
	for i, n := range s.nsList {
		buf = appendNamespace(buf, uint32(i), n)
	}
	s.idx.each(func(sl *slot) { buf = appendAdd(buf, sl.key, sl.size) })
	buf = appendEnd(buf, uint64(s.idx.len()))
	s.jrecords = 0
	s.changes = 0
	s.mu.Unlock()

	tmp, err := os.CreateTemp(s.idxDir, ".tmp-snapshot-*")
	if err != nil {
		return fmt.Errorf("index snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(buf)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.idxDir, snapshotName(gen)))
	}
	if err != nil {
		return fmt.Errorf("index snapshot: %w", err)
	}
	if d, err := os.Open(s.idxDir); err == nil {
		d.Sync()
		d.Close()
	}
	snaps, journals, err := indexFiles(s.idxDir)
	if err != nil {
		return fmt.Errorf("index snapshot: %w", err)
	}
	for _, g := range snaps {
		if g < gen {
			os.Remove(filepath.Join(s.idxDir, snapshotName(g)))
		}
	}
	for _, g := range journals {
		if g < gen {
			os.Remove(filepath.Join(s.idxDir, journalName(g)))
		}
	}
	return nil
}

// sweep walks the blob files after an unclean shutdown. It removes the
// temporary files of earlier runs and files the index does not hold, and
// drops index entries whose file is gone (which only an outside hand or a
// power loss can cause). It runs alongside normal operation.
func (s *Store) sweep() (removed, dropped int, err error) {
	s.mu.Lock()
	seen := make([]bool, len(s.idx.slots))
	s.mu.Unlock()
	nsDirs, err := os.ReadDir(s.blobDir)
	if err != nil {
		return 0, 0, err
	}
	for _, nd := range nsDirs {
		if !nd.IsDir() {
			continue
		}
		for b := range 256 {
			select {
			case <-s.stop:
				return removed, dropped, nil
			default:
			}
			sub := filepath.Join(s.blobDir, nd.Name(), fmt.Sprintf("%02x", b))
			des, err := os.ReadDir(sub)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return removed, dropped, err
			}
			for _, de := range des {
				name := de.Name()
				if strings.HasPrefix(name, ".tmp-") {
					if !strings.HasPrefix(name, s.tmpPrefix) {
						os.Remove(filepath.Join(sub, name))
						removed++
					}
					continue
				}
				h, size, ok := parseBlobName(name)
				if !ok {
					continue // not ours; leave it
				}
				stripe := &s.stripes[h[0]]
				stripe.Lock()
				s.mu.Lock()
				ns, known := s.nsIDByDir(nd.Name())
				present := false
				if known {
					var i int32
					if i, present = s.idx.lookup(entryKey{ns: ns, hash: h, size: size}); present && int(i) < len(seen) {
						seen[i] = true
					}
				}
				s.mu.Unlock()
				if !present {
					os.Remove(filepath.Join(sub, name))
					removed++
				}
				stripe.Unlock()
			}
		}
	}
	// Entries not seen: added during the sweep, or really missing.
	s.mu.Lock()
	var unseen []entryKey
	for i := range s.idx.slots {
		sl := &s.idx.slots[i]
		if i < len(seen) && !seen[i] {
			if j, ok := s.idx.lookup(sl.key); ok && int(j) == i {
				unseen = append(unseen, sl.key)
			}
		}
	}
	s.mu.Unlock()
	for _, k := range unseen {
		s.mu.Lock()
		path := s.pathOf(k)
		s.mu.Unlock()
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			s.drop(k, path, nil)
			dropped++
		}
	}
	return removed, dropped, nil
}

// nsIDByDir finds a namespace by directory name. s.mu must be held.
func (s *Store) nsIDByDir(dir string) (uint32, bool) {
	id, ok := s.nsByDir[dir]
	return id, ok
}
