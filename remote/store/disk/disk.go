// Package disk is Ferrule's embedded default store: values in files under
// one directory, bounded in bytes with least-recently-used eviction.
//
// Writes are atomic (a temporary file in the destination directory, renamed
// when complete), every file carries a header naming its key and checksums
// of its value that every read verifies (a damaged value is dropped and
// reported missing, so that the next upload repairs it), and the index of
// entries is kept in memory and persisted as a snapshot plus an
// append-only journal, so that opening a cache of millions of blobs reads
// two files instead of walking the directory. See journal.go for why a
// crash (kill -9) never leads to serving a partial or wrong blob, and
// durable.go for what Options.Fsync adds against power loss.
package disk

import (
	"bufio"
	"bytes"
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
	// MaxBytes bounds the space the entries' files take on disk: each
	// file's size rounded up to the file system's block size, so that
	// millions of small blobs are counted as what they occupy. 0 means no
	// bound.
	MaxBytes int64
	// Fsync makes a Put return only once its file, the directory entry
	// that publishes it and its index journal record are on stable storage
	// (concurrent Puts share the journal's fsync). Without it a Put is safe
	// against the process dying (kill -9) but not against the machine
	// losing power.
	Fsync bool
	// Compress stores new values of at least MinCompressSize bytes
	// zstd-compressed, in independently compressed chunks so that reads at
	// an offset stay cheap, and lets GetCompressed hand out those chunks'
	// frames. Values written either way are readable either way.
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
	bsize                int64 // file system block size, for footprint
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

	dur durability // Options.Fsync: group commit of the journal (durable.go)

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
	s.dur.init()
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
	s.bsize = blockSize(s.dir)
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
	if s.fsync {
		// After a power loss too, the next start must know to sweep.
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}

	// Start a new journal; the state so far is the last snapshot plus the
	// existing journals, which stay until the next snapshot replaces them.
	s.gen = lastGen + 1
	if err := s.openJournal(s.gen); err != nil {
		return err
	}
	s.dur.switchJournal(nil, s.journal, false)
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
		ls = loadState{idx: newIndex(0), footprint: s.footprint}
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
	ls := loadState{idx: newIndex(0), footprint: s.footprint}
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
		ls.idx.add(entryKey{ns: id, hash: h, size: size}, s.footprint(fi.Size()))
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
	if s.fsync {
		if err := syncDir(s.idxDir); err != nil {
			f.Close()
			return fmt.Errorf("creating the index journal: %w", err)
		}
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
	s.dur.written.Add(1)
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

// memReader reads a value already read whole (with the header).
type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// Get implements store.Store. A value whose checksum does not match is
// dropped (so that FindMissing reports it and the next Put stores it
// again) and the read fails with store.ErrCorrupt, from Get if the damage
// is in the first block read, else from Read.
func (s *Store) Get(ctx context.Context, key store.Key, offset int64) (io.ReadCloser, int64, error) {
	e, err := s.openEntry(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if offset < 0 || offset > e.hdr.valueSize {
		e.f.Close()
		return nil, 0, fmt.Errorf("get %s at offset %d of %d bytes: %w", e.key, offset, e.hdr.valueSize, store.ErrOutOfRange)
	}
	rc, err := e.reader(offset, s.corruption(e))
	if err != nil {
		if errors.Is(err, store.ErrCorrupt) {
			return nil, 0, err // names the key
		}
		return nil, 0, fmt.Errorf("get %s: %w", e.key, err)
	}
	return rc, e.hdr.valueSize, nil
}

// GetCompressed implements store.CompressedReader: for a value stored
// compressed (Options.Compress), its zstd frames as they are on disk, each
// checked before it is returned; store.ErrNotCompressed for a value stored
// plain.
func (s *Store) GetCompressed(ctx context.Context, key store.Key) (io.ReadCloser, int64, error) {
	e, err := s.openEntry(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if e.starts == nil {
		e.f.Close()
		return nil, 0, fmt.Errorf("get %s: %w", e.key, store.ErrNotCompressed)
	}
	return &frameReader{f: e.f, starts: e.starts, crcs: e.crcs, valueSize: e.hdr.valueSize, corrupt: s.corruption(e)}, e.hdr.valueSize, nil
}

// entryFile is an open blob file whose header and layout have been checked.
type entryFile struct {
	key    store.Key
	ek     entryKey
	path   string
	f      *os.File
	fi     os.FileInfo
	hdr    header
	hlen   int64
	head   []byte   // the file's first bytes (all of a small file)
	starts []int64  // compressed: frame starts (chunkTable)
	crcs   []uint32 // compressed: frame CRCs (nil in first-format files)
}

// check reads and checks the header and layout of the open file e.f
// against e.key (whose hash is h).
func (e *entryFile) check(h [32]byte) error {
	fi, err := e.f.Stat()
	if err != nil {
		return err
	}
	e.fi = fi
	e.hdr, e.hlen, e.head, err = readHeaderAhead(e.f)
	if err == nil && (e.hdr.ns != nsOf(e.key) || e.hdr.hash != h || e.hdr.keySize != e.key.Size) {
		err = fmt.Errorf("%w: file does not match its key", errBadHeader)
	}
	if err == nil {
		if e.hdr.flags == flagZstd {
			e.starts, e.crcs, err = chunkTable(e.f, e.hlen, fi.Size(), e.hdr.valueSize)
		} else {
			err = checkLayout(e.f, e.hdr, e.hlen, fi.Size())
		}
	}
	return err
}

// reader returns a reader of e's value from offset on; it owns e.f. The
// first block or frame is read and checked before it returns, so a small
// damaged value fails here; damage found is passed to corrupt.
func (e *entryFile) reader(offset int64, corrupt func(error) error) (io.ReadCloser, error) {
	switch e.hdr.flags {
	case flagZstd:
		c := newChunkReader(e.f, e.starts, e.hdr.valueSize, offset, corrupt)
		if err := c.fill(); err != nil && err != io.EOF {
			c.Close()
			return nil, err
		}
		return c, nil
	case flagChecked:
		var crcs []uint32 // a value of one block is read with its CRC
		if e.hdr.valueSize > chunkSize {
			var err error
			if crcs, err = crcTableOf(e.f, e.head, e.hlen, e.hdr.valueSize); err != nil {
				e.f.Close()
				return nil, err
			}
		}
		b := newBlockReader(e.f, e.head, e.hlen, e.hdr.valueSize, crcs, offset, corrupt)
		if err := b.fill(); err != nil && err != io.EOF {
			b.Close()
			return nil, err
		}
		if e.fi.Size() <= int64(len(e.head)) {
			// All of it is in memory and checked: let the file go.
			e.f.Close()
			return memReader{bytes.NewReader(b.cur)}, nil
		}
		return b, nil
	}
	// Written before values had checksums.
	return &blobReader{SectionReader: io.NewSectionReader(e.f, e.hlen+offset, e.hdr.valueSize-offset), f: e.f}, nil
}

// corruption returns the function readers of e call when they find its
// value damaged: it drops the entry (unless a Put replaced the file
// meanwhile) and returns the error for the read.
func (s *Store) corruption(e *entryFile) func(error) error {
	return func(cause error) error {
		s.log.Error("removing a corrupt blob file", "key", e.key.String(), "err", cause)
		s.drop(e.ek, e.path, e.fi)
		return fmt.Errorf("get %s: %w: %v (removed; the next upload stores it again)", e.key, store.ErrCorrupt, cause)
	}
}

// openEntry looks key up (counting it as used), opens its file and checks
// the header and the layout. A file that turns out damaged there is removed
// and reported as not found.
func (s *Store) openEntry(ctx context.Context, key store.Key) (*entryFile, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, h, err := keyOf(key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
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
		return nil, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
	}
	e := &entryFile{key: key, ek: ek, path: s.path(nsDir, key)}
	e.f, err = os.Open(e.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("index entry without a file; dropping it", "key", key.String())
			s.drop(ek, e.path, nil)
			return nil, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
		}
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if err := e.check(h); err != nil {
		e.f.Close()
		if errors.Is(err, errBadHeader) {
			s.log.Error("removing a corrupt blob file", "key", key.String(), "err", err)
			s.drop(ek, e.path, e.fi)
			return nil, fmt.Errorf("get %s: corrupt file removed: %w", key, store.ErrNotFound)
		}
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return e, nil
}

// drop removes ek from the index and, if it is still the file described by
// fi (or fi is nil and the file does not exist), from the disk.
func (s *Store) drop(ek entryKey, path string, fi os.FileInfo) {
	stripe := &s.stripes[ek.hash[0]]
	stripe.Lock()
	cur, err := os.Stat(path)
	switch {
	case fi == nil && err == nil:
		stripe.Unlock()
		return // a Put replaced the missing file meanwhile
	case fi != nil && (err != nil || !os.SameFile(fi, cur)):
		stripe.Unlock()
		return // replaced or already gone: not ours to remove
	}
	s.mu.Lock()
	_, present := s.idx.remove(ek)
	ok := true
	if present {
		s.jbuf = appendRemove(s.jbuf, ek)
		ok = s.writeJournalLocked()
	}
	empty := present && s.idx.nsLen(ek.ns) == 0
	s.mu.Unlock()
	if fi != nil && ok {
		os.Remove(path)
	}
	stripe.Unlock()
	if empty {
		s.reclaim(ek.ns)
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
		// Content under a CAS key is the same whoever writes it. (One
		// found damaged by a read is no longer in the index.)
		if i, ok := s.idx.lookup(entryKey{ns: ns, hash: h, size: key.Size}); ok {
			s.idx.touch(i)
			s.changes++
			// The Put that stored it may still be making it durable.
			t := s.dur.ticket(s.fsync, "")
			s.mu.Unlock()
			return s.dur.wait(t, s)
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
	hdr := header{ns: name, hash: h, keySize: key.Size, valueSize: size, flags: flagChecked}
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
// With Options.Fsync it returns once all of that is durable.
func (s *Store) writeFile(ctx context.Context, final string, hdr header, r io.Reader) (err error) {
	tmp, err := s.createTemp(filepath.Dir(final))
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
	hb := hdr.marshal()
	bw := &lazyWriter{w: fw, pending: hb}
	defer bw.release()
	var w io.Writer = bw
	var fileSize int64
	var cw *chunkWriter
	var crcw *crcWriter
	if hdr.flags == flagZstd {
		cw = newChunkWriter(w)
		w = cw
	} else {
		pw := newPlainWriter(bw)
		crcw, w = &pw.crcWriter, pw
	}
	// Read straight into the chunk buffer (compressed) or the file buffer
	// (plain): no copy buffer.
	if err := store.ReadExactly(w, r, hdr.valueSize, nil); err != nil {
		return err
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", tmp.Name(), err)
		}
		fileSize = int64(len(hb)) + cw.written
	} else {
		if err := crcw.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", tmp.Name(), err)
		}
		fileSize = checkedSize(int64(len(hb)), hdr.valueSize)
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
	s.idx.add(ek, s.footprint(fileSize))
	s.changes++
	s.jbuf = appendAdd(s.jbuf, ek, s.footprint(fileSize))
	// If this fails the file is an orphan after a restart, which the sweep
	// checks and adopts.
	s.writeJournalLocked()
	t := s.dur.ticket(s.fsync, filepath.Dir(final))
	victims := s.evictLocked(&ek)
	s.mu.Unlock()
	stripe.Unlock()
	s.removeVictims(victims)
	return s.dur.wait(t, s)
}

// createTemp creates a temporary file in dir, making dir (and, with
// Options.Fsync, making its entry durable) if needed. A directory emptied
// by eviction may be removed meanwhile (reclaim), hence the retries.
func (s *Store) createTemp(dir string) (*os.File, error) {
	for try := 0; ; try++ {
		tmp, err := os.CreateTemp(dir, s.tmpPrefix+"*")
		if err == nil || !errors.Is(err, fs.ErrNotExist) || try == 3 {
			return tmp, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // its parent was reclaimed meanwhile
			}
			return nil, err
		}
		if s.fsync {
			// The new directories' entries: <hh> in <ns>, <ns> in blobs/.
			ns := filepath.Dir(dir)
			if err := syncDir(ns); err != nil {
				return nil, err
			}
			if err := syncDir(filepath.Dir(ns)); err != nil {
				return nil, err
			}
		}
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

var fileBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// lazyWriter buffers writes to w in a writer from fileBufs, taken when the
// first bytes after pending (a file's header) are written, so that a Put
// waiting for data does not hold it.
type lazyWriter struct {
	w       io.Writer
	pending []byte
	bw      *bufio.Writer
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if l.bw == nil {
		l.bw = fileBufs.Get().(*bufio.Writer)
		l.bw.Reset(l.w)
		if _, err := l.bw.Write(l.pending); err != nil {
			return 0, err
		}
	}
	return l.bw.Write(p)
}

// ReadBuffer is the buffer's free space (see plainWriter), never empty.
func (l *lazyWriter) ReadBuffer() []byte {
	if l.bw == nil {
		l.Write(nil) // an error stays in bw for Filled to report
	}
	b := l.bw.AvailableBuffer()
	return b[:cap(b)]
}

// Filled counts n bytes written into ReadBuffer and writes the buffer out
// when it is full.
func (l *lazyWriter) Filled(n int) error {
	if _, err := l.bw.Write(l.ReadBuffer()[:n]); err != nil {
		return err
	}
	if l.bw.Available() == 0 {
		return l.bw.Flush()
	}
	return nil
}

// Flush writes what is buffered (at least the pending bytes) to w.
func (l *lazyWriter) Flush() error {
	if _, err := l.Write(nil); err != nil {
		return err
	}
	return l.bw.Flush()
}

// release gives the buffer back; the writer cannot be used afterwards.
func (l *lazyWriter) release() {
	if l.bw != nil {
		l.bw.Reset(nil)
		fileBufs.Put(l.bw)
		l.bw = nil
	}
}

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

// removeVictims unlinks evicted files unless a Put has added them back,
// and reclaims the directories of namespaces left empty.
func (s *Store) removeVictims(victims []victim) {
	var emptied map[uint32]bool
	for _, v := range victims {
		stripe := &s.stripes[v.key.hash[0]]
		stripe.Lock()
		s.mu.Lock()
		_, back := s.idx.lookup(v.key)
		empty := s.idx.nsLen(v.key.ns) == 0
		s.mu.Unlock()
		if !back {
			if err := os.Remove(v.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("removing an evicted blob", "path", v.path, "err", err)
			}
		}
		stripe.Unlock()
		if empty {
			if emptied == nil {
				emptied = map[uint32]bool{}
			}
			emptied[v.key.ns] = true
		}
	}
	for ns := range emptied {
		s.reclaim(ns)
	}
}

// reclaim removes the directories of namespace ns if it holds no entries.
// Only empty directories go (os.Remove refuses others), so a Put writing a
// temporary file keeps its directory; one about to create it makes the
// directory again (createTemp).
func (s *Store) reclaim(ns uint32) {
	s.mu.Lock()
	if s.closed || s.idx.nsLen(ns) != 0 {
		s.mu.Unlock()
		return
	}
	base := filepath.Join(s.blobDir, s.nsDirs[ns])
	s.mu.Unlock()
	removeEmptyDirs(base)
}

// removeEmptyDirs removes the empty <hh> directories of a namespace
// directory and then the directory itself if that left it empty.
func removeEmptyDirs(base string) {
	for b := range 256 {
		os.Remove(filepath.Join(base, fmt.Sprintf("%02x", b)))
	}
	os.Remove(base)
}

// footprint is the space a file of size bytes takes: its size rounded up
// to whole file system blocks (what MaxBytes bounds).
func (s *Store) footprint(size int64) int64 {
	return (size + s.bsize - 1) / s.bsize * s.bsize
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
		s.dur.switchJournal(s.journal, nil, false)
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
