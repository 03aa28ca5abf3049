// Package disk is Ferrule's embedded default store: values in files under
// one directory, bounded in bytes with least-recently-used eviction.
//
// Writes are atomic (a temporary file in the destination directory, renamed
// when complete), every file carries a header naming its key, and the index
// of entries is kept in memory and persisted as a snapshot plus an
// append-only journal, so that opening a cache of millions of blobs reads
// two files instead of walking the directory. See journal.go for why a
// crash (kill -9) never leads to serving a partial or wrong blob.
package disk

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/ferrule-build/ferrule/remote/store"
)

// Options configure a disk store.
type Options struct {
	// Dir is the cache directory; it is created if needed.
	Dir string
	// MaxBytes bounds the total size of stored values (headers and file
	// system overhead are not counted). 0 means no bound.
	MaxBytes int64
	// Fsync makes every Put flush its file to stable storage before it is
	// renamed into place. Without it a Put is safe against the process
	// dying (kill -9) but not against the machine losing power.
	Fsync bool
	// Compress stores new values of at least MinCompressSize bytes
	// zstd-compressed, in independently compressed chunks so that reads at
	// an offset stay cheap, and lets GetCompressed hand out those chunks'
	// frames. MaxBytes and Stats then count the compressed bytes on disk.
	// Values written either way are readable either way.
	Compress bool
	// SnapshotInterval is how often the index is snapshotted (which also
	// persists LRU order) while the store is open, if it changed. 0 means
	// ten minutes; negative means only at Close and when the journal grows.
	SnapshotInterval time.Duration
	// Logger receives warnings about recovery; nil means slog.Default().
	Logger *slog.Logger
}

// MinCompressSize is the smallest value Options.Compress stores compressed.
// Smaller values are kept plain: they save little space (a file takes a
// few KiB on disk either way), compressing one on a compressed read is
// cheap, and plain reads of them, the bulk of a build's reads, skip a
// decompression.
const MinCompressSize = 32 << 10

// Store is a disk-backed store.Store. Open one with Open and Close it when
// done; a directory can be open in only one Store at a time.
type Store struct {
	dir, blobDir, idxDir string
	max                  int64
	fsync                bool
	compress             bool
	log                  *slog.Logger
	tmpPrefix            string // ".tmp-<run>-": temporary files of this run
	lockFile             *os.File

	// stripes serialize, per hash prefix, renaming a file into place with
	// adding it to the index, and unlinking a file with checking that the
	// index no longer holds it.
	stripes [256]sync.Mutex

	mu         sync.Mutex
	idx        index
	nsList     []nsName
	nsDirs     []string
	nsByName   map[nsName]uint32
	nsByDir    map[string]uint32
	journal    *os.File
	gen        uint64
	jrecords   int64 // records in journals since the last snapshot
	changes    int64 // index changes (including uses) since the last snapshot
	evictions  int64
	evicted    int64
	closed     bool
	jbuf       []byte
	journalErr error // first journal write error, logged once

	compactMu sync.Mutex // one snapshot at a time
	kick      chan struct{}
	stop      chan struct{}
	bg        sync.WaitGroup

	// wrapWriter, when set (by tests), wraps the writer of each new blob
	// file, e.g. to simulate a full disk.
	wrapWriter func(io.Writer) io.Writer
}

var (
	_ store.Store            = (*Store)(nil)
	_ store.StatsReporter    = (*Store)(nil)
	_ store.CompressedReader = (*Store)(nil)
)

var errClosed = errors.New("disk store is closed")

