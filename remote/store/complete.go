package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// MaxMessageBytes bounds the protocol messages read whole from a store
// (ActionResult entries, Trees); see ReadBlob.
const MaxMessageBytes = 64 << 20

// Complete returns a Store whose action cache reads find only results that
// can be used: an AC entry is served only if it is intact (a damaged one is
// logged), parses as an ActionResult and every CAS blob it references is
// present (output files, every file of every output directory's Tree, the
// Trees and root directories themselves, stdout and stderr). Anything else is ErrNotFound (wrapped,
// with what is missing), since serving a result whose outputs were evicted
// breaks builds without the bytes. The check's FindMissing counts as a use
// of the blobs. CAS reads, writes and FindMissing pass through.
//
// It belongs above any cache of AC entries (ACCache), so that a cached
// entry is checked again on every read.
func Complete(s Store) Store { return &complete{next: s} }

type complete struct{ next Store }

// Unwrap returns the wrapped store.
func (c *complete) Unwrap() Store { return c.next }

func (c *complete) Get(ctx context.Context, key Key, offset int64) (io.ReadCloser, int64, error) {
	if key.Kind != AC {
		return c.next.Get(ctx, key, offset)
	}
	data, err := ReadBlob(ctx, c.next, key, MaxMessageBytes)
	if errors.Is(err, ErrCorrupt) {
		// A damaged entry is a cache miss: the client runs the action
		// and stores its result again.
		slog.Warn("damaged action cache entry answered as a miss", "key", key.String(), "err", err)
		return nil, 0, fmt.Errorf("%w: %s: stored result is damaged: %v", ErrNotFound, key, err)
	}
	if err != nil {
		return nil, 0, err
	}
	res := &repb.ActionResult{}
	if err := proto.Unmarshal(data, res); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: stored result does not parse: %v", ErrNotFound, key, err)
	}
	if err := CheckComplete(ctx, c.next, key.Instance, key.Function, res); err != nil {
		return nil, 0, err
	}
	if offset < 0 || offset > int64(len(data)) {
		return nil, 0, fmt.Errorf("%w: offset %d of %d bytes", ErrOutOfRange, offset, len(data))
	}
	return io.NopCloser(bytes.NewReader(data[offset:])), int64(len(data)), nil
}

// GetCompressed implements CompressedReader by passing the call on.
func (c *complete) GetCompressed(ctx context.Context, key Key) (io.ReadCloser, int64, error) {
	if key.Kind == AC {
		return nil, 0, ErrNotCompressed
	}
	return GetCompressed(ctx, c.next, key)
}

func (c *complete) Put(ctx context.Context, key Key, size int64, r io.Reader) error {
	return c.next.Put(ctx, key, size, r)
}

func (c *complete) FindMissing(ctx context.Context, keys []Key) ([]Key, error) {
	return c.next.FindMissing(ctx, keys)
}

// CheckComplete returns nil if every CAS blob res references is in st
// under instance and fn, and an error wrapping ErrNotFound that names a
// missing (or malformed) one otherwise. Trees of output directories are
// read, verified, to find their files. Complete calls it on every AC read.
func CheckComplete(ctx context.Context, st Store, instance string, fn repb.DigestFunction_Value, res *repb.ActionResult) error {
	var keys []Key
	key := func(what string, d *repb.Digest) (Key, error) {
		k, err := CheckKey(Key{Kind: CAS, Instance: instance, Function: fn, Hash: d.GetHash(), Size: d.GetSizeBytes()})
		if err != nil {
			return k, fmt.Errorf("%w: result references a bad digest (%s): %v", ErrNotFound, what, err)
		}
		return k, nil
	}
	add := func(what string, d *repb.Digest) error {
		if d == nil {
			return nil
		}
		k, err := key(what, d)
		if err != nil {
			return err
		}
		if !IsEmpty(k) {
			keys = append(keys, k)
		}
		return nil
	}
	for _, f := range res.OutputFiles {
		if err := add("output file "+f.Path, f.Digest); err != nil {
			return err
		}
	}
	if err := add("stdout", res.StdoutDigest); err != nil {
		return err
	}
	if err := add("stderr", res.StderrDigest); err != nil {
		return err
	}
	for _, d := range res.OutputDirectories {
		if d.TreeDigest == nil {
			return fmt.Errorf("%w: output directory %s has no tree digest", ErrNotFound, d.Path)
		}
		tk, err := key("tree of "+d.Path, d.TreeDigest)
		if err != nil {
			return err
		}
		data, err := ReadBlob(ctx, st, tk, MaxMessageBytes)
		if err != nil {
			return fmt.Errorf("%w: output directory %s: tree %s/%d: %v", ErrNotFound, d.Path, tk.Hash, tk.Size, err)
		}
		tree := &repb.Tree{}
		if err := proto.Unmarshal(data, tree); err != nil {
			return fmt.Errorf("%w: output directory %s: tree %s/%d does not parse: %v", ErrNotFound, d.Path, tk.Hash, tk.Size, err)
		}
		for _, dir := range append([]*repb.Directory{tree.Root}, tree.Children...) {
			for _, f := range dir.GetFiles() {
				if err := add("file "+f.Name+" in "+d.Path, f.Digest); err != nil {
					return err
				}
			}
		}
		if err := add("root directory of "+d.Path, d.RootDirectoryDigest); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	missing, err := st.FindMissing(ctx, dedup(keys))
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: result incomplete: %d referenced blobs missing, e.g. %s/%d", ErrNotFound, len(missing), missing[0].Hash, missing[0].Size)
	}
	return nil
}

func dedup(keys []Key) []Key {
	seen := make(map[Key]bool, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// has reports whether s is, or wraps (through Unwrap), a decorator that
// satisfies is.
func has(s Store, is func(Store) bool) bool {
	for s != nil {
		if is(s) {
			return true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			return false
		}
		s = u.Unwrap()
	}
	return false
}

// WithVerification returns s if it already verifies CAS writes (a Verifying
// decorator is s or below it), and Verifying(s) otherwise. Services call it
// on the store they are given, so that a stack built by the server is used
// as it is and a bare backend still never stores a mismatching blob.
func WithVerification(s Store) Store {
	if has(s, func(s Store) bool { _, ok := s.(*verifying); return ok }) {
		return s
	}
	return Verifying(s)
}

// WithCompleteness is WithVerification for Complete.
func WithCompleteness(s Store) Store {
	if has(s, func(s Store) bool { _, ok := s.(*complete); return ok }) {
		return s
	}
	return Complete(s)
}
