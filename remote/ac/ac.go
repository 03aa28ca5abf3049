// Package ac implements the REAPI ActionCache service on a store.Store.
//
// GetActionResult serves a result only if every blob it references is in
// the CAS (output files, every file of every output directory's Tree, the
// Trees themselves, stdout and stderr); checking them refreshes their place
// in the store's LRU. UpdateActionResult validates a result before storing
// it and moves inline contents into the CAS.
package ac

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
)

// Defaults for Options.
const (
	DefaultMaxResultBytes = 4 << 20
	DefaultMaxInlineBytes = 4 << 20
)

// Options configure a Server. Zero values select defaults.
type Options struct {
	// ReadOnly refuses UpdateActionResult with PERMISSION_DENIED.
	ReadOnly bool
	// MaxResultBytes bounds a serialized ActionResult.
	MaxResultBytes int64
	// MaxInlineBytes bounds the total bytes GetActionResult inlines.
	MaxInlineBytes int64
	Logger         *slog.Logger
}

// Server is the ActionCache service.
type Server struct {
	repb.UnimplementedActionCacheServer

	store store.Store
	opts  Options
}

// New returns an ActionCache service over s, which holds both the AC
// entries and the CAS blobs they reference.
func New(s store.Store, o Options) *Server {
	if o.MaxResultBytes <= 0 {
		o.MaxResultBytes = DefaultMaxResultBytes
	}
	if o.MaxInlineBytes <= 0 {
		o.MaxInlineBytes = DefaultMaxInlineBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Server{store: s, opts: o}
}

// Register adds the service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	repb.RegisterActionCacheServer(g, s)
}

// UpdateEnabled reports whether clients may write results.
func (s *Server) UpdateEnabled() bool { return !s.opts.ReadOnly }

// Key returns the store key of the result of the action with digest d: kind
// AC, with the Action's size. Errors are INVALID_ARGUMENT statuses.
func Key(instance string, fn repb.DigestFunction_Value, d *repb.Digest) (store.Key, error) {
	return cas.ResolveKey(store.AC, instance, fn, d)
}

// GetActionResult returns the cached result of an action, NOT_FOUND unless
// it and every blob it references are present.
func (s *Server) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	k, err := Key(req.InstanceName, req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, err
	}
	res, err := s.Load(ctx, k)
	if err != nil {
		return nil, err
	}
	if err := s.inline(ctx, k, res, req); err != nil {
		return nil, err
	}
	return res, nil
}

// Load reads the result stored under k and checks that it is complete
// (Complete). A missing or incomplete result is NOT_FOUND.
func (s *Server) Load(ctx context.Context, k store.Key) (*repb.ActionResult, error) {
	data, err := readAll(ctx, s.store, k, s.opts.MaxResultBytes)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "no result for action %s/%d", k.Hash, k.Size)
		}
		return nil, cas.Status(err)
	}
	res := &repb.ActionResult{}
	if err := proto.Unmarshal(data, res); err != nil {
		s.opts.Logger.Warn("stored action result does not parse", "key", k.String(), "err", err)
		return nil, status.Errorf(codes.NotFound, "no usable result for action %s/%d", k.Hash, k.Size)
	}
	if err := Complete(ctx, s.store, k.Instance, k.Function, res); err != nil {
		return nil, err
	}
	return res, nil
}

