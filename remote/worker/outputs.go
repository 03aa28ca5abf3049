package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"google.golang.org/protobuf/proto"
)

// readDirectory reads and parses one Directory blob, verifying its digest.
func readDirectory(ctx context.Context, st store.Store, instance string, fn repb.DigestFunction_Value, d *repb.Digest) (*repb.Directory, error) {
	data, err := readBlob(ctx, st, instance, fn, d)
	if err != nil {
		return nil, err
	}
	dm := &repb.Directory{}
	if err := proto.Unmarshal(data, dm); err != nil {
		return nil, invalidf("blobs/%s/%d is not a Directory: %v", d.Hash, d.SizeBytes, err)
	}
	return dm, nil
}

func readBlob(ctx context.Context, st store.Store, instance string, fn repb.DigestFunction_Value, d *repb.Digest) ([]byte, error) {
	if d.SizeBytes > store.MaxMessageBytes {
		return nil, invalidf("blobs/%s/%d is too large for a message", d.Hash, d.SizeBytes)
	}
	k := store.Key{Kind: store.CAS, Instance: instance, Function: fn, Hash: d.Hash, Size: d.SizeBytes}
	data, err := store.ReadBlob(ctx, st, k, store.MaxMessageBytes)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &missingBlobError{digests: []*repb.Digest{d}}
	}
	return data, err
}

