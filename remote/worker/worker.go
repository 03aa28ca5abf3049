// Package worker runs REAPI actions: it materialises an action's input root
// from the CAS through a local file cache of hardlinks, runs the command in a
// sandbox (exactly the Command's environment; where the kernel allows, a
// private read-only root with the input root, its own /proc, loopback only,
// an unprivileged uid without capabilities and rlimits: sandbox_linux.go; a
// wall-clock timeout that kills the whole process group), and uploads the
// outputs, read beneath the input root (beneath.go), stdout and stderr to
// the CAS. It builds the ActionResult but never writes the Action Cache:
// that is the scheduler's job.
//
// A Runner talks to storage only through store.Store: an in-process worker
// gets the server's store, a `ferrule worker` process a store that speaks
// REAPI CAS and ByteStream over gRPC (see package store/grpcstore).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Task is one action to run.
type Task struct {
	Instance     string
	Function     repb.DigestFunction_Value
	ActionDigest *repb.Digest
	Action       *repb.Action
	Command      *repb.Command
	// Timeout is the wall-clock limit; 0 means none.
	Timeout time.Duration
}

// Outcome is what running a Task produced. When Status is nil or OK the
// command ran and Result holds its exit code and outputs (any exit code).
// A DEADLINE_EXCEEDED status comes with the partial Result (stdout, stderr
// and whatever outputs existed). Other statuses mean the action could not be
// run (missing inputs: FAILED_PRECONDITION with MISSING violations).
type Outcome struct {
	Result *repb.ActionResult
	Status *spb.Status
}

// Options configure a Runner.
type Options struct {
	// ID names the worker in logs and ExecutedActionMetadata.worker.
	ID string
	// Dir is the worker's working area. It holds the file cache and the
	// actions' execution roots, which must be on one filesystem for
	// hardlinks. Its "cache" and "exec" subdirectories are emptied by New.
	Dir string
	// Store is where inputs are read from and outputs written to (CAS only).
	Store store.Store
	// CacheMaxBytes bounds the local file cache (0: 10 GiB).
	CacheMaxBytes int64
	// NoNamespaces disables the mount/pid/net namespaces (they are also
	// dropped automatically when the kernel refuses them).
	NoNamespaces bool
	// Root is a toolchain root (tools/root.sh) every action runs inside,
	// with its input root mounted there; "" runs actions on the host's
	// file system. It needs namespaces.
	Root string
	// Limits bound what one input root may make the worker create.
	Limits Limits
	// ActionLimits bound what a running action may use (memory, processes,
	// file size); actions may ask for less with platform properties.
	ActionLimits ActionLimits
	// SandboxPaths are the host paths actions see, read-only, when there
	// is no Root (nil: HostPaths).
	SandboxPaths []string
	Logger       *slog.Logger
}

// Runner runs Tasks. It is safe for concurrent use.
type Runner struct {
	opts    Options
	log     *slog.Logger
	cache   *fileCache
	execDir string
	seq     atomic.Uint64
	sandbox *sandbox
}