// Open opens (creating if needed) the store in opts.Dir. It loads the
// persisted index; after an unclean shutdown it also starts a background
// sweep that removes temporary files and orphans left by the crash.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("disk store: no directory given")
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("disk store: negative max size %d", opts.MaxBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var run [6]byte
	if _, err := rand.Read(run[:]); err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
	}
	s := &Store{
		dir:       opts.Dir,
		blobDir:   filepath.Join(opts.Dir, "blobs"),
		idxDir:    filepath.Join(opts.Dir, "index"),
		max:       opts.MaxBytes,
		fsync:     opts.Fsync,
		compress:  opts.Compress,
		log:       log.With("store", "disk", "dir", opts.Dir),
		tmpPrefix: ".tmp-" + hex.EncodeToString(run[:]) + "-",
		nsByName:  make(map[nsName]uint32),
		nsByDir:   make(map[string]uint32),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	for _, d := range []string{s.dir, s.blobDir, s.idxDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("disk store: %w", err)
		}
	}
	lf, err := os.OpenFile(filepath.Join(s.dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("disk store: %w", err)
	}
	if err := lockDir(lf); err != nil {
		lf.Close()
		return nil, fmt.Errorf("disk store: %w", err)
	}
	s.lockFile = lf
	if err := s.open(opts); err != nil {
		if s.journal != nil {
			s.journal.Close()
		}
		lf.Close()
		return nil, fmt.Errorf("disk store %s: %w", s.dir, err)
	}
	return s, nil
}

func (s *Store) open(opts Options) error {
	dirtyPath := filepath.Join(s.dir, "DIRTY")
	_, err := os.Stat(dirtyPath)
	dirty := err == nil

	ls, lastGen, needSnapshot, rebuilt, err := s.loadIndex()
	if err != nil {
		return err
	}
	if rebuilt {
		dirty = false // the rebuild already removed debris and invalid files
	}
	s.idx = ls.idx
	s.nsList = ls.nsList
	s.nsDirs = make([]string, len(s.nsList))
	for i, n := range s.nsList {
		s.nsByName[n] = uint32(i)
		s.nsDirs[i] = n.dirName()
		s.nsByDir[s.nsDirs[i]] = uint32(i)
	}
	f, err := os.Create(dirtyPath)
	if err != nil {
		return err
	}
	f.Close()

	// Start a new journal; the state so far is the last snapshot plus the
	// existing journals, which stay until the next snapshot replaces them.
	s.gen = lastGen + 1
	if err := s.openJournal(s.gen); err != nil {
		return err
	}
	if needSnapshot && s.idx.len() == 0 {
		// A new directory: an empty snapshot makes the next start quick.
		if err := s.snapshot(); err != nil {
			return err
		}
		needSnapshot = false
	}
	s.mu.Lock()
	victims := s.evictLocked(nil)
	s.mu.Unlock()
	s.removeVictims(victims)

	interval := opts.SnapshotInterval
	if interval == 0 {
		interval = 10 * time.Minute
	}
	s.bg.Add(1)
	go s.background(interval, needSnapshot, dirty)
	return nil
}

// loadIndex reads the newest valid snapshot and the journals after it. If
// there is none, it rebuilds the index from the blob files.
func (s *Store) loadIndex() (ls loadState, lastGen uint64, needSnapshot, rebuilt bool, err error) {
	snaps, journals, err := indexFiles(s.idxDir)
	if err != nil {
		return ls, 0, false, false, err
	}
	for _, g := range journals {
		lastGen = max(lastGen, g)
	}
	for _, g := range snaps {
		lastGen = max(lastGen, g)
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		g := snaps[i]
		ls = loadState{idx: newIndex(0)}
		if err := ls.loadSnapshot(filepath.Join(s.idxDir, snapshotName(g))); err != nil {
			s.log.Warn("ignoring unreadable index snapshot", "err", err)
			continue
		}
		var jr int64
		var jerr error
		for _, jg := range journals {
			if jg < g {
				continue
			}
			n, clean, err := ls.replayJournal(filepath.Join(s.idxDir, journalName(jg)))
			if err != nil {
				jerr = err
				break
			}
			if !clean {
				s.log.Info("index journal ends in a torn record (a crash while writing); ignoring the tail", "journal", journalName(jg))
			}
			jr += n
		}
		if jerr != nil {
			// Records that pass their checksum but make no sense: do not
			// guess, rebuild from the files.
			s.log.Warn("unusable index journal", "err", jerr)
			break
		}
		s.jrecords = jr
		return ls, lastGen, jr > int64(ls.idx.len())/2+10_000, false, nil
	}
	if len(snaps) > 0 || len(journals) > 0 {
		s.log.Warn("no usable index; rebuilding it from the blob files (slow on a large cache)")
	}
	ls, err = s.rebuild()
	return ls, lastGen, true, true, err
}

