package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/chunkclient"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/grpcstore"
	"github.com/ferrule-build/ferrule/remote/worker"
	"google.golang.org/grpc"
)

// platformFlag collects repeated --platform NAME=VALUE flags.
type platformFlag []*repb.Platform_Property

func (p *platformFlag) String() string {
	var parts []string
	for _, q := range *p {
		parts = append(parts, q.Name+"="+q.Value)
	}
	return strings.Join(parts, ",")
}

func (p *platformFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", v)
	}
	*p = append(*p, &repb.Platform_Property{Name: name, Value: value})
	return nil
}

func init() {
	register(&command{
		name:    "worker",
		summary: "run actions for a `ferrule serve` scheduler (remote execution worker)",
		usage:   "--scheduler HOST:PORT [flags]",
		run:     runWorkerCommand,
	})
}

func runWorkerCommand(fs *flag.FlagSet, args []string) error {
	scheduler := fs.String("scheduler", "", "address of the ferrule server (HOST:PORT) to take actions from")
	casAddr := fs.String("cas", "", "address of the CAS for inputs and outputs (default: the scheduler)")
	dir := fs.String("dir", filepath.Join(os.TempDir(), fmt.Sprintf("ferrule-worker-%d", os.Getpid())), "working directory (file cache and execution roots; emptied at start)")
	id := fs.String("id", "", "worker name in logs and action metadata (default HOST/PID)")
	concurrency := fs.Int("concurrency", 1, "actions run at the same time")
	cacheGiB := fs.Int64("cache_size", 10, "local file cache bound in GiB")
	chunking := fs.Bool("chunking", true, "move large inputs and outputs by content-defined chunks when the CAS supports split and splice")
	chunkGiB := fs.Int64("chunk_cache_size", 2, "local chunk store bound in GiB (with --chunking)")
	noNS := fs.Bool("no_namespaces", false, "run actions without mount/pid/network namespaces")
	root := fs.String("root", "", "toolchain root (tools/root.sh --path) to run every action in; its digest is offered as platform property "+worker.RootPlatformProperty)
	logLevel := fs.String("log_level", "info", "log level: debug, info, warn or error")
	var creds worker.Credentials
	fs.StringVar(&creds.TokenFile, "token_file", "", "file holding the bearer token this worker presents to the scheduler and CAS (sent as authorization: Bearer)")
	fs.StringVar(&creds.CAFile, "tls_ca_file", "", "PEM CA certificates to verify the server with; connects over TLS when set")
	fs.StringVar(&creds.ClientCertFile, "tls_client_cert_file", "", "PEM client certificate for mTLS (with --tls_client_key_file and --tls_ca_file)")
	fs.StringVar(&creds.ClientKeyFile, "tls_client_key_file", "", "PEM key of --tls_client_cert_file")
	var limits worker.Limits
	fs.IntVar(&limits.MaxDepth, "max_input_depth", defaultLimits.MaxDepth, "deepest Directory nesting of an input root this worker materialises")
	fs.IntVar(&limits.MaxDirectories, "max_input_directories", defaultLimits.MaxDirectories, "distinct Directory blobs in one input root")
	fs.Int64Var(&limits.MaxPaths, "max_input_paths", defaultLimits.MaxPaths, "files, directories and symlinks one input root may make this worker create")
	fs.Int64Var(&limits.MaxBytes, "max_input_bytes", defaultLimits.MaxBytes, "total bytes of files one input root may make this worker create")
	var actionLimits worker.ActionLimits
	fs.Int64Var(&actionLimits.MemoryBytes, "action_max_memory_bytes", 0, "address space of each action process (RLIMIT_AS); 0: 16 GiB; actions may ask for less with platform property "+worker.PropMaxMemory)
	fs.Int64Var(&actionLimits.Processes, "action_max_processes", 0, "processes of the action uid (RLIMIT_NPROC, shared by concurrent actions); 0: 4096; property "+worker.PropMaxProcesses)
	fs.Int64Var(&actionLimits.FileBytes, "action_max_file_bytes", 0, "largest file an action may write (RLIMIT_FSIZE); 0: 16 GiB; property "+worker.PropMaxFileSize)
	fs.Int64Var(&actionLimits.OutputBytes, "action_max_output_bytes", 0, "total bytes of an action's output files, stdout and stderr this worker uploads (RESOURCE_EXHAUSTED beyond, nothing uploaded); 0: 64 GiB; property "+worker.PropMaxOutput)
	var sandboxPaths stringsFlag
	fs.Var(&sandboxPaths, "sandbox_path", "host path (a tool directory) actions see read-only besides the default set "+strings.Join(worker.HostPaths, " ")+" when there is no --root (repeatable)")
	var extra platformFlag
	fs.Var(&extra, "platform", "platform property NAME=VALUE this worker offers, on top of OSFamily and ISA (repeatable; a NAME given here replaces the default)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *scheduler == "" {
		return usagef("--scheduler is required")
	}
	if actionLimits.MemoryBytes < 0 || actionLimits.Processes < 0 || actionLimits.FileBytes < 0 || actionLimits.OutputBytes < 0 {
		return usagef("--action_max_memory_bytes, --action_max_processes, --action_max_file_bytes and --action_max_output_bytes must not be negative")
	}
	for _, p := range sandboxPaths {
		if !filepath.IsAbs(p) {
			return usagef("--sandbox_path %q: want an absolute path", p)
		}
	}
	if limits.MaxDepth <= 0 || limits.MaxDirectories <= 0 || limits.MaxPaths <= 0 || limits.MaxBytes <= 0 {
		return usagef("--max_input_depth, --max_input_directories, --max_input_paths and --max_input_bytes must be positive")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("--log_level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *root != "" {
		digest, err := worker.ReadRootDigest(*root)
		if err != nil {
			return fmt.Errorf("--root: %w", err)
		}
		extra = append(extra, &repb.Platform_Property{Name: worker.RootPlatformProperty, Value: digest})
	}
	platform := workerPlatform(extra)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dialOpts, err := creds.DialOptions()
	if err != nil {
		return usagef("%v", err)
	}
	dialOpts = append(dialOpts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	dial := func(addr string) (*grpc.ClientConn, error) {
		addr = strings.TrimPrefix(strings.TrimPrefix(addr, "grpc://"), "grpcs://")
		return grpc.NewClient(addr, dialOpts...)
	}
	conn, err := dial(*scheduler)
	if err != nil {
		return err
	}
	defer conn.Close()
	casConn := conn
	if *casAddr != "" {
		if casConn, err = dial(*casAddr); err != nil {
			return err
		}
		defer casConn.Close()
	}
	var cas store.Store = grpcstore.New(casConn)
	if *chunking {
		if cas, err = chunkedCAS(ctx, casConn, cas, filepath.Join(*dir, "chunks"), *chunkGiB<<30, log); err != nil {
			return err
		}
	}
	r, err := worker.New(worker.Options{
		ID: *id, Dir: *dir, Store: cas,
		CacheMaxBytes: *cacheGiB << 30, NoNamespaces: *noNS, Root: *root, Limits: limits, Logger: log,
		ActionLimits: actionLimits, SandboxPaths: sandboxPathsOf(sandboxPaths),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "ferrule worker %s: taking actions from %s, platform %s, concurrency %d, working in %s\n",
		r.ID(), *scheduler, (*platformFlag)(&platform).String(), *concurrency, *dir)
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := worker.Serve(ctx, conn, r, platform, *concurrency)
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stdout, "ferrule worker: stopped\n")
			return nil
		}
		if worker.Refused(err) {
			return &worker.RefusedError{Creds: creds, Err: err}
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		log.Warn("scheduler session ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// stringsFlag collects a repeated string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// sandboxPathsOf is the default host set plus the operator's paths.
func sandboxPathsOf(extra []string) []string {
	if len(extra) == 0 {
		return nil
	}
	return append(append([]string{}, worker.HostPaths...), extra...)
}

// workerPlatform is the default platform with the operator's properties:
// a name given with --platform replaces the default values of that name.
func workerPlatform(extra platformFlag) []*repb.Platform_Property {
	given := map[string]bool{}
	for _, p := range extra {
		given[p.Name] = true
	}
	var out []*repb.Platform_Property
	for _, p := range worker.DefaultPlatform() {
		if !given[p.Name] {
			out = append(out, p)
		}
	}
	return append(out, extra...)
}

// chunkedCAS wraps cas in the chunking client if the server offers split
// and splice, with a disk chunk store in dir (emptied first).
func chunkedCAS(ctx context.Context, conn grpc.ClientConnInterface, cas store.Store, dir string, maxBytes int64, log *slog.Logger) (store.Store, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	local, err := disk.Open(disk.Options{Dir: dir, MaxBytes: maxBytes})
	if err != nil {
		return nil, fmt.Errorf("chunk store: %w", err)
	}
	cc, err := chunkclient.New(ctx, conn, "", cas, chunkclient.Options{Local: store.Verifying(local)})
	if err != nil {
		log.Warn("moving blobs whole", "err", err)
		return cas, nil
	}
	if cc == nil {
		log.Info("the CAS does not offer split and splice: moving blobs whole")
		return cas, nil
	}
	log.Info("moving large blobs by chunks", "function", cc.Function(), "above_bytes", cc.Threshold())
	return cc, nil
}