// New prepares a Runner's working area.
func New(opts Options) (*Runner, error) {
	if opts.Store == nil {
		return nil, errors.New("worker: no store")
	}
	if opts.Dir == "" {
		return nil, errors.New("worker: no working directory")
	}
	if opts.ID == "" {
		host, _ := os.Hostname()
		opts.ID = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if opts.CacheMaxBytes <= 0 {
		opts.CacheMaxBytes = 10 << 30
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("worker", opts.ID)
	if opts.Root != "" {
		if opts.NoNamespaces {
			return nil, errors.New("worker: a toolchain root needs namespaces (drop --no_namespaces)")
		}
		root, err := filepath.Abs(opts.Root)
		if err != nil {
			return nil, err
		}
		if root, err = filepath.EvalSymlinks(root); err != nil {
			return nil, fmt.Errorf("worker: toolchain root: %w", err)
		}
		if _, err := ReadRootDigest(root); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		opts.Root = root
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	cache, err := newFileCache(filepath.Join(dir, "cache"), opts.Store, opts.CacheMaxBytes, log)
	if err != nil {
		return nil, err
	}
	execDir := filepath.Join(dir, "exec")
	if err := os.RemoveAll(execDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(execDir, 0o755); err != nil {
		return nil, err
	}
	sb := newSandbox(!opts.NoNamespaces, opts.Root, opts.SandboxPaths, opts.ActionLimits, log)
	cache.verify = func() bool { return !sb.inputsImmutable() }
	return &Runner{opts: opts, log: log, cache: cache, execDir: execDir, sandbox: sb}, nil
}

// ID is the worker's name.
func (r *Runner) ID() string { return r.opts.ID }

// DefaultPlatform is what a worker on this machine offers unless told
// otherwise: OSFamily (linux, darwin, ...) and ISA (x86-64, aarch64, ...).
func DefaultPlatform() []*repb.Platform_Property {
	isa := runtime.GOARCH
	switch isa {
	case "amd64":
		isa = "x86-64"
	case "arm64":
		isa = "aarch64"
	case "386":
		isa = "x86-32"
	}
	return []*repb.Platform_Property{{Name: "ISA", Value: isa}, {Name: "OSFamily", Value: runtime.GOOS}}
}

func statusOf(code codes.Code, format string, args ...any) *spb.Status {
	return status.Newf(code, format, args...).Proto()
}

// Run runs t and returns its outcome. It never panics on bad input: a
// malformed task is an INVALID_ARGUMENT outcome. Run is called on
// goroutines of the worker's own (local workers, lease sessions), outside
// any gRPC handler's recovery, so a panic inside it (a buggy store, say) is
// recovered here and reported as an INTERNAL outcome.
func (r *Runner) Run(ctx context.Context, t *Task) (out Outcome) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("running an action panicked", "panic", p, "stack", string(debug.Stack()))
			out = Outcome{Status: statusOf(codes.Internal, "the worker failed while running the action: %v", p)}
		}
	}()
	return r.run(ctx, t)
}

func (r *Runner) run(ctx context.Context, t *Task) Outcome {
	meta := &repb.ExecutedActionMetadata{Worker: r.opts.ID, WorkerStartTimestamp: timestamppb.Now()}
	if t == nil || t.Action == nil || t.Command == nil {
		return Outcome{Status: statusOf(codes.InvalidArgument, "task without action or command")}
	}
	if len(t.Command.Arguments) == 0 {
		return Outcome{Status: statusOf(codes.InvalidArgument, "command has no arguments")}
	}
	root, err := os.MkdirTemp(r.execDir, fmt.Sprintf("%d-", r.seq.Add(1)))
	if err != nil {
		return Outcome{Status: statusOf(codes.Internal, "creating execution root: %v", err)}
	}
	defer removeAll(root)
	inputRoot := filepath.Join(root, "root")
	owner := r.sandbox.owner()
	if err := mkdirOwned(inputRoot, owner); err != nil {
		return Outcome{Status: statusOf(codes.Internal, "creating input root: %v", err)}
	}
	limits, err := r.sandbox.limits.ForAction(platformOf(t))
	if err != nil {
		return Outcome{Status: statusOf(codes.InvalidArgument, "%v", err)}
	}

	// The action's timeout covers materialising its inputs too.
	start := time.Now()
	meta.InputFetchStartTimestamp = timestamppb.Now()
	mctx := ctx
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		mctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	if err := r.materialize(mctx, t, inputRoot, owner); err != nil {
		if ctx.Err() == nil && mctx.Err() != nil {
			return Outcome{Status: statusOf(codes.DeadlineExceeded, "action timed out after %v while materialising its input root", t.Timeout)}
		}
		return Outcome{Status: errorStatus(err, "materialising the input root")}
	}
	meta.InputFetchCompletedTimestamp = timestamppb.Now()
	timeout := t.Timeout
	if timeout > 0 {
		if timeout -= time.Since(start); timeout <= 0 {
			return Outcome{Status: statusOf(codes.DeadlineExceeded, "action timed out after %v while materialising its input root", t.Timeout)}
		}
	}

	wd, err := subPath(inputRoot, t.Command.WorkingDirectory)
	if err != nil {
		return Outcome{Status: statusOf(codes.InvalidArgument, "working directory: %v", err)}
	}
	if err := createOutputParents(inputRoot, t.Command.WorkingDirectory, t.Command, owner); err != nil {
		return Outcome{Status: errorStatus(err, "creating the output paths' directories")}
	}

	stdout, err := os.Create(filepath.Join(root, "stdout"))
	if err != nil {
		return Outcome{Status: statusOf(codes.Internal, "%v", err)}
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(root, "stderr"))
	if err != nil {
		return Outcome{Status: statusOf(codes.Internal, "%v", err)}
	}
	defer stderr.Close()

	meta.ExecutionStartTimestamp = timestamppb.Now()
	exit, timedOut, runErr := r.sandbox.run(ctx, t.Command, inputRoot, wd, limits, stdout, stderr, timeout)
	meta.ExecutionCompletedTimestamp = timestamppb.Now()
	if runErr != nil && !timedOut {
		if ctx.Err() != nil {
			return Outcome{Status: statusOf(codes.Canceled, "action cancelled: %v", ctx.Err())}
		}
		// The program could not be started (not found, not executable):
		// report it like a shell would, as a failed action.
		fmt.Fprintf(stderr, "ferrule worker: cannot run %q: %v\n", t.Command.Arguments[0], runErr)
		exit = 127
	}

	meta.OutputUploadStartTimestamp = timestamppb.Now()
	res := &repb.ActionResult{ExitCode: int32(exit)}
	up := &uploader{ctx: ctx, st: r.opts.Store, instance: t.Instance, fn: t.Function, maxBytes: limits.OutputBytes}
	defer up.close()
	if err := collectOutputs(up, res, inputRoot, t.Command.WorkingDirectory, t.Command); err != nil {
		return Outcome{Status: errorStatus(err, "collecting outputs")}
	}
	if res.StdoutDigest, err = up.addFile(stdout.Name()); err != nil {
		return Outcome{Status: errorStatus(err, "uploading stdout")}
	}
	if res.StderrDigest, err = up.addFile(stderr.Name()); err != nil {
		return Outcome{Status: errorStatus(err, "uploading stderr")}
	}
	if err := up.flush(); err != nil {
		return Outcome{Status: errorStatus(err, "uploading outputs")}
	}
	meta.OutputUploadCompletedTimestamp = timestamppb.Now()
	meta.WorkerCompletedTimestamp = timestamppb.Now()
	res.ExecutionMetadata = meta
	if timedOut {
		return Outcome{Result: res, Status: statusOf(codes.DeadlineExceeded, "action timed out after %v", t.Timeout)}
	}
	return Outcome{Result: res}
}

// errorStatus turns an error inside the worker into a status: missing blobs
// become FAILED_PRECONDITION with MISSING violations.
func errorStatus(err error, what string) *spb.Status {
	var me *missingBlobError
	if errors.As(err, &me) {
		st := status.Newf(codes.FailedPrecondition, "%s: %v", what, err)
		pf := &errdetails.PreconditionFailure{}
		for _, d := range me.digests {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
				Type: "MISSING", Subject: fmt.Sprintf("blobs/%s/%d", d.Hash, d.SizeBytes),
			})
		}
		if withDetails, derr := st.WithDetails(pf); derr == nil {
			st = withDetails
		}
		return st.Proto()
	}
	var le *LimitError
	if errors.As(err, &le) && le.Limit == LimitOutputBytes {
		return OutputLimitStatus(fmt.Sprintf("%s: %v", what, err))
	}
	if errors.As(err, &le) {
		return statusOf(codes.InvalidArgument, "%s: %v", what, err)
	}
	var ie *invalidError
	if errors.As(err, &ie) {
		return statusOf(codes.InvalidArgument, "%s: %v", what, err)
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Proto()
	}
	return statusOf(codes.Internal, "%s: %v", what, err)
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error { return &invalidError{fmt.Sprintf(format, args...)} }

