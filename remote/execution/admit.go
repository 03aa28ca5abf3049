package execution

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/worker"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var errMissing = errors.New("blob missing")

func (s *Service) casKey(instance string, fn repb.DigestFunction_Value, d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Instance: instance, Function: fn, Hash: d.Hash, Size: d.SizeBytes}
}

// readBlob reads a whole message blob (store.ReadBlob: capped, verified).
// A missing blob is errMissing.
func (s *Service) readBlob(ctx context.Context, instance string, fn repb.DigestFunction_Value, d *repb.Digest) ([]byte, error) {
	data, err := store.ReadBlob(ctx, s.st, s.casKey(instance, fn, d), store.MaxMessageBytes)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errMissing
	}
	return data, err
}

// missingStatus is FAILED_PRECONDITION with one MISSING violation per blob.
func missingStatus(what string, ds []*repb.Digest) *spb.Status {
	st := status.Newf(codes.FailedPrecondition, "%s: %d blob(s) missing from the CAS", what, len(ds))
	pf := &errdetails.PreconditionFailure{}
	for _, d := range ds {
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type:        "MISSING",
			Subject:     fmt.Sprintf("blobs/%s/%d", d.Hash, d.SizeBytes),
			Description: what,
		})
	}
	if withDetails, err := st.WithDetails(pf); err == nil {
		st = withDetails
	}
	return st.Proto()
}

// admit checks an ExecuteRequest and returns its operation: a finished one
// (cache hit, or an error in ExecuteResponse.status), an in-flight identical
// one, or a newly queued one. Only a malformed request is an RPC error.
func (s *Service) admit(ctx context.Context, req *repb.ExecuteRequest) (*operation, error) {
	if err := resource.CheckInstanceStatus(req.InstanceName); err != nil {
		return nil, err
	}
	ad := req.GetActionDigest()
	if ad == nil {
		return nil, status.Error(codes.InvalidArgument, "action_digest is required")
	}
	fn, err := digest.Resolve(req.DigestFunction, ad.Hash)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	if err := digest.Validate(fn, ad); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	instance := req.InstanceName
	fail := func(st *spb.Status) (*operation, error) { return s.failedOp(ad, st), nil }

	data, err := s.readBlob(ctx, instance, fn, ad)
	switch {
	case errors.Is(err, errMissing):
		return fail(missingStatus("the Action is not in the CAS", []*repb.Digest{ad}))
	case err != nil:
		return fail(statusProto(codes.Internal, "reading the Action: %v", err))
	}
	action := &repb.Action{}
	if err := proto.Unmarshal(data, action); err != nil {
		return fail(statusProto(codes.InvalidArgument, "the Action blob does not parse: %v", err))
	}

	dedupKey := ""
	if !action.DoNotCache {
		dedupKey = keyString(instance, fn, ad)
		s.mu.Lock()
		if j := s.inflight[dedupKey]; j != nil {
			op := j.op
			s.mu.Unlock()
			s.log.Debug("merged with an identical action in flight", "action", ad.Hash, "operation", op.name)
			return op, nil
		}
		s.mu.Unlock()
	}

	if err := digest.Validate(fn, action.CommandDigest); err != nil {
		return fail(statusProto(codes.InvalidArgument, "Action.command_digest: %v", err))
	}
	if err := digest.Validate(fn, action.InputRootDigest); err != nil {
		return fail(statusProto(codes.InvalidArgument, "Action.input_root_digest: %v", err))
	}
	timeout := s.opts.DefaultTimeout
	if t := action.Timeout; t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			return fail(statusProto(codes.InvalidArgument, "Action.timeout is not a valid duration"))
		}
		if d := t.AsDuration(); d > 0 {
			if d > s.opts.MaxTimeout {
				return fail(statusProto(codes.InvalidArgument, "Action.timeout %v exceeds the server's maximum of %v", d, s.opts.MaxTimeout))
			}
			timeout = d
		}
	}

	var missing []*repb.Digest
	var command *repb.Command
	data, err = s.readBlob(ctx, instance, fn, action.CommandDigest)
	switch {
	case errors.Is(err, errMissing):
		missing = append(missing, action.CommandDigest)
	case err != nil:
		return fail(statusProto(codes.Internal, "reading the Command: %v", err))
	default:
		command = &repb.Command{}
		if err := proto.Unmarshal(data, command); err != nil {
			return fail(statusProto(codes.InvalidArgument, "the Command blob does not parse: %v", err))
		}
		if st := validateCommand(command); st != nil {
			return fail(st)
		}
	}

	platform := action.GetPlatform().GetProperties()
	if len(platform) == 0 && command != nil {
		platform = command.GetPlatform().GetProperties()
	}
	for _, p := range platform {
		if p.Name == "" {
			return fail(statusProto(codes.InvalidArgument, "platform property with an empty name"))
		}
	}

	if command != nil && !req.SkipCacheLookup && !action.DoNotCache {
		if res := s.lookupCache(ctx, instance, fn, ad); res != nil {
			s.mu.Lock()
			op := s.newOpLocked(ad)
			s.completeOpLocked(op, &repb.ExecuteResponse{Result: res, CachedResult: true, Status: &spb.Status{}})
			s.mu.Unlock()
			return op, nil
		}
	}

	treeMissing, st := s.checkInputRoot(ctx, instance, fn, action.InputRootDigest)
	if st != nil {
		return fail(st)
	}
	missing = append(missing, treeMissing...)
	if len(missing) > 0 {
		return fail(missingStatus("inputs of the action are missing", missing))
	}

	var priority int32
	if req.ExecutionPolicy != nil {
		priority = req.ExecutionPolicy.Priority
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.anyWorkerMatchesLocked(platform) {
		op := s.newOpLocked(ad)
		s.completeOpLocked(op, &repb.ExecuteResponse{Status: statusProto(codes.FailedPrecondition,
			"no worker offers the platform %s the action requires", formatPlatform(platform))})
		return op, nil
	}
	if dedupKey != "" {
		if j := s.inflight[dedupKey]; j != nil {
			return j.op, nil
		}
	}
	j := &job{
		op: s.newOpLocked(ad),
		task: &worker.Task{Instance: instance, Function: fn, ActionDigest: ad, Action: action, Command: command,
			Timeout: timeout},
		dedupKey: dedupKey, doNotCache: action.DoNotCache, priority: priority, platform: platform,
	}
	if dedupKey != "" {
		s.inflight[dedupKey] = j
	}
	s.enqueueLocked(j)
	return j.op, nil
}