func readAll(ctx context.Context, st store.Store, k store.Key, limit int64) ([]byte, error) {
	rc, size, err := st.Get(ctx, k, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > limit {
		return nil, fmt.Errorf("entry %s has %d bytes, more than the limit %d", k, size, limit)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("reading %s: %w", k, err)
	}
	return buf, nil
}

// Complete returns nil if every CAS blob res references is present in st
// under instance and fn, and a NOT_FOUND status naming a missing one
// otherwise. The blobs checked count as used. Trees of output directories
// are read to find their files.
func Complete(ctx context.Context, st store.Store, instance string, fn repb.DigestFunction_Value, res *repb.ActionResult) error {
	var keys []store.Key
	add := func(what string, d *repb.Digest) error {
		if d == nil {
			return nil
		}
		k, err := cas.ResolveKey(store.CAS, instance, fn, d)
		if err != nil {
			return status.Errorf(codes.NotFound, "result references a bad digest (%s): %v", what, status.Convert(err).Message())
		}
		if !cas.IsEmptyKey(k) {
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
			continue
		}
		tk, err := cas.ResolveKey(store.CAS, instance, fn, d.TreeDigest)
		if err != nil {
			return status.Errorf(codes.NotFound, "result references a bad tree digest (%s): %v", d.Path, status.Convert(err).Message())
		}
		data, err := cas.ReadBlob(ctx, st, tk)
		if status.Code(err) == codes.NotFound {
			return status.Errorf(codes.NotFound, "output directory %s: tree %s/%d is missing", d.Path, tk.Hash, tk.Size)
		}
		if err != nil {
			return err
		}
		tree := &repb.Tree{}
		if err := proto.Unmarshal(data, tree); err != nil {
			return status.Errorf(codes.NotFound, "output directory %s: tree %s/%d does not parse: %v", d.Path, tk.Hash, tk.Size, err)
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
		return cas.Status(err)
	}
	if len(missing) > 0 {
		return status.Errorf(codes.NotFound, "result incomplete: %d referenced blobs missing, e.g. %s/%d", len(missing), missing[0].Hash, missing[0].Size)
	}
	return nil
}

func dedup(keys []store.Key) []store.Key {
	seen := make(map[store.Key]bool, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// inline fills stdout_raw, stderr_raw and output file contents as asked,
// within MaxInlineBytes in total; what does not fit is left to the digest.
func (s *Server) inline(ctx context.Context, k store.Key, res *repb.ActionResult, req *repb.GetActionResultRequest) error {
	budget := s.opts.MaxInlineBytes
	fetch := func(d *repb.Digest) ([]byte, bool, error) {
		if d == nil || d.SizeBytes > budget {
			return nil, false, nil
		}
		bk, err := cas.ResolveKey(store.CAS, k.Instance, k.Function, d)
		if err != nil {
			return nil, false, err
		}
		data, err := cas.ReadBlob(ctx, s.store, bk)
		if err != nil {
			return nil, false, err
		}
		budget -= int64(len(data))
		return data, true, nil
	}
	if req.InlineStdout {
		if data, ok, err := fetch(res.StdoutDigest); err != nil {
			return err
		} else if ok {
			res.StdoutRaw = data
		}
	}
	if req.InlineStderr {
		if data, ok, err := fetch(res.StderrDigest); err != nil {
			return err
		} else if ok {
			res.StderrRaw = data
		}
	}
	if len(req.InlineOutputFiles) > 0 {
		want := make(map[string]bool, len(req.InlineOutputFiles))
		for _, p := range req.InlineOutputFiles {
			want[p] = true
		}
		for _, f := range res.OutputFiles {
			if !want[f.Path] {
				continue
			}
			if data, ok, err := fetch(f.Digest); err != nil {
				return err
			} else if ok {
				f.Contents = data
			}
		}
	}
	return nil
}

// UpdateActionResult validates and stores a result. Inline stdout, stderr
// and output file contents are stored in the CAS (verified against their
// digests, or under digests computed here) and stripped from the stored
// result.
func (s *Server) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	if s.opts.ReadOnly {
		return nil, status.Error(codes.PermissionDenied, "this server's action cache is read-only")
	}
	k, err := Key(req.InstanceName, req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, err
	}
	if req.ActionResult == nil {
		return nil, status.Error(codes.InvalidArgument, "missing action_result")
	}
	res := proto.Clone(req.ActionResult).(*repb.ActionResult)
	if err := Validate(k.Function, res); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action result for %s/%d: %v", k.Hash, k.Size, err)
	}
	if err := s.uninline(ctx, k, res); err != nil {
		return nil, err
	}
	data, err := proto.Marshal(res)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding action result: %v", err)
	}
	if int64(len(data)) > s.opts.MaxResultBytes {
		return nil, status.Errorf(codes.InvalidArgument, "action result of %d bytes exceeds the limit of %d", len(data), s.opts.MaxResultBytes)
	}
	if err := s.store.Put(ctx, k, int64(len(data)), bytes.NewReader(data)); err != nil {
		return nil, cas.Status(err)
	}
	return res, nil
}

// uninline moves inline contents into the CAS.
func (s *Server) uninline(ctx context.Context, k store.Key, res *repb.ActionResult) error {
	move := func(what string, raw []byte, d **repb.Digest) error {
		if len(raw) == 0 {
			return nil
		}
		if *d == nil {
			nd, err := digest.Of(k.Function, raw)
			if err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			*d = nd
		}
		bk, err := cas.ResolveKey(store.CAS, k.Instance, k.Function, *d)
		if err != nil {
			return err
		}
		v, err := cas.Verify(bk, bytes.NewReader(raw))
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if err := s.store.Put(ctx, bk, bk.Size, v); err != nil {
			err = cas.Status(err)
			return status.Errorf(status.Code(err), "inline %s: %s", what, status.Convert(err).Message())
		}
		return nil
	}
	if err := move("stdout", res.StdoutRaw, &res.StdoutDigest); err != nil {
		return err
	}
	res.StdoutRaw = nil
	if err := move("stderr", res.StderrRaw, &res.StderrDigest); err != nil {
		return err
	}
	res.StderrRaw = nil
	for _, f := range res.OutputFiles {
		if err := move("contents of "+f.Path, f.Contents, &f.Digest); err != nil {
			return err
		}
		f.Contents = nil
	}
	return nil
}

// Validate checks the structure of an ActionResult: well-formed digests
// under fn, and output paths that are relative, clean and unique.
func Validate(fn repb.DigestFunction_Value, res *repb.ActionResult) error {
	paths := map[string]bool{}
	checkPath := func(p string, unique bool) error {
		if p == "" {
			return errors.New("empty output path")
		}
		if strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.ContainsRune(p, 0) {
			return fmt.Errorf("output path %q is not a clean relative path", p)
		}
		if unique {
			if paths[p] {
				return fmt.Errorf("output path %q appears twice", p)
			}
			paths[p] = true
		}
		return nil
	}
	checkDigest := func(what string, d *repb.Digest, required bool) error {
		if d == nil {
			if required {
				return fmt.Errorf("%s: missing digest", what)
			}
			return nil
		}
		if err := digest.Validate(fn, d); err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		return nil
	}
	for _, f := range res.OutputFiles {
		if err := checkPath(f.Path, true); err != nil {
			return err
		}
		if err := checkDigest("output file "+f.Path, f.Digest, len(f.Contents) == 0); err != nil {
			return err
		}
		if f.Digest != nil && len(f.Contents) > 0 && int64(len(f.Contents)) != f.Digest.SizeBytes {
			return fmt.Errorf("output file %s: %d inline bytes, digest says %d", f.Path, len(f.Contents), f.Digest.SizeBytes)
		}
	}
	for _, d := range res.OutputDirectories {
		if err := checkPath(d.Path, true); err != nil {
			return err
		}
		if err := checkDigest("output directory "+d.Path, d.TreeDigest, true); err != nil {
			return err
		}
		if err := checkDigest("output directory "+d.Path+" root", d.RootDirectoryDigest, false); err != nil {
			return err
		}
	}
	for _, group := range [][]*repb.OutputSymlink{res.OutputSymlinks, res.OutputFileSymlinks, res.OutputDirectorySymlinks} {
		for _, l := range group {
			// Results may list a symlink both in output_symlinks and in
			// the legacy fields, so these need not be unique.
			if err := checkPath(l.Path, false); err != nil {
				return err
			}
			if l.Target == "" {
				return fmt.Errorf("output symlink %s has an empty target", l.Path)
			}
		}
	}
	if err := checkDigest("stdout", res.StdoutDigest, false); err != nil {
		return err
	}
	return checkDigest("stderr", res.StderrDigest, false)
}
