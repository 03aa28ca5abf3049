package disk

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrule-build/ferrule/remote/store"
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
		st, err := s.sweep()
		if err != nil {
			s.log.Error("sweep after unclean shutdown failed", "err", err)
		} else {
			s.log.Info("swept after unclean shutdown", "orphans_adopted", st.adopted, "invalid_removed", st.removed, "missing_dropped", st.dropped, "took", time.Since(start))
		}
	}
	s.reclaimAll()
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
	if err := s.dur.switchJournal(old, s.journal, s.fsync); err != nil {
		s.log.Error("index snapshot", "err", err)
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

// sweepStats counts what a sweep did.
type sweepStats struct {
	adopted int // valid files the index did not hold, now indexed
	removed int // temporary files of earlier runs and invalid files
	dropped int // index entries whose file was gone
}

// sweep walks the blob files after an unclean shutdown. It removes the
// temporary files of earlier runs, adopts files the index does not hold
// (a crash or power loss between a rename and its journal record reaching
// the disk) once their checksums and, for CAS blobs, their digest have
// been verified, removes those that fail, and drops index entries whose
// file is gone (which only an outside hand or a power loss can cause). It
// runs alongside normal operation.
func (s *Store) sweep() (st sweepStats, err error) {
	s.mu.Lock()
	seen := make([]bool, len(s.idx.slots))
	s.mu.Unlock()
	nsDirs, err := os.ReadDir(s.blobDir)
	if err != nil {
		return st, err
	}
	for _, nd := range nsDirs {
		if !nd.IsDir() {
			continue
		}
		for b := range 256 {
			select {
			case <-s.stop:
				return st, nil
			default:
			}
			sub := filepath.Join(s.blobDir, nd.Name(), fmt.Sprintf("%02x", b))
			des, err := os.ReadDir(sub)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return st, err
			}
			for _, de := range des {
				name := de.Name()
				if strings.HasPrefix(name, ".tmp-") {
					if !strings.HasPrefix(name, s.tmpPrefix) {
						os.Remove(filepath.Join(sub, name))
						st.removed++
					}
					continue
				}
				h, size, ok := parseBlobName(name)
				if !ok {
					continue // not ours; leave it
				}
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
					if s.adopt(filepath.Join(sub, name)) {
						st.adopted++
					} else {
						st.removed++
					}
				}
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
			st.dropped++
		}
	}
	return st, nil
}

// adopt indexes the blob file at path, which the index does not hold, if
// it is valid: its header names the key its path does, its layout fits,
// and its whole value reads back with matching checksums (and, for a CAS
// blob, digest). An invalid file is removed. It reports whether the file
// was adopted (or indexed meanwhile by a Put).
func (s *Store) adopt(path string) bool {
	e, err := verifyFile(path)
	if err != nil {
		s.log.Warn("removing an invalid blob file", "path", path, "err", err)
	}
	stripe := &s.stripes[e.hdr.hash[0]]
	stripe.Lock()
	victims, ok := s.adoptLocked(e, path, err)
	stripe.Unlock()
	s.removeVictims(victims)
	return ok
}

// adoptLocked is adopt's part under the file's stripe lock.
func (s *Store) adoptLocked(e *entryFile, path string, verr error) ([]victim, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, known := s.nsByName[e.hdr.ns]
	if known {
		if _, present := s.idx.lookup(entryKey{ns: ns, hash: e.hdr.hash, size: e.hdr.keySize}); present {
			return nil, true // a Put stored it meanwhile
		}
	}
	if verr != nil {
		os.Remove(path)
		return nil, false
	}
	if cur, err := os.Stat(path); err != nil || !os.SameFile(cur, e.fi) {
		return nil, false // replaced or removed meanwhile
	}
	if !known {
		var err error
		if ns, err = s.addNamespaceLocked(e.hdr.ns); err != nil {
			s.log.Warn("cannot adopt a blob file", "path", path, "err", err)
			return nil, false // left for the next sweep
		}
	}
	ek := entryKey{ns: ns, hash: e.hdr.hash, size: e.hdr.keySize}
	size := s.footprint(e.fi.Size())
	s.idx.add(ek, size)
	s.changes++
	s.jbuf = appendAdd(s.jbuf, ek, size)
	s.writeJournalLocked()
	return s.evictLocked(&ek), true
}

// verifyFile checks a blob file as adopt describes. The returned entry's
// hdr is set as far as the header could be read.
func verifyFile(path string) (*entryFile, error) {
	e := &entryFile{path: path}
	h, size, ok := parseBlobName(filepath.Base(path))
	if !ok {
		return e, fmt.Errorf("not a blob file name")
	}
	e.hdr.hash = h
	f, err := os.Open(path)
	if err != nil {
		return e, err
	}
	e.f = f
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return e, err
	}
	hdr, _, err := readHeader(f)
	if err != nil {
		return e, err
	}
	e.key = store.Key{Kind: hdr.ns.kind, Instance: hdr.ns.instance, Function: hdr.ns.function, Hash: hex.EncodeToString(hdr.hash[:]), Size: hdr.keySize}
	if want := filepath.Join(hdr.ns.dirName(), blobName(e.key.Hash, size)); !strings.HasSuffix(path, string(filepath.Separator)+want) {
		return e, fmt.Errorf("%w: the header names %s", errBadHeader, e.key)
	}
	if err := e.check(h); err != nil {
		return e, err
	}
	e.fi = fi
	if e.hdr.flags == 0 && e.key.Kind != store.CAS {
		return e, fmt.Errorf("an action cache entry without checksums cannot be verified")
	}
	rc, err := e.reader(0, func(err error) error { return err })
	if err != nil {
		return e, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if e.key.Kind == store.CAS {
		if r, err = store.VerifyReader(e.key, rc); err != nil {
			return e, err
		}
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if err := store.ReadExactly(io.Discard, r, e.hdr.valueSize, *bp); err != nil {
		return e, err
	}
	return e, nil
}

// reclaimAll removes the empty directories of namespaces without entries
// (left by earlier runs).
func (s *Store) reclaimAll() {
	des, err := os.ReadDir(s.blobDir)
	if err != nil {
		return
	}
	for _, de := range des {
		s.mu.Lock()
		id, known := s.nsByDir[de.Name()]
		empty := !known || s.idx.nsLen(id) == 0
		s.mu.Unlock()
		if de.IsDir() && empty {
			removeEmptyDirs(filepath.Join(s.blobDir, de.Name()))
		}
	}
}

// nsIDByDir finds a namespace by directory name. s.mu must be held.
func (s *Store) nsIDByDir(dir string) (uint32, bool) {
	id, ok := s.nsByDir[dir]
	return id, ok
}