// subPath joins a relative, slash-separated path from a Command onto base,
// refusing absolute paths and paths that leave base.
func subPath(base, rel string) (string, error) {
	if rel == "" {
		return base, nil
	}
	if strings.HasPrefix(rel, "/") {
		return "", invalidf("%q is absolute", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return "", invalidf("%q leaves the input root", rel)
		}
		if strings.ContainsRune(part, 0) {
			return "", invalidf("%q contains NUL", rel)
		}
	}
	return filepath.Join(base, filepath.FromSlash(rel)), nil
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return invalidf("invalid file name %q in a Directory", name)
	}
	return nil
}

// materialize builds the input root under dir, within r's Limits and
// until ctx ends.
func (r *Runner) materialize(ctx context.Context, t *Task, dir string, owner idPair) error {
	if err := digest.Validate(t.Function, t.Action.InputRootDigest); err != nil {
		return invalidf("input root: %v", err)
	}
	m := &materializer{r: r, t: t, limits: r.opts.Limits.WithDefaults(), dirs: map[string]*repb.Directory{}, owner: owner}
	return m.dir(ctx, t.Action.InputRootDigest, dir, 0)
}

// materializer holds one input root's counts against the Limits, and the
// Directory blobs it has read (each is read once however often it occurs).
type materializer struct {
	r            *Runner
	t            *Task
	limits       Limits
	dirs         map[string]*repb.Directory
	paths, bytes int64
	owner        idPair // of the directories, so the action can write in them
}