// createOutputParents creates the directories leading up to every output
// path (but not output directories themselves), as REAPI requires.
func createOutputParents(wd string, cmd *repb.Command) error {
	for _, p := range outputPaths(cmd) {
		full, err := subPath(wd, p)
		if err != nil {
			return err
		}
		if full == wd {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func outputPaths(cmd *repb.Command) []string {
	if len(cmd.OutputPaths) > 0 {
		return cmd.OutputPaths
	}
	out := append([]string(nil), cmd.OutputFiles...)
	return append(out, cmd.OutputDirectories...)
}

// uploader computes digests of output files and uploads those the CAS lacks
// in one FindMissing round.
type uploader struct {
	ctx      context.Context
	st       store.Store
	instance string
	fn       repb.DigestFunction_Value
	files    map[string]string // hash/size -> a path with that content
	blobs    map[string][]byte // hash/size -> in-memory blob (Tree messages)
	digests  map[string]*repb.Digest
}

func (u *uploader) key(d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Instance: u.instance, Function: u.fn, Hash: d.Hash, Size: d.SizeBytes}
}

func (u *uploader) remember(d *repb.Digest) string {
	if u.digests == nil {
		u.digests = map[string]*repb.Digest{}
		u.files = map[string]string{}
		u.blobs = map[string][]byte{}
	}
	id := fmt.Sprintf("%s/%d", d.Hash, d.SizeBytes)
	u.digests[id] = d
	return id
}

func (u *uploader) addFile(path string) (*repb.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := digest.New(u.fn)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	d := &repb.Digest{Hash: hex.EncodeToString(h.Sum(nil)), SizeBytes: n}
	u.files[u.remember(d)] = path
	return d, nil
}

func (u *uploader) addBlob(data []byte) (*repb.Digest, error) {
	d, err := digest.Of(u.fn, data)
	if err != nil {
		return nil, err
	}
	u.blobs[u.remember(d)] = data
	return d, nil
}

func (u *uploader) flush() error {
	if len(u.digests) == 0 {
		return nil
	}
	keys := make([]store.Key, 0, len(u.digests))
	for _, d := range u.digests {
		if d.SizeBytes > 0 {
			keys = append(keys, u.key(d))
		}
	}
	missing, err := u.st.FindMissing(u.ctx, keys)
	if err != nil {
		return fmt.Errorf("finding missing outputs: %w", err)
	}
	for _, k := range missing {
		id := fmt.Sprintf("%s/%d", k.Hash, k.Size)
		if data, ok := u.blobs[id]; ok {
			if err := u.st.Put(u.ctx, k, k.Size, strings.NewReader(string(data))); err != nil {
				return fmt.Errorf("uploading blobs/%s: %w", id, err)
			}
			continue
		}
		f, err := os.Open(u.files[id])
		if err != nil {
			return err
		}
		err = u.st.Put(u.ctx, k, k.Size, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("uploading blobs/%s: %w", id, err)
		}
	}
	return nil
}

// collectOutputs fills res with the outputs the command declared. Outputs
// that do not exist are left out. Command.output_paths (REAPI 2.1+) wins
// over the legacy output_files/output_directories, which REAPI 2.0 clients
// such as Bazel 4 send.
func collectOutputs(u *uploader, res *repb.ActionResult, wd string, cmd *repb.Command) error {
	u.remember(&repb.Digest{}) // initialise maps
	if len(cmd.OutputPaths) > 0 {
		for _, p := range cmd.OutputPaths {
			if err := collectOne(u, res, wd, p, kindAny, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range cmd.OutputFiles {
		if err := collectOne(u, res, wd, p, kindFile, false); err != nil {
			return err
		}
	}
	for _, p := range cmd.OutputDirectories {
		if err := collectOne(u, res, wd, p, kindDir, false); err != nil {
			return err
		}
	}
	return nil
}

type outKind int

const (
	kindAny outKind = iota
	kindFile
	kindDir
)

func collectOne(u *uploader, res *repb.ActionResult, wd, rel string, want outKind, pathsAPI bool) error {
	full, err := subPath(wd, rel)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(full)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return err
		}
		sl := &repb.OutputSymlink{Path: rel, Target: target}
		switch {
		case pathsAPI:
			res.OutputSymlinks = append(res.OutputSymlinks, sl)
		case want == kindDir:
			res.OutputDirectorySymlinks = append(res.OutputDirectorySymlinks, sl)
		default:
			res.OutputFileSymlinks = append(res.OutputFileSymlinks, sl)
		}
	case fi.IsDir():
		if want == kindFile {
			return invalidf("output file %q is a directory", rel)
		}
		tree, err := buildTree(u, full)
		if err != nil {
			return err
		}
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(tree)
		if err != nil {
			return err
		}
		td, err := u.addBlob(data)
		if err != nil {
			return err
		}
		res.OutputDirectories = append(res.OutputDirectories, &repb.OutputDirectory{Path: rel, TreeDigest: td})
	case fi.Mode().IsRegular():
		if want == kindDir {
			return invalidf("output directory %q is a file", rel)
		}
		d, err := u.addFile(full)
		if err != nil {
			return err
		}
		res.OutputFiles = append(res.OutputFiles, &repb.OutputFile{Path: rel, Digest: d, IsExecutable: fi.Mode()&0o111 != 0})
	default:
		return invalidf("output %q is neither a file, a directory nor a symlink", rel)
	}
	return nil
}

// buildTree turns the directory at dir into a Tree message, uploading its
// files. Children are deduplicated by content.
func buildTree(u *uploader, dir string) (*repb.Tree, error) {
	tree := &repb.Tree{}
	seen := map[string]bool{}
	root, err := buildDirectory(u, dir, tree, seen, 0)
	if err != nil {
		return nil, err
	}
	tree.Root = root
	return tree, nil
}

func buildDirectory(u *uploader, dir string, tree *repb.Tree, seen map[string]bool, depth int) (*repb.Directory, error) {
	if depth > 512 {
		return nil, invalidf("output directory deeper than 512 levels")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	out := &repb.Directory{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			out.Symlinks = append(out.Symlinks, &repb.SymlinkNode{Name: e.Name(), Target: target})
		case fi.IsDir():
			child, err := buildDirectory(u, p, tree, seen, depth+1)
			if err != nil {
				return nil, err
			}
			data, err := proto.MarshalOptions{Deterministic: true}.Marshal(child)
			if err != nil {
				return nil, err
			}
			d, err := digest.Of(u.fn, data)
			if err != nil {
				return nil, err
			}
			if !seen[d.Hash] {
				seen[d.Hash] = true
				tree.Children = append(tree.Children, child)
			}
			out.Directories = append(out.Directories, &repb.DirectoryNode{Name: e.Name(), Digest: d})
		case fi.Mode().IsRegular():
			d, err := u.addFile(p)
			if err != nil {
				return nil, err
			}
			out.Files = append(out.Files, &repb.FileNode{Name: e.Name(), Digest: d, IsExecutable: fi.Mode()&0o111 != 0})
		}
	}
	return out, nil
}
