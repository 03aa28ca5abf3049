// Package ac implements the REAPI ActionCache service on a store.Store.
//
// GetActionResult serves a result only if every blob it references is in
// the CAS: the store's Complete decorator checks that on every AC read (New
// adds it when the store given lacks it), and checking refreshes the blobs'
// place in the store's LRU. UpdateActionResult validates a result before
// storing it and moves inline contents into the CAS, verified by the
// store's Verifying decorator.
package ac

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/rpcstatus"
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
	return &Server{store: store.WithCompleteness(store.WithVerification(s)), opts: o}
}

// Register adds the service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	repb.RegisterActionCacheServer(g, s)
}

// UpdateEnabled reports whether clients may write results.
func (s *Server) UpdateEnabled() bool { return !s.opts.ReadOnly }

// Key returns the store key of the result of the action with digest d
// (ResultKey). Errors are INVALID_ARGUMENT statuses.
func Key(instance string, fn repb.DigestFunction_Value, d *repb.Digest) (store.Key, error) {
	k, err := resource.Key(store.AC, instance, fn, d)
	if err != nil {
		return k, err
	}
	return ResultKey(k.Instance, k.Function, k.Hash), nil
}

// ResultKey is the store key of the result of the action whose digest has
// hash: kind AC and size 0. Bazel's HTTP cache protocol names a result by
// the Action's hash alone, so the key leaves the size out for gRPC and
// HTTP to share results (a hash names one Action).
func ResultKey(instance string, fn repb.DigestFunction_Value, hash string) store.Key {
	return store.Key{Kind: store.AC, Instance: instance, Function: fn, Hash: hash}
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

// Load reads the result stored under k; the store's Complete decorator
// has checked that every blob it references is present. A missing,
// unusable or incomplete result is NOT_FOUND.
func (s *Server) Load(ctx context.Context, k store.Key) (*repb.ActionResult, error) {
	data, err := store.ReadBlob(ctx, s.store, k, s.opts.MaxResultBytes)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "no usable result for action %s/%d: %v", k.Hash, k.Size, err)
		}
		return nil, rpcstatus.Error(err)
	}
	res := &repb.ActionResult{}
	if err := proto.Unmarshal(data, res); err != nil {
		return nil, status.Errorf(codes.NotFound, "no usable result for action %s/%d", k.Hash, k.Size)
	}
	return res, nil
}

// inline fills stdout_raw, stderr_raw and output file contents as asked,
// within MaxInlineBytes in total; what does not fit is left to the digest.
func (s *Server) inline(ctx context.Context, k store.Key, res *repb.ActionResult, req *repb.GetActionResultRequest) error {
	budget := s.opts.MaxInlineBytes
	fetch := func(d *repb.Digest) ([]byte, bool, error) {
		if d == nil || d.SizeBytes > budget {
			return nil, false, nil
		}
		bk, err := resource.DigestKey(store.CAS, k.Instance, k.Function, d)
		if err != nil {
			return nil, false, err
		}
		data, err := store.ReadBlob(ctx, s.store, bk, budget)
		if err != nil {
			return nil, false, rpcstatus.Error(err)
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
		return nil, rpcstatus.Error(err)
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
		bk, err := resource.DigestKey(store.CAS, k.Instance, k.Function, *d)
		if err != nil {
			return err
		}
		if err := s.store.Put(ctx, bk, int64(len(raw)), bytes.NewReader(raw)); err != nil {
			err = rpcstatus.Error(err)
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
	checkPath := func(field, p string, unique bool) error {
		switch {
		case p == "":
			return fmt.Errorf("%s is empty", field)
		case p == ".":
			return fmt.Errorf("%s %q names the working directory itself, not an output in it", field, p)
		case strings.HasPrefix(p, "/"):
			return fmt.Errorf("%s %q is absolute", field, p)
		case strings.ContainsRune(p, 0):
			return fmt.Errorf("%s %q contains a NUL byte", field, p)
		case p == ".." || strings.HasPrefix(p, "../"):
			return fmt.Errorf("%s %q leaves the working directory", field, p)
		case path.Clean(p) != p:
			return fmt.Errorf("%s %q is not a clean relative path", field, p)
		}
		if unique {
			if paths[p] {
				return fmt.Errorf("%s %q appears twice", field, p)
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
	for i, f := range res.OutputFiles {
		if err := checkPath(fmt.Sprintf("output_files[%d].path", i), f.Path, true); err != nil {
			return err
		}
		if err := checkDigest("output file "+f.Path, f.Digest, len(f.Contents) == 0); err != nil {
			return err
		}
		if f.Digest != nil && len(f.Contents) > 0 && int64(len(f.Contents)) != f.Digest.SizeBytes {
			return fmt.Errorf("output file %s: %d inline bytes, digest says %d", f.Path, len(f.Contents), f.Digest.SizeBytes)
		}
	}
	for i, d := range res.OutputDirectories {
		if err := checkPath(fmt.Sprintf("output_directories[%d].path", i), d.Path, true); err != nil {
			return err
		}
		if err := checkDigest("output directory "+d.Path, d.TreeDigest, true); err != nil {
			return err
		}
		if err := checkDigest("output directory "+d.Path+" root", d.RootDirectoryDigest, false); err != nil {
			return err
		}
	}
	for _, group := range []struct {
		field string
		links []*repb.OutputSymlink
	}{{"output_symlinks", res.OutputSymlinks}, {"output_file_symlinks", res.OutputFileSymlinks}, {"output_directory_symlinks", res.OutputDirectorySymlinks}} {
		for i, l := range group.links {
			// Results may list a symlink both in output_symlinks and in
			// the legacy fields, so these need not be unique.
			if err := checkPath(fmt.Sprintf("%s[%d].path", group.field, i), l.Path, false); err != nil {
				return err
			}
			switch {
			case l.Target == "":
				return fmt.Errorf("%s[%d].target of %s is empty", group.field, i, l.Path)
			case strings.ContainsRune(l.Target, 0):
				return fmt.Errorf("%s[%d].target of %s contains a NUL byte", group.field, i, l.Path)
			}
		}
	}
	if err := checkDigest("stdout", res.StdoutDigest, false); err != nil {
		return err
	}
	return checkDigest("stderr", res.StderrDigest, false)
}