// validateCommand checks what a worker relies on; nil means fine.
func validateCommand(c *repb.Command) *spb.Status {
	if len(c.Arguments) == 0 || c.Arguments[0] == "" {
		return statusProto(codes.InvalidArgument, "Command.arguments is empty")
	}
	check := func(field, p string, allowEmpty bool) *spb.Status {
		if p == "" && allowEmpty {
			return nil
		}
		if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
			return statusProto(codes.InvalidArgument, "%s: %q must be a non-empty relative path", field, p)
		}
		for _, part := range strings.Split(p, "/") {
			if part == ".." {
				return statusProto(codes.InvalidArgument, "%s: %q leaves the input root", field, p)
			}
		}
		return nil
	}
	if st := check("Command.working_directory", c.WorkingDirectory, true); st != nil {
		return st
	}
	for _, lists := range []struct {
		field string
		paths []string
	}{{"Command.output_files", c.OutputFiles}, {"Command.output_directories", c.OutputDirectories}, {"Command.output_paths", c.OutputPaths}} {
		for _, p := range lists.paths {
			// An output directory may be the working directory itself.
			if st := check(lists.field, p, lists.field != "Command.output_files"); st != nil {
				return st
			}
		}
	}
	for _, e := range c.EnvironmentVariables {
		if e.Name == "" || strings.ContainsAny(e.Name, "=\x00") || strings.ContainsRune(e.Value, 0) {
			return statusProto(codes.InvalidArgument, "Command.environment_variables: invalid variable %q", e.Name)
		}
	}
	for _, p := range c.GetPlatform().GetProperties() {
		if p.Name == "" {
			return statusProto(codes.InvalidArgument, "Command.platform: property with an empty name")
		}
	}
	return nil
}