// rebuild walks the blob files to build an index (slow: it reads every
// file's header). It is used when a directory has no valid snapshot.
func (s *Store) rebuild() (loadState, error) {
	ls := loadState{idx: newIndex(0)}
	nsIDs := map[nsName]uint32{}
	err := filepath.WalkDir(s.blobDir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		h, size, ok := parseBlobName(de.Name())
		if !ok {
			os.Remove(path) // temporary files and debris
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		hdr, hlen, err := readHeader(f)
		fi, serr := f.Stat()
		if err == nil && serr == nil {
			err = checkLayout(f, hdr, hlen, fi.Size())
		}
		if err != nil || serr != nil || hdr.hash != h || hdr.keySize != size ||
			path != filepath.Join(s.blobDir, hdr.ns.dirName(), blobName(hex.EncodeToString(h[:]), size)) {
			s.log.Warn("removing an invalid blob file", "path", path, "err", err)
			os.Remove(path)
			return nil
		}
		id, ok := nsIDs[hdr.ns]
		if !ok {
			id = uint32(len(ls.nsList))
			nsIDs[hdr.ns] = id
			ls.nsList = append(ls.nsList, hdr.ns)
		}
		ls.idx.add(entryKey{ns: id, hash: h, size: size}, fi.Size()-hlen)
		return nil
	})
	if err != nil {
		return ls, fmt.Errorf("rebuilding the index: %w", err)
	}
	return ls, nil
}

func (s *Store) openJournal(gen uint64) error {
	f, err := os.OpenFile(filepath.Join(s.idxDir, journalName(gen)), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("creating the index journal: %w", err)
	}
	if _, err := f.Write([]byte(fileMagic)); err != nil {
		f.Close()
		return fmt.Errorf("writing the index journal: %w", err)
	}
	s.journal = f
	return nil
}