// add counts one created path of n bytes.
func (m *materializer) add(n int64) error {
	m.paths++
	m.bytes = addSize(m.bytes, max(n, 0))
	if m.paths > m.limits.MaxPaths {
		return &LimitError{Limit: LimitPaths, Msg: fmt.Sprintf("input root has more than %d files, directories and symlinks", m.limits.MaxPaths)}
	}
	if m.bytes > m.limits.MaxBytes {
		return &LimitError{Limit: LimitBytes, Msg: fmt.Sprintf("input root has more than %d bytes of files", m.limits.MaxBytes)}
	}
	return nil
}

func (m *materializer) dir(ctx context.Context, d *repb.Digest, dir string, depth int) error {
	if depth > m.limits.MaxDepth {
		return &LimitError{Limit: LimitDepth, Msg: fmt.Sprintf("input root is nested deeper than %d directories", m.limits.MaxDepth)}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := m.t
	dm, ok := m.dirs[d.Hash]
	if !ok {
		if len(m.dirs) >= m.limits.MaxDirectories {
			return &LimitError{Limit: LimitDirectories, Msg: fmt.Sprintf("input root has more than %d distinct directories", m.limits.MaxDirectories)}
		}
		var err error
		if dm, err = readDirectory(ctx, m.r.opts.Store, t.Instance, t.Function, d); err != nil {
			return err
		}
		m.dirs[d.Hash] = dm
	}
	for _, f := range dm.Files {
		if err := validName(f.Name); err != nil {
			return err
		}
		if err := digest.Validate(t.Function, f.Digest); err != nil {
			return invalidf("file %q: %v", f.Name, err)
		}
		if err := m.add(f.Digest.SizeBytes); err != nil {
			return err
		}
		if err := m.r.cache.materialize(ctx, t.Instance, t.Function, f.Digest, f.IsExecutable, filepath.Join(dir, f.Name)); err != nil {
			return err
		}
	}
	for _, s := range dm.Symlinks {
		if err := validName(s.Name); err != nil {
			return err
		}
		if err := m.add(0); err != nil {
			return err
		}
		if err := os.Symlink(s.Target, filepath.Join(dir, s.Name)); err != nil {
			return err
		}
	}
	for _, sub := range dm.Directories {
		if err := validName(sub.Name); err != nil {
			return err
		}
		if err := digest.Validate(t.Function, sub.Digest); err != nil {
			return invalidf("directory %q: %v", sub.Name, err)
		}
		if err := m.add(0); err != nil {
			return err
		}
		p := filepath.Join(dir, sub.Name)
		if err := mkdirOwned(p, m.owner); err != nil {
			return err
		}
		if err := m.dir(ctx, sub.Digest, p, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// mkdirOwned creates dir (mode 0755) owned by owner.
func mkdirOwned(dir string, owner idPair) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if owner.uid >= 0 {
		return os.Lchown(dir, owner.uid, owner.gid)
	}
	return nil
}

// removeAll deletes an execution root even where an action left read-only
// directories behind.
func removeAll(dir string) {
	if err := os.RemoveAll(dir); err == nil {
		return
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}
