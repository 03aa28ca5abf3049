package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferrule-build/ferrule/remote/store"
)

var _ store.Sizer = (*Store)(nil)

// Size implements store.Sizer: the size of the blob with key's hash, read
// from its file's name (blobName: <hash>-<size>) among the files of its
// fan-out directory and confirmed in the index. Protocols that name blobs
// by hash alone call it only when they do not know the size already.
func (s *Store) Size(ctx context.Context, key store.Key) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	key.Size = 0
	key, h, err := keyOf(key)
	if err != nil {
		return 0, err
	}
	notFound := fmt.Errorf("size of %s: %w", key, store.ErrNotFound)
	s.mu.Lock()
	ns, ok := s.nsByName[nsOf(key)]
	dir := ""
	if ok && !s.closed {
		dir = filepath.Join(s.blobDir, s.nsDirs[ns], key.Hash[:2])
	}
	s.mu.Unlock()
	if dir == "" {
		return 0, notFound
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return 0, notFound
	}
	for _, e := range names {
		fh, size, ok := parseBlobName(e.Name())
		if !ok || fh != h {
			continue
		}
		s.mu.Lock()
		_, in := s.idx.lookup(entryKey{ns: ns, hash: h, size: size})
		s.mu.Unlock()
		if in {
			return size, nil
		}
	}
	return 0, notFound
}
