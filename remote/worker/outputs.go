package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"golang.org/x/sys/unix"
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
// path (but not output directories themselves), as REAPI requires, below
// inputRoot (the working directory is wdRel below it) without following a
// symlink out of it, owned by owner.
func createOutputParents(inputRoot, wdRel string, cmd *repb.Command, owner idPair) error {
	root, err := openRootDir(inputRoot)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := mkdirBeneath(root, wdRel, owner); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	for _, p := range outputPaths(cmd) {
		if _, err := subPath("/", p); err != nil {
			return err
		}
		if err := mkdirBeneath(root, path.Dir(path.Join(wdRel, p)), owner); err != nil {
			return invalidf("output %q: %v", p, err)
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
// in one FindMissing round. Output files are named by their path below
// root (the input root, opened by collectOutputs) and reopened beneath it
// for the upload, so nothing outside the input root is ever read.
type uploader struct {
	ctx      context.Context
	st       store.Store
	instance string
	fn       repb.DigestFunction_Value
	root     *os.File
	files    map[string]string // hash/size -> a path with that content (below root when rooted)
	rooted   map[string]bool   // hash/size -> files[id] is below root
	blobs    map[string][]byte // hash/size -> in-memory blob (Tree messages)
	digests  map[string]*repb.Digest
	// maxBytes bounds the bytes hashed for upload, counted per output path,
	// and the Tree messages of output directories (ActionLimits.OutputBytes);
	// total is what has been counted so far.
	maxBytes int64
	total    int64
}

func (u *uploader) key(d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Instance: u.instance, Function: u.fn, Hash: d.Hash, Size: d.SizeBytes}
}

func (u *uploader) remember(d *repb.Digest) string {
	if u.digests == nil {
		u.digests = map[string]*repb.Digest{}
		u.files = map[string]string{}
		u.rooted = map[string]bool{}
		u.blobs = map[string][]byte{}
	}
	id := fmt.Sprintf("%s/%d", d.Hash, d.SizeBytes)
	u.digests[id] = d
	return id
}

// close releases the input root's descriptor.
func (u *uploader) close() {
	if u.root != nil {
		u.root.Close()
	}
}

func (u *uploader) hash(f *os.File) (*repb.Digest, error) {
	h, err := digest.New(u.fn)
	if err != nil {
		return nil, err
	}
	// Read at most one byte past the limit: an output beyond it costs no
	// more than the limit to find out.
	left := u.maxBytes - u.total
	n, err := io.Copy(h, io.LimitReader(f, left+1))
	if err != nil {
		return nil, err
	}
	if n > left {
		return nil, u.tooLarge()
	}
	u.total += n
	return &repb.Digest{Hash: hex.EncodeToString(h.Sum(nil)), SizeBytes: n}, nil
}

// addFile adds a file of the worker's own (stdout, stderr) by its path.
func (u *uploader) addFile(path string) (*repb.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := u.hash(f)
	if err != nil {
		return nil, err
	}
	id := u.remember(d)
	if _, ok := u.files[id]; !ok {
		u.files[id] = path
	}
	return d, nil
}

// addOutput adds the regular file f, which is rel below the input root.
func (u *uploader) addOutput(f *os.File, rel string) (*repb.Digest, error) {
	d, err := u.hash(f)
	if err != nil {
		return nil, err
	}
	id := u.remember(d)
	if _, ok := u.files[id]; !ok {
		u.files[id], u.rooted[id] = rel, true
	}
	return d, nil
}

func (u *uploader) tooLarge() error {
	return &LimitError{Limit: LimitOutputBytes, Msg: fmt.Sprintf("the action's outputs, stdout and stderr total more than %d bytes", u.maxBytes)}
}

func (u *uploader) addBlob(data []byte) (*repb.Digest, error) {
	n := int64(len(data))
	if n > u.maxBytes-u.total {
		return nil, u.tooLarge()
	}
	u.total += n
	d, err := digest.Of(u.fn, data)
	if err != nil {
		return nil, err
	}
	u.blobs[u.remember(d)] = data
	return d, nil
}

func (u *uploader) open(id string) (*os.File, error) {
	if !u.rooted[id] {
		return os.Open(u.files[id])
	}
	f, err := openBeneath(u.root, u.files[id], os.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, invalidf("output %q changed while it was collected", u.files[id])
	}
	return f, nil
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
		f, err := u.open(id)
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

// collectOutputs fills res with the outputs the command declared, read
// below inputRoot (the working directory is wdRel below it) with no symlink
// followed out of it. Outputs that do not exist are left out; one whose
// path leads out of the input root is an INVALID_ARGUMENT error naming it.
// Command.output_paths (REAPI 2.1+) wins over the legacy
// output_files/output_directories, which REAPI 2.0 clients such as Bazel 4
// send.
func collectOutputs(u *uploader, res *repb.ActionResult, inputRoot, wdRel string, cmd *repb.Command) error {
	u.remember(&repb.Digest{}) // initialise maps
	root, err := openRootDir(inputRoot)
	if err != nil {
		return err
	}
	u.root = root
	c := collector{u: u, res: res, wd: wdRel}
	if len(cmd.OutputPaths) > 0 {
		for _, p := range cmd.OutputPaths {
			if err := c.one(p, kindAny, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range cmd.OutputFiles {
		if err := c.one(p, kindFile, false); err != nil {
			return err
		}
	}
	for _, p := range cmd.OutputDirectories {
		if err := c.one(p, kindDir, false); err != nil {
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

type collector struct {
	u   *uploader
	res *repb.ActionResult
	wd  string // working directory below the input root
}

func (c *collector) one(rel string, want outKind, pathsAPI bool) error {
	if _, err := subPath("/", rel); err != nil {
		return err
	}
	full := path.Join(c.wd, rel)
	parent, err := openBeneath(c.u.root, path.Dir(full), unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, errEscapes) {
		return invalidf("output %q is not collected: %v", rel, err)
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer parent.Close()
	name := path.Base(full)
	e, err := lstatAt(parent, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	res := c.res
	switch {
	case e.isSymlink():
		target, err := readlinkAt(parent, name)
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
	case e.isDir():
		if want == kindFile {
			return invalidf("output file %q is a directory", rel)
		}
		dir, err := openAt(parent, name, os.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		tree, err := c.tree(dir, full)
		dir.Close()
		if err != nil {
			return err
		}
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(tree)
		if err != nil {
			return err
		}
		td, err := c.u.addBlob(data)
		if err != nil {
			return err
		}
		res.OutputDirectories = append(res.OutputDirectories, &repb.OutputDirectory{Path: rel, TreeDigest: td})
	case e.isRegular():
		if want == kindDir {
			return invalidf("output directory %q is a file", rel)
		}
		f, err := openAt(parent, name, os.O_RDONLY|unix.O_NONBLOCK)
		if err != nil {
			return err
		}
		d, err := c.u.addOutput(f, full)
		f.Close()
		if err != nil {
			return err
		}
		res.OutputFiles = append(res.OutputFiles, &repb.OutputFile{Path: rel, Digest: d, IsExecutable: e.executable()})
	default:
		return invalidf("output %q is neither a file, a directory nor a symlink", rel)
	}
	return nil
}

// tree turns the open directory dir (rel below the input root) into a
// Tree message, uploading its files. Children are deduplicated by content.
func (c *collector) tree(dir *os.File, rel string) (*repb.Tree, error) {
	tree := &repb.Tree{}
	seen := map[string]bool{}
	root, err := c.directory(dir, rel, tree, seen, 0)
	if err != nil {
		return nil, err
	}
	tree.Root = root
	return tree, nil
}

func (c *collector) directory(dir *os.File, rel string, tree *repb.Tree, seen map[string]bool, depth int) (*repb.Directory, error) {
	if depth > 512 {
		return nil, invalidf("output directory deeper than 512 levels")
	}
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := &repb.Directory{}
	for _, name := range names {
		e, err := lstatAt(dir, name)
		if err != nil {
			return nil, err
		}
		p := path.Join(rel, name)
		switch {
		case e.isSymlink():
			target, err := readlinkAt(dir, name)
			if err != nil {
				return nil, err
			}
			out.Symlinks = append(out.Symlinks, &repb.SymlinkNode{Name: name, Target: target})
		case e.isDir():
			sub, err := openAt(dir, name, os.O_RDONLY|unix.O_DIRECTORY)
			if err != nil {
				return nil, err
			}
			child, err := c.directory(sub, p, tree, seen, depth+1)
			sub.Close()
			if err != nil {
				return nil, err
			}
			data, err := proto.MarshalOptions{Deterministic: true}.Marshal(child)
			if err != nil {
				return nil, err
			}
			d, err := digest.Of(c.u.fn, data)
			if err != nil {
				return nil, err
			}
			if !seen[d.Hash] {
				seen[d.Hash] = true
				tree.Children = append(tree.Children, child)
			}
			out.Directories = append(out.Directories, &repb.DirectoryNode{Name: name, Digest: d})
		case e.isRegular():
			f, err := openAt(dir, name, os.O_RDONLY|unix.O_NONBLOCK)
			if err != nil {
				return nil, err
			}
			d, err := c.u.addOutput(f, p)
			f.Close()
			if err != nil {
				return nil, err
			}
			out.Files = append(out.Files, &repb.FileNode{Name: name, Digest: d, IsExecutable: e.executable()})
		}
	}
	return out, nil
}