// writeJournalLocked writes s.jbuf to the journal in one write and reports
// whether it reached the kernel. s.mu must be held.
func (s *Store) writeJournalLocked() bool {
	b := s.jbuf
	s.jbuf = s.jbuf[:0]
	if len(b) == 0 || s.journal == nil {
		return s.journal != nil
	}
	if _, err := s.journal.Write(b); err != nil {
		if s.journalErr == nil {
			s.log.Error("writing the index journal failed; removals are kept on disk until it works again", "err", err)
		}
		s.journalErr = err
		return false
	}
	s.journalErr = nil
	s.jrecords++
	if s.jrecords > int64(s.idx.len())/2+100_000 {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// keyOf returns the normalized key and its hash bytes.
func keyOf(key store.Key) (store.Key, [32]byte, error) {
	return store.DecodeKey(key)
}

func nsOf(key store.Key) nsName {
	return nsName{kind: key.Kind, function: key.Function, instance: key.Instance}
}

func (s *Store) path(nsDir string, key store.Key) string {
	return filepath.Join(s.blobDir, nsDir, blobName(key.Hash, key.Size))
}

func (s *Store) pathOf(k entryKey) string {
	return filepath.Join(s.blobDir, s.nsDirs[k.ns], blobName(hex.EncodeToString(k.hash[:]), k.size))
}

// blobReader reads a value from its file and closes the file.
type blobReader struct {
	*io.SectionReader
	f *os.File
}

func (b *blobReader) Close() error { return b.f.Close() }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key store.Key, offset int64) (io.ReadCloser, int64, error) {
	f, hdr, hlen, starts, _, err := s.openEntry(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if offset < 0 || offset > hdr.valueSize {
		f.Close()
		return nil, 0, fmt.Errorf("get %s at offset %d of %d bytes: %w", key, offset, hdr.valueSize, store.ErrOutOfRange)
	}
	if starts != nil {
		return newChunkReader(f, starts, hdr.valueSize, offset), hdr.valueSize, nil
	}
	return &blobReader{SectionReader: io.NewSectionReader(f, hlen+offset, hdr.valueSize-offset), f: f}, hdr.valueSize, nil
}

// GetCompressed implements store.CompressedReader: for a value stored
// compressed (Options.Compress), its zstd frames as they are on disk, each
// checked before it is returned; store.ErrNotCompressed for a value stored
// plain.
func (s *Store) GetCompressed(ctx context.Context, key store.Key) (io.ReadCloser, int64, error) {
	f, hdr, _, starts, crcs, err := s.openEntry(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if starts == nil {
		f.Close()
		return nil, 0, fmt.Errorf("get %s: %w", key, store.ErrNotCompressed)
	}
	return &frameReader{f: f, starts: starts, crcs: crcs, valueSize: hdr.valueSize}, hdr.valueSize, nil
}

// openEntry looks key up (counting it as used), opens its file and checks
// the header and the layout. starts is the frame table of a compressed
// value, nil for a plain one, and crcs the frames' CRCs (nil if the file has
// none). A file that turns out corrupt is removed and reported as not found.
func (s *Store) openEntry(ctx context.Context, key store.Key) (f *os.File, hdr header, hlen int64, starts []int64, crcs []uint32, err error) {
	if err := ctx.Err(); err != nil {
		return nil, hdr, 0, nil, nil, err
	}
	key, h, err := keyOf(key)
	if err != nil {
		return nil, hdr, 0, nil, nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, hdr, 0, nil, nil, errClosed
	}
	ns, ok := s.nsByName[nsOf(key)]
	var ek entryKey
	var nsDir string
	if ok {
		ek = entryKey{ns: ns, hash: h, size: key.Size}
		var i int32
		if i, ok = s.idx.lookup(ek); ok {
			s.idx.touch(i)
			s.changes++
			nsDir = s.nsDirs[ns]
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil, hdr, 0, nil, nil, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
	}
	path := s.path(nsDir, key)
	f, err = os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("index entry without a file; dropping it", "key", key.String())
			s.drop(ek, path, nil)
			return nil, hdr, 0, nil, nil, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
		}
		return nil, hdr, 0, nil, nil, fmt.Errorf("get %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, hdr, 0, nil, nil, fmt.Errorf("get %s: %w", key, err)
	}
	hdr, hlen, err = readHeader(f)
	if err == nil && (hdr.ns != nsOf(key) || hdr.hash != h || hdr.keySize != key.Size) {
		err = fmt.Errorf("%w: file does not match its key", errBadHeader)
	}
	if err == nil {
		if hdr.flags&flagZstd != 0 {
			starts, crcs, err = chunkTable(f, hlen, fi.Size(), hdr.valueSize)
		} else {
			err = checkLayout(f, hdr, hlen, fi.Size())
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, errBadHeader) {
			s.log.Error("removing a corrupt blob file", "key", key.String(), "err", err)
			s.drop(ek, path, fi)
			return nil, hdr, 0, nil, nil, fmt.Errorf("get %s: corrupt file removed: %w", key, store.ErrNotFound)
		}
		return nil, hdr, 0, nil, nil, fmt.Errorf("get %s: %w", key, err)
	}
	return f, hdr, hlen, starts, crcs, nil
}

// drop removes ek from the index and, if it is still the file described by
// fi (or fi is nil and the file does not exist), from the disk.
func (s *Store) drop(ek entryKey, path string, fi os.FileInfo) {
	stripe := &s.stripes[ek.hash[0]]
	stripe.Lock()
	defer stripe.Unlock()
	cur, err := os.Stat(path)
	switch {
	case fi == nil && err == nil:
		return // a Put replaced the missing file meanwhile
	case fi != nil && (err != nil || !os.SameFile(fi, cur)):
		return // replaced or already gone: not ours to remove
	}
	s.mu.Lock()
	_, present := s.idx.remove(ek)
	ok := true
	if present {
		s.jbuf = appendRemove(s.jbuf, ek)
		ok = s.writeJournalLocked()
	}
	s.mu.Unlock()
	if fi != nil && ok {
		os.Remove(path)
	}
}

// FindMissing implements store.Store.
func (s *Store) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type req struct {
		ns nsName
		h  [32]byte
	}
	reqs := make([]req, len(keys))
	for i, k := range keys {
		nk, h, err := keyOf(k)
		if err != nil {
			return nil, fmt.Errorf("find missing: %w", err)
		}
		reqs[i] = req{ns: nsOf(nk), h: h}
	}
	var missing []store.Key
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	var lastNS nsName
	var lastID uint32
	lastOK := false
	for i, r := range reqs {
		if i == 0 || r.ns != lastNS {
			lastNS = r.ns
			lastID, lastOK = s.nsByName[r.ns]
		}
		if lastOK {
			if j, ok := s.idx.lookup(entryKey{ns: lastID, hash: r.h, size: keys[i].Size}); ok {
				s.idx.touch(j)
				continue
			}
		}
		missing = append(missing, keys[i])
	}
	s.changes += int64(len(keys) - len(missing))
	return missing, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key store.Key, size int64, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, h, err := keyOf(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: %w: negative size %d", key, store.ErrSizeMismatch, size)
	}
	if s.max > 0 && size > s.max {
		return fmt.Errorf("put %s: %d bytes, limit %d: %w", key, size, s.max, store.ErrTooLarge)
	}
	name := nsOf(key)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	ns, known := s.nsByName[name]
	if known && key.Kind == store.CAS {
		// Content under a CAS key is the same whoever writes it.
		if i, ok := s.idx.lookup(entryKey{ns: ns, hash: h, size: key.Size}); ok {
			s.idx.touch(i)
			s.changes++
			s.mu.Unlock()
			return nil
		}
	}
	if !known {
		if ns, err = s.addNamespaceLocked(name); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("put %s: %w", key, err)
		}
	}
	nsDir := s.nsDirs[ns]
	s.mu.Unlock()

	final := s.path(nsDir, key)
	hdr := header{ns: name, hash: h, keySize: key.Size, valueSize: size}
	if s.compress && size >= MinCompressSize {
		hdr.flags = flagZstd
	}
	if err := s.writeFile(ctx, final, hdr, r); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// writeFile writes hdr and the value from r to a temporary file and, if
// everything succeeded, renames it to final and records it in the index.
func (s *Store) writeFile(ctx context.Context, final string, hdr header, r io.Reader) (err error) {
	dir := filepath.Dir(final)
	tmp, err := os.CreateTemp(dir, s.tmpPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			tmp, err = os.CreateTemp(dir, s.tmpPrefix+"*")
		}
	}
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var fw io.Writer = tmp
	if s.wrapWriter != nil {
		fw = s.wrapWriter(fw)
	}
	// Buffered, so that the header and a small value reach the file in
	// one write.
	bw := fileBufs.Get().(*bufio.Writer)
	bw.Reset(fw)
	defer func() { bw.Reset(nil); fileBufs.Put(bw) }()
	var w io.Writer = bw
	if _, err := w.Write(hdr.marshal()); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	stored := hdr.valueSize
	var cw *chunkWriter
	if hdr.flags&flagZstd != 0 {
		cw = newChunkWriter(w)
		w = cw
	}
	bp := copyBufs.Get().(*[]byte)
	err = store.ReadExactly(w, r, hdr.valueSize, *bp)
	copyBufs.Put(bp)
	if err != nil {
		return err
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", tmp.Name(), err)
		}
		stored = cw.written
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.fsync {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}

	ek := entryKey{hash: hdr.hash, size: hdr.keySize}
	stripe := &s.stripes[hdr.hash[0]]
	stripe.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		stripe.Unlock()
		return errClosed
	}
	ek.ns = s.nsByName[hdr.ns]
	s.mu.Unlock()
	if err := rename(tmp.Name(), final); err != nil {
		stripe.Unlock()
		return fmt.Errorf("renaming into place: %w", err)
	}
	renamed = true
	s.mu.Lock()
	s.idx.add(ek, stored)
	s.changes++
	s.jbuf = appendAdd(s.jbuf, ek, stored)
	s.writeJournalLocked() // if this fails the file is an orphan after a restart: safe
	victims := s.evictLocked(&ek)
	s.mu.Unlock()
	stripe.Unlock()
	s.removeVictims(victims)
	return nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

var fileBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// rename is os.Rename without the Lstat of the destination that os.Rename
// does first (to refuse replacing a directory; a blob's path never is one).
func rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// addNamespaceLocked registers a new namespace and creates its directories.
func (s *Store) addNamespaceLocked(n nsName) (uint32, error) {
	dir := n.dirName() // its subdirectories are made by the first Put into each
	id := uint32(len(s.nsList))
	s.jbuf = appendNamespace(s.jbuf, id, n)
	if !s.writeJournalLocked() {
		return 0, fmt.Errorf("recording a new namespace: %w", s.journalErr)
	}
	s.nsList = append(s.nsList, n)
	s.nsDirs = append(s.nsDirs, dir)
	s.nsByName[n] = id
	s.nsByDir[dir] = id
	return id, nil
}

type victim struct {
	key  entryKey
	path string
}

// evictLocked removes least recently used entries (never keep) until the
// store fits its bound, journals the removals, and returns the files to
// unlink. If the journal cannot be written the files are left on disk.
func (s *Store) evictLocked(keep *entryKey) []victim {
	if s.max <= 0 || s.idx.bytes <= s.max {
		return nil
	}
	var victims []victim
	for s.idx.bytes > s.max && s.idx.tail >= 0 {
		sl := s.idx.slots[s.idx.tail]
		if keep != nil && sl.key == *keep {
			break
		}
		s.idx.remove(sl.key)
		s.evictions++
		s.evicted += sl.size
		s.jbuf = appendRemove(s.jbuf, sl.key)
		victims = append(victims, victim{key: sl.key, path: s.pathOf(sl.key)})
	}
	if !s.writeJournalLocked() {
		return nil
	}
	return victims
}

// removeVictims unlinks evicted files unless a Put has added them back.
func (s *Store) removeVictims(victims []victim) {
	for _, v := range victims {
		stripe := &s.stripes[v.key.hash[0]]
		stripe.Lock()
		s.mu.Lock()
		_, back := s.idx.lookup(v.key)
		s.mu.Unlock()
		if !back {
			if err := os.Remove(v.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("removing an evicted blob", "path", v.path, "err", err)
			}
		}
		stripe.Unlock()
	}
}

// Stats implements store.StatsReporter.
func (s *Store) Stats() store.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return store.Stats{
		Entries:      int64(s.idx.len()),
		Bytes:        s.idx.bytes,
		MaxBytes:     s.max,
		Evictions:    s.evictions,
		EvictedBytes: s.evicted,
	}
}

// Close snapshots the index and releases the directory. The store cannot
// be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.mu.Unlock()
	close(s.stop)
	s.bg.Wait()
	err := s.snapshot()
	s.mu.Lock()
	s.closed = true
	if s.journal != nil {
		if cerr := s.journal.Close(); err == nil {
			err = cerr
		}
		s.journal = nil
	}
	s.mu.Unlock()
	if err == nil {
		// Only a clean snapshot makes the next start skip the sweep.
		err = os.Remove(filepath.Join(s.dir, "DIRTY"))
	}
	if cerr := s.lockFile.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("closing disk store %s: %w", s.dir, err)
	}
	return nil
}