// checkInputRoot walks the input root's Directory blobs and returns the
// digests of blobs missing from the CAS. A status is returned for a tree
// that is malformed.
func (s *Service) checkInputRoot(ctx context.Context, instance string, fn repb.DigestFunction_Value, root *repb.Digest) ([]*repb.Digest, *spb.Status) {
	var missing []*repb.Digest
	files := map[string]*repb.Digest{}
	seen := map[string]bool{}
	dirs := map[string]worker.DirNode{}
	limits := s.opts.InputLimits.WithDefaults()
	queue := []*repb.Digest{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.Hash] {
			continue
		}
		seen[d.Hash] = true
		if len(seen) > limits.MaxDirectories {
			return nil, s.refuse(&worker.LimitError{Limit: worker.LimitDirectories,
				Msg: fmt.Sprintf("input root has more than %d distinct directories", limits.MaxDirectories)})
		}
		data, err := s.readBlob(ctx, instance, fn, d)
		if errors.Is(err, errMissing) {
			missing = append(missing, d)
			continue
		}
		if err != nil {
			return nil, statusProto(codes.Internal, "reading input directory: %v", err)
		}
		dir := &repb.Directory{}
		if err := proto.Unmarshal(data, dir); err != nil {
			return nil, statusProto(codes.InvalidArgument, "blobs/%s/%d is not a Directory: %v", d.Hash, d.SizeBytes, err)
		}
		dirs[d.Hash] = worker.NodeOf(dir)
		for _, f := range dir.Files {
			if st := checkName(f.Name); st != nil {
				return nil, st
			}
			if err := digest.Validate(fn, f.Digest); err != nil {
				return nil, statusProto(codes.InvalidArgument, "input file %q: %v", f.Name, err)
			}
			if !digest.IsEmpty(fn, f.Digest) {
				files[f.Digest.Hash] = f.Digest
			}
		}
		for _, sub := range dir.Directories {
			if st := checkName(sub.Name); st != nil {
				return nil, st
			}
			if err := digest.Validate(fn, sub.Digest); err != nil {
				return nil, statusProto(codes.InvalidArgument, "input directory %q: %v", sub.Name, err)
			}
			queue = append(queue, sub.Digest)
		}
		for _, sl := range dir.Symlinks {
			if st := checkName(sl.Name); st != nil {
				return nil, st
			}
		}
	}
	// Admission saw each Directory once; a worker writes it once per path.
	if err := worker.TreeSize(root.Hash, dirs, limits); err != nil {
		var le *worker.LimitError
		if errors.As(err, &le) {
			return nil, s.refuse(le)
		}
		return nil, statusProto(codes.InvalidArgument, "input root: %v", err)
	}
	m, err := s.findMissing(ctx, instance, fn, files)
	if err != nil {
		return nil, statusProto(codes.Internal, "checking inputs: %v", err)
	}
	return append(missing, m...), nil
}

// refuse counts a refusal for the limit le names and returns its status.
func (s *Service) refuse(le *worker.LimitError) *spb.Status {
	s.refusals.WithLabelValues(le.Limit).Inc()
	return statusProto(codes.InvalidArgument, "%v", le)
}

func checkName(name string) *spb.Status {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return statusProto(codes.InvalidArgument, "invalid name %q in an input Directory", name)
	}
	return nil
}

func (s *Service) findMissing(ctx context.Context, instance string, fn repb.DigestFunction_Value, ds map[string]*repb.Digest) ([]*repb.Digest, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	keys := make([]store.Key, 0, len(ds))
	for _, d := range ds {
		keys = append(keys, s.casKey(instance, fn, d))
	}
	missing, err := s.st.FindMissing(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]*repb.Digest, len(missing))
	for i, k := range missing {
		out[i] = &repb.Digest{Hash: k.Hash, SizeBytes: k.Size}
	}
	return out, nil
}

// lookupCache returns the cached result of the action if there is one; the
// store's Complete decorator serves only results whose every referenced
// blob is still in the CAS.
func (s *Service) lookupCache(ctx context.Context, instance string, fn repb.DigestFunction_Value, ad *repb.Digest) *repb.ActionResult {
	key := ac.ResultKey(instance, fn, ad.Hash)
	data, err := store.ReadBlob(ctx, s.st, key, store.MaxMessageBytes)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("action cache lookup failed", "action", ad.Hash, "err", err)
		}
		return nil
	}
	res := &repb.ActionResult{}
	if err := proto.Unmarshal(data, res); err != nil {
		s.log.Warn("unparsable action cache entry", "action", ad.Hash, "err", err)
		return nil
	}
	return res
}

func (s *Service) writeActionResult(t *worker.Task, res *repb.ActionResult) error {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := ac.ResultKey(t.Instance, t.Function, t.ActionDigest.Hash)
	return s.st.Put(ctx, key, int64(len(data)), bytes.NewReader(data))
}
