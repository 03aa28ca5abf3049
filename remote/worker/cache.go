package worker

import (
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// fileCache keeps CAS files on local disk so that input roots are built with
// hardlinks instead of downloads and copies. Executable and non-executable
// variants of the same blob are separate entries (modes 0555 and 0444), so a
// hardlink never changes the mode another action sees. Entries are written to
// a temporary name, verified against their digest (store.VerifyReader) and
// renamed into place, so
// a crash never leaves a partial entry under a real name. The cache is
// emptied when the worker starts.
type fileCache struct {
	dir      string
	st       store.Store
	maxBytes int64
	log      *slog.Logger

	mu       sync.Mutex
	lru      *list.List // of *cacheEntry, most recently used at the front
	entries  map[string]*list.Element
	size     int64
	fetching map[string]*fetchCall
	copyOnce sync.Once
	// verify, when set and true, says actions could have changed entries
	// they were given: each is hashed again before it is handed out.
	verify func() bool
}

type cacheEntry struct {
	name string
	size int64
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func newFileCache(dir string, st store.Store, maxBytes int64, log *slog.Logger) (*fileCache, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clearing file cache %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &fileCache{
		dir: dir, st: st, maxBytes: maxBytes, log: log,
		lru: list.New(), entries: map[string]*list.Element{}, fetching: map[string]*fetchCall{},
	}, nil
}

func entryName(fn repb.DigestFunction_Value, d *repb.Digest, executable bool) string {
	name := fmt.Sprintf("%s-%d-%s", d.Hash, d.SizeBytes, fn)
	if executable {
		name += "-x"
	}
	return name
}

// materialize places the blob d at dst (which must not exist) as a hardlink
// to a cache entry, fetching the blob from the store first if needed.
func (c *fileCache) materialize(ctx context.Context, instance string, fn repb.DigestFunction_Value, d *repb.Digest, executable bool, dst string) error {
	mode := os.FileMode(0o444)
	if executable {
		mode = 0o555
	}
	if d.SizeBytes == 0 {
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
		if err != nil {
			return err
		}
		return f.Close()
	}
	name := entryName(fn, d, executable)
	for attempt := 0; ; attempt++ {
		if err := c.ensure(ctx, instance, fn, d, mode, name); err != nil {
			return err
		}
		if c.verify != nil && c.verify() && !c.intact(fn, d, mode, name) {
			c.drop(name)
			if attempt == 0 {
				continue // fetch it again
			}
			return fmt.Errorf("file cache entry for blobs/%s/%d changed right after it was fetched", d.Hash, d.SizeBytes)
		}
		err := c.link(name, dst)
		if err == nil {
			return nil
		}
		if errors.Is(err, os.ErrNotExist) && attempt == 0 {
			continue // evicted between ensure and link: fetch again
		}
		return err
	}
}

// intact reports whether the entry name still has mode and the content of
// d. An action that could write its inputs may have changed it.
func (c *fileCache) intact(fn repb.DigestFunction_Value, d *repb.Digest, mode os.FileMode, name string) bool {
	f, err := os.Open(c.path(name))
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != mode || fi.Size() != d.SizeBytes {
		c.log.Warn("file cache entry changed (mode or size): fetching it again", "entry", name)
		return false
	}
	h, err := digest.New(fn)
	if err != nil {
		return false
	}
	if _, err := io.Copy(h, f); err != nil || hex.EncodeToString(h.Sum(nil)) != d.Hash {
		c.log.Warn("file cache entry changed (content): fetching it again", "entry", name)
		return false
	}
	return true
}

// drop forgets the entry name and removes its file (hardlinks in execution
// roots keep their inode).
func (c *fileCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[name]; ok {
		c.size -= el.Value.(*cacheEntry).size
		c.lru.Remove(el)
		delete(c.entries, name)
		os.Remove(c.path(name))
	}
}

func (c *fileCache) path(name string) string {
	return filepath.Join(c.dir, name[:2], name)
}

func (c *fileCache) link(name, dst string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[name]
	if !ok {
		return os.ErrNotExist
	}
	c.lru.MoveToFront(el)
	src := c.path(name)
	err := os.Link(src, dst)
	if err == nil {
		return nil
	}
	var le *os.LinkError
	if errors.As(err, &le) && (errors.Is(le.Err, syscall.EXDEV) || errors.Is(le.Err, syscall.EMLINK) || errors.Is(le.Err, syscall.EPERM)) {
		c.copyOnce.Do(func() { c.log.Warn("hardlinks not possible, copying inputs instead", "err", err) })
		return copyFile(src, dst)
	}
	return err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, fi.Mode().Perm())
}

// ensure makes sure the entry name exists, fetching it once even when several
// actions ask at the same time.
func (c *fileCache) ensure(ctx context.Context, instance string, fn repb.DigestFunction_Value, d *repb.Digest, mode os.FileMode, name string) error {
	c.mu.Lock()
	if _, ok := c.entries[name]; ok {
		c.mu.Unlock()
		return nil
	}
	if call, ok := c.fetching[name]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	call := &fetchCall{done: make(chan struct{})}
	c.fetching[name] = call
	c.mu.Unlock()

	call.err = c.fetch(ctx, instance, fn, d, mode, name)

	c.mu.Lock()
	delete(c.fetching, name)
	if call.err == nil {
		c.entries[name] = c.lru.PushFront(&cacheEntry{name: name, size: d.SizeBytes})
		c.size += d.SizeBytes
		c.evictLocked(name)
	}
	c.mu.Unlock()
	close(call.done)
	return call.err
}

func (c *fileCache) evictLocked(keep string) {
	for c.maxBytes > 0 && c.size > c.maxBytes {
		el := c.lru.Back()
		if el == nil {
			return
		}
		e := el.Value.(*cacheEntry)
		if e.name == keep {
			return
		}
		c.lru.Remove(el)
		delete(c.entries, e.name)
		c.size -= e.size
		os.Remove(c.path(e.name))
	}
}

// missingBlobError reports blobs that the store does not have.
type missingBlobError struct{ digests []*repb.Digest }

func (e *missingBlobError) Error() string {
	return fmt.Sprintf("%d input blob(s) missing from the CAS, first blobs/%s/%d", len(e.digests), e.digests[0].Hash, e.digests[0].SizeBytes)
}

func (c *fileCache) fetch(ctx context.Context, instance string, fn repb.DigestFunction_Value, d *repb.Digest, mode os.FileMode, name string) error {
	key := store.Key{Kind: store.CAS, Instance: instance, Function: fn, Hash: d.Hash, Size: d.SizeBytes}
	rc, size, err := c.st.Get(ctx, key, 0)
	if errors.Is(err, store.ErrNotFound) {
		return &missingBlobError{digests: []*repb.Digest{d}}
	}
	if err != nil {
		return fmt.Errorf("reading blobs/%s/%d: %w", d.Hash, d.SizeBytes, err)
	}
	defer rc.Close()
	if size != d.SizeBytes {
		return fmt.Errorf("blobs/%s/%d: store has %d bytes", d.Hash, d.SizeBytes, size)
	}
	final := c.path(name)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.dir, "tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	v, err := store.VerifyReader(key, rc)
	if err != nil {
		tmp.Close()
		return err
	}
	err = store.ReadExactly(tmp, v, d.SizeBytes, nil)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fetching blobs/%s/%d: %w", d.Hash, d.SizeBytes, err)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), final)
}
