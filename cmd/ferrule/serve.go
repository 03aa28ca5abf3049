package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"gopkg.in/yaml.v3"

	"github.com/ferrule-build/ferrule/remote/auth"
	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/cdc"
	"github.com/ferrule-build/ferrule/remote/certs"
	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/execution"
	"github.com/ferrule-build/ferrule/remote/httpcache"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/split"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/store/s3"
	"github.com/ferrule-build/ferrule/remote/store/tiered"
	"github.com/ferrule-build/ferrule/remote/worker"
)

// serveConfig is what `ferrule serve` runs with: defaults, then the YAML
// config file, then flags given on the command line. Names follow
// bazel-remote where the meaning is the same.
type serveConfig struct {
	Dir               string        `yaml:"dir"`
	MaxSize           maxSize       `yaml:"max_size"`
	GRPCAddress       string        `yaml:"grpc_address"`
	HTTPAddress       string        `yaml:"http_address"`
	Store             string        `yaml:"store"`
	Fsync             bool          `yaml:"fsync"`
	StorageMode       string        `yaml:"storage_mode"`
	MaxBatchBytes     int64         `yaml:"max_batch_total_size_bytes"`
	ReadOnly          bool          `yaml:"read_only"`
	Reflection        bool          `yaml:"grpc_reflection"`
	LogLevel          string        `yaml:"log_level"`
	UploadIdleTimeout time.Duration `yaml:"upload_idle_timeout"`
	MaxOpenUploads    int           `yaml:"max_open_uploads"`
	MaxClientUploads  int           `yaml:"max_uploads_per_client"`
	HTTPBodyTimeout   time.Duration `yaml:"http_body_timeout"`
	MaxClientExecutes int           `yaml:"max_execute_streams_per_client"`
	FastCDCAvg        uint64        `yaml:"fastcdc_avg_chunk_size"`
	FastCDCSeed       uint          `yaml:"fastcdc_seed"`
	RepMaxMin         uint64        `yaml:"repmaxcdc_min_chunk_size"`
	RepMaxHorizon     uint64        `yaml:"repmaxcdc_horizon_size"`

	// Transport security and authentication (docs/auth.md).
	TLSCertFile               string `yaml:"tls_cert_file"`
	TLSKeyFile                string `yaml:"tls_key_file"`
	TLSCAFile                 string `yaml:"tls_ca_file"`
	TLSClientRolesFile        string `yaml:"tls_client_roles_file"`
	TokenFile                 string `yaml:"token_file"`
	HtpasswdFile              string `yaml:"htpasswd_file"`
	AllowUnauthenticatedReads bool   `yaml:"allow_unauthenticated_reads"`

	// The shared S3 tier behind the local store (see remote/store/s3 and
	// remote/store/tiered), named as bazel-remote's s3 flags.
	S3Endpoint         string `yaml:"s3.endpoint"`
	S3Bucket           string `yaml:"s3.bucket"`
	S3Prefix           string `yaml:"s3.prefix"`
	S3Region           string `yaml:"s3.region"`
	S3DisableSSL       bool   `yaml:"s3.disable_ssl"`
	S3BucketLookup     string `yaml:"s3.bucket_lookup_type"`
	S3AuthMethod       string `yaml:"s3.auth_method"`
	S3AccessKeyID      string `yaml:"s3.access_key_id"`
	S3SecretAccessKey  string `yaml:"s3.secret_access_key"`
	S3CredentialsFile  string `yaml:"s3.aws_shared_credentials_file"`
	S3Profile          string `yaml:"s3.aws_profile"`
	S3IAMRoleEndpoint  string `yaml:"s3.iam_role_endpoint"`
	S3UpdateTimestamps bool   `yaml:"s3.update_timestamps"`
	S3AsyncUpload      bool   `yaml:"s3.async_upload"`
	S3FindParallel     int    `yaml:"s3.find_parallel"`
	MaxQueuedUploads   int    `yaml:"max_queued_uploads"`
	NumUploaders       int    `yaml:"num_uploaders"`

	// Remote execution: the Execution and worker Scheduler services are
	// always registered (so `ferrule worker` processes can join);
	// Workers > 0 adds in-process workers.
	Workers            int          `yaml:"workers"`
	WorkerDir          string       `yaml:"worker_dir"`
	WorkerNoNamespaces bool         `yaml:"worker_no_namespaces"`
	WorkerPlatform     platformFlag `yaml:"-"` // flags only

	// Limits on what one action may ask of the execution service and its
	// workers; 0 takes the default.
	MaxInputDepth         int           `yaml:"max_input_depth"`
	MaxInputDirectories   int           `yaml:"max_input_directories"`
	MaxInputPaths         int64         `yaml:"max_input_paths"`
	MaxInputBytes         int64         `yaml:"max_input_bytes"`
	MaxRetainedOperations int           `yaml:"max_retained_operations"`
	OperationRetention    time.Duration `yaml:"operation_retention"`
	ActionMaxOutputBytes  int64         `yaml:"action_max_output_bytes"`
}

// defaultStorageMode is the default of --storage_mode (see
// docs/benchmarks.md for the measurements behind it).
const defaultStorageMode = "zstd"

// Default ports: gRPC like bazel-remote's 9092, HTTP next to it.
const (
	defaultGRPCAddress = "localhost:9092"
	defaultHTTPAddress = "localhost:9090"
)

func defaultServeConfig() serveConfig {
	dir := "ferrule-cache"
	if d, err := os.UserCacheDir(); err == nil {
		dir = filepath.Join(d, "ferrule")
	}
	return serveConfig{
		Dir:               dir,
		MaxSize:           10 << 30,
		GRPCAddress:       defaultGRPCAddress,
		HTTPAddress:       defaultHTTPAddress,
		Store:             "disk",
		StorageMode:       defaultStorageMode,
		MaxBatchBytes:     cas.DefaultMaxBatchBytes,
		LogLevel:          "info",
		UploadIdleTimeout: time.Minute,
		MaxOpenUploads:    clientlimit.Uploads.Default.MaxOpen,
		MaxClientUploads:  clientlimit.Uploads.Default.MaxPerClient,
		HTTPBodyTimeout:   httpcache.DefaultBodyTimeout,
		MaxClientExecutes: clientlimit.ExecuteStreams.Default.MaxPerClient,
		FastCDCAvg:        cdc.DefaultFastCDCAvg,
		RepMaxMin:         cdc.DefaultRepMaxMin,
		RepMaxHorizon:     cdc.DefaultRepMaxHorizon,
		S3BucketLookup:    "auto",
		S3AuthMethod:      "access_key",
		S3Profile:         "default",
		S3FindParallel:    s3.DefaultFindParallel,
		MaxQueuedUploads:  10000,
		NumUploaders:      16,

		MaxInputDepth:         defaultLimits.MaxDepth,
		MaxInputDirectories:   defaultLimits.MaxDirectories,
		MaxInputPaths:         defaultLimits.MaxPaths,
		MaxInputBytes:         defaultLimits.MaxBytes,
		MaxRetainedOperations: 10_000,
		OperationRetention:    10 * time.Minute,
		ActionMaxOutputBytes:  worker.ActionLimits{}.WithDefaults().OutputBytes,
	}
}

var defaultLimits = worker.Limits{}.WithDefaults()

func bindServeFlags(fs *flag.FlagSet, c *serveConfig, configFile *string) {
	fs.StringVar(configFile, "config_file", "", "YAML file with settings (keys as the flags' names); flags given on the command line override it")
	fs.StringVar(&c.Dir, "dir", c.Dir, "directory of the disk store")
	fs.Var(&c.MaxSize, "max_size", "size bound of the store: GiB (10, 1.5) or with a unit (500MiB, 2GB); files count what they take on disk, least recently used entries are evicted")
	fs.StringVar(&c.GRPCAddress, "grpc_address", c.GRPCAddress, "gRPC listen address (REAPI: --remote_cache=grpc://ADDRESS)")
	fs.StringVar(&c.HTTPAddress, "http_address", c.HTTPAddress, "HTTP listen address (HTTP cache: --remote_cache=http://ADDRESS, /metrics, /status); \"none\" disables HTTP")
	fs.StringVar(&c.Store, "store", c.Store, "storage backend: disk (under --dir) or memory (lost on exit)")
	fs.BoolVar(&c.Fsync, "fsync", c.Fsync, "disk store: flush every blob to stable storage before it becomes visible (survives power loss, slower)")
	fs.StringVar(&c.StorageMode, "storage_mode", c.StorageMode, "disk store: how new CAS blobs are kept: zstd (compressed at rest; compressed reads send the stored frames, plain reads decompress) or uncompressed")
	fs.Int64Var(&c.MaxBatchBytes, "max_batch_total_size_bytes", c.MaxBatchBytes, "limit on the blob bytes of one batch call")
	fs.BoolVar(&c.ReadOnly, "read_only", c.ReadOnly, "refuse every write: CAS and action cache uploads (gRPC and HTTP), Execute, workers and build events")
	fs.StringVar(&c.TLSCertFile, "tls_cert_file", c.TLSCertFile, "PEM certificate of the server: gRPC and HTTP over TLS (with --tls_key_file; reloaded when it changes)")
	fs.StringVar(&c.TLSKeyFile, "tls_key_file", c.TLSKeyFile, "PEM private key of --tls_cert_file")
	fs.StringVar(&c.TLSCAFile, "tls_ca_file", c.TLSCAFile, "PEM CA bundle client certificates are verified against (mTLS); required of every client unless tokens, htpasswd users or anonymous reads are allowed too")
	fs.StringVar(&c.TLSClientRolesFile, "tls_client_roles_file", c.TLSClientRolesFile, "file of NAME ROLES lines giving client certificates (by common name or subject alternative name) their roles (default: every verified certificate holds every role)")
	fs.StringVar(&c.TokenFile, "token_file", c.TokenFile, "file of NAME ROLES TOKEN lines: bearer tokens (Authorization: Bearer TOKEN) and their roles reader, writer, executor, worker")
	fs.StringVar(&c.HtpasswdFile, "htpasswd_file", c.HtpasswdFile, "htpasswd file of bcrypt users for basic auth (USER:HASH, or USER:HASH:ROLES; default role writer)")
	fs.BoolVar(&c.AllowUnauthenticatedReads, "allow_unauthenticated_reads", c.AllowUnauthenticatedReads, "clients without credentials may read (the reader role)")
	fs.BoolVar(&c.Reflection, "grpc_reflection", c.Reflection, "register the gRPC reflection service")
	fs.StringVar(&c.LogLevel, "log_level", c.LogLevel, "log level: debug, info, warn or error")
	fs.DurationVar(&c.UploadIdleTimeout, "upload_idle_timeout", c.UploadIdleTimeout, "how long an interrupted ByteStream upload waits to be resumed")
	fs.IntVar(&c.MaxOpenUploads, "max_open_uploads", c.MaxOpenUploads, "uploads (ByteStream Write streams and HTTP PUTs) open at once; more are refused (RESOURCE_EXHAUSTED, HTTP 503)")
	fs.IntVar(&c.MaxClientUploads, "max_uploads_per_client", c.MaxClientUploads, "uploads one client (IP address) may hold open at once")
	fs.DurationVar(&c.HTTPBodyTimeout, "http_body_timeout", c.HTTPBodyTimeout, "an HTTP PUT whose body sends nothing for this long is dropped (408, nothing stored)")
	fs.IntVar(&c.MaxClientExecutes, "max_execute_streams_per_client", c.MaxClientExecutes, "remote execution: Execute and WaitExecution streams one client (IP address) may hold open at once (RESOURCE_EXHAUSTED beyond)")
	fs.Uint64Var(&c.FastCDCAvg, "fastcdc_avg_chunk_size", c.FastCDCAvg, "split/splice: FastCDC 2020 average chunk size advertised (a power of two, 1 KiB to 8 MiB; Bazel's default 512 KiB)")
	fs.UintVar(&c.FastCDCSeed, "fastcdc_seed", c.FastCDCSeed, "split/splice: FastCDC 2020 seed advertised")
	fs.Uint64Var(&c.RepMaxMin, "repmaxcdc_min_chunk_size", c.RepMaxMin, "split/splice: RepMaxCDC minimum chunk size advertised (64 bytes to 64 MiB)")
	fs.Uint64Var(&c.RepMaxHorizon, "repmaxcdc_horizon_size", c.RepMaxHorizon, "split/splice: RepMaxCDC horizon advertised (at most 256 MiB)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "in-process remote execution workers (0: only separate ferrule worker processes run actions)")
	fs.StringVar(&c.WorkerDir, "worker_dir", c.WorkerDir, "working directory of the in-process workers (default: workers/ under --dir)")
	fs.BoolVar(&c.WorkerNoNamespaces, "worker_no_namespaces", c.WorkerNoNamespaces, "in-process workers run actions without mount/pid/network namespaces")
	fs.IntVar(&c.MaxInputDepth, "max_input_depth", c.MaxInputDepth, "remote execution: deepest Directory nesting of an action's input root (INVALID_ARGUMENT beyond)")
	fs.IntVar(&c.MaxInputDirectories, "max_input_directories", c.MaxInputDirectories, "remote execution: distinct Directory blobs in an action's input root")
	fs.Int64Var(&c.MaxInputPaths, "max_input_paths", c.MaxInputPaths, "remote execution: files, directories and symlinks an action's input root may make a worker create (counted per path)")
	fs.Int64Var(&c.MaxInputBytes, "max_input_bytes", c.MaxInputBytes, "remote execution: total bytes of files an action's input root may make a worker create (counted per path)")
	fs.IntVar(&c.MaxRetainedOperations, "max_retained_operations", c.MaxRetainedOperations, "remote execution: finished operations kept for WaitExecution (oldest forgotten first)")
	fs.DurationVar(&c.OperationRetention, "operation_retention", c.OperationRetention, "remote execution: how long a finished operation is kept for WaitExecution")
	fs.Int64Var(&c.ActionMaxOutputBytes, "action_max_output_bytes", c.ActionMaxOutputBytes, "remote execution, in-process workers: total bytes of an action's output files, stdout and stderr uploaded (RESOURCE_EXHAUSTED beyond, nothing cached); actions may ask for less with platform property "+worker.PropMaxOutput)
	fs.StringVar(&c.S3Endpoint, "s3.endpoint", c.S3Endpoint, "shared S3 tier: the S3-compatible service's host[:port] (the local store then caches a bucket shared by several frontends)")
	fs.StringVar(&c.S3Bucket, "s3.bucket", c.S3Bucket, "shared S3 tier: the bucket (it must exist)")
	fs.StringVar(&c.S3Prefix, "s3.prefix", c.S3Prefix, "shared S3 tier: prefix of every object name (objects are PREFIX/cas/HASH and PREFIX/ac/HASH)")
	fs.StringVar(&c.S3Region, "s3.region", c.S3Region, "shared S3 tier: the bucket's region (empty: found out from the service)")
	fs.BoolVar(&c.S3DisableSSL, "s3.disable_ssl", c.S3DisableSSL, "shared S3 tier: plain HTTP instead of HTTPS")
	fs.StringVar(&c.S3BucketLookup, "s3.bucket_lookup_type", c.S3BucketLookup, "shared S3 tier: bucket addressing: auto, dns (virtual-host style) or path")
	fs.StringVar(&c.S3AuthMethod, "s3.auth_method", c.S3AuthMethod, "shared S3 tier: credentials: access_key (--s3.access_key_id/--s3.secret_access_key, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN from the environment), aws_credentials_file or iam_role")
	fs.StringVar(&c.S3AccessKeyID, "s3.access_key_id", c.S3AccessKeyID, "shared S3 tier: access key for --s3.auth_method access_key (prefer AWS_ACCESS_KEY_ID in the environment)")
	fs.StringVar(&c.S3SecretAccessKey, "s3.secret_access_key", c.S3SecretAccessKey, "shared S3 tier: secret key for --s3.auth_method access_key (prefer AWS_SECRET_ACCESS_KEY in the environment: flags show in ps)")
	fs.StringVar(&c.S3CredentialsFile, "s3.aws_shared_credentials_file", c.S3CredentialsFile, "shared S3 tier: AWS credentials file for --s3.auth_method aws_credentials_file (default ~/.aws/credentials)")
	fs.StringVar(&c.S3Profile, "s3.aws_profile", c.S3Profile, "shared S3 tier: profile in --s3.aws_shared_credentials_file")
	fs.StringVar(&c.S3IAMRoleEndpoint, "s3.iam_role_endpoint", c.S3IAMRoleEndpoint, "shared S3 tier: endpoint of the instance's IAM credentials for --s3.auth_method iam_role (empty: the standard one)")
	fs.BoolVar(&c.S3UpdateTimestamps, "s3.update_timestamps", c.S3UpdateTimestamps, "shared S3 tier: on a hit in the bucket, copy objects older than a day onto themselves so that a lifecycle rule expiring by age keeps what is used")
	fs.BoolVar(&c.S3AsyncUpload, "s3.async_upload", c.S3AsyncUpload, "shared S3 tier: acknowledge writes once stored locally and upload them in the background (bounded by --max_queued_uploads; losses counted in /metrics)")
	fs.IntVar(&c.S3FindParallel, "s3.find_parallel", c.S3FindParallel, "shared S3 tier: HEAD requests one FindMissing has in flight for the digests the local store lacks")
	fs.IntVar(&c.MaxQueuedUploads, "max_queued_uploads", c.MaxQueuedUploads, "shared S3 tier with --s3.async_upload: uploads that may wait; beyond, writes are not uploaded (counted as dropped)")
	fs.IntVar(&c.NumUploaders, "num_uploaders", c.NumUploaders, "shared S3 tier with --s3.async_upload: uploads running at once")
	fs.Var(&c.WorkerPlatform, "worker_platform", "platform property NAME=VALUE the in-process workers offer on top of OSFamily and ISA (repeatable)")
}

// loadServeConfig applies defaults, the config file and the flags in args.
func loadServeConfig(fs *flag.FlagSet, args []string) (serveConfig, error) {
	c := defaultServeConfig()
	var configFile string
	bindServeFlags(fs, &c, &configFile)
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected argument %q", fs.Arg(0))
	}
	if configFile != "" {
		data, err := os.ReadFile(configFile)
		if err != nil {
			return c, fmt.Errorf("config file: %w", err)
		}
		// Flags given on the command line win over the file: note them
		// before the file replaces the values they were parsed into, and
		// apply them again on top of it.
		var again []string
		fs.Visit(func(f *flag.Flag) {
			switch v := f.Value.(type) {
			case *platformFlag: // repeatable: once per property
				for _, p := range *v {
					again = append(again, "--"+f.Name+"="+p.Name+"="+p.Value)
				}
			default:
				if f.Name != "config_file" {
					again = append(again, "--"+f.Name+"="+f.Value.String())
				}
			}
		})
		c = defaultServeConfig()
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config file %s: %w", configFile, err)
		}
		over := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
		over.SetOutput(io.Discard)
		var ignored string
		bindServeFlags(over, &c, &ignored)
		if err := over.Parse(again); err != nil {
			return c, err
		}
	}
	return c, c.check()
}

func (c serveConfig) check() error {
	switch {
	case c.MaxSize <= 0:
		return usagef("--max_size must be a positive size, got %s", c.MaxSize)
	case c.MaxSize > 1<<50:
		return usagef("--max_size %s is too large (at most 1048576GiB)", c.MaxSize)
	case c.GRPCAddress == "":
		return usagef("--grpc_address must not be empty")
	case c.MaxBatchBytes <= 0 || c.MaxBatchBytes > 1<<30:
		return usagef("--max_batch_total_size_bytes must be between 1 and 1 GiB, got %d", c.MaxBatchBytes)
	case c.UploadIdleTimeout <= 0:
		return usagef("--upload_idle_timeout must be positive")
	case c.MaxOpenUploads <= 0 || c.MaxClientUploads <= 0 || c.HTTPBodyTimeout <= 0 || c.MaxClientExecutes <= 0:
		return usagef("--max_open_uploads, --max_uploads_per_client, --http_body_timeout and --max_execute_streams_per_client must be positive")
	case c.Workers < 0:
		return usagef("--workers must not be negative, got %d", c.Workers)
	case c.MaxInputDepth <= 0 || c.MaxInputDirectories <= 0 || c.MaxInputPaths <= 0 || c.MaxInputBytes <= 0:
		return usagef("--max_input_depth, --max_input_directories, --max_input_paths and --max_input_bytes must be positive")
	case c.MaxRetainedOperations <= 0 || c.OperationRetention <= 0:
		return usagef("--max_retained_operations and --operation_retention must be positive")
	case c.ActionMaxOutputBytes <= 0:
		return usagef("--action_max_output_bytes must be positive")
	}
	if _, err := logLevel(c.LogLevel); err != nil {
		return usagef("%v", err)
	}
	if c.FastCDCSeed > math.MaxUint32 {
		return usagef("--fastcdc_seed %d is over 32 bits", c.FastCDCSeed)
	}
	if err := cdc.CheckFastCDC(&repb.FastCdc2020Params{AvgChunkSizeBytes: c.FastCDCAvg}); err != nil {
		return usagef("--fastcdc_avg_chunk_size: %v", err)
	}
	if err := cdc.CheckRepMax(&repb.RepMaxCdcParams{MinChunkSizeBytes: c.RepMaxMin, HorizonSizeBytes: c.RepMaxHorizon}); err != nil {
		return usagef("--repmaxcdc_min_chunk_size/--repmaxcdc_horizon_size: %v", err)
	}
	switch c.StorageMode {
	case "zstd", "uncompressed":
	default:
		return usagef("unknown --storage_mode %q (zstd or uncompressed)", c.StorageMode)
	}
	if (c.S3Endpoint == "") != (c.S3Bucket == "") {
		return usagef("the shared S3 tier needs both --s3.endpoint and --s3.bucket")
	}
	if c.S3Endpoint != "" && c.S3FindParallel <= 0 {
		return usagef("--s3.find_parallel must be positive, got %d", c.S3FindParallel)
	}
	if c.S3Endpoint != "" && (c.MaxQueuedUploads <= 0 || c.NumUploaders <= 0) {
		return usagef("--max_queued_uploads and --num_uploaders must be positive")
	}
	switch c.Store {
	case "disk":
		if c.Dir == "" {
			return usagef("--dir must not be empty with --store disk")
		}
	case "memory":
	default:
		return usagef("unknown --store %q (disk or memory)", c.Store)
	}
	return nil
}

func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("unknown --log_level %q", s)
	}
	return l, nil
}

// openStore opens the configured backend, in front of the shared S3 tier
// if there is one, and describes it.
func openStore(ctx context.Context, c serveConfig, log *slog.Logger) (store.Store, string, error) {
	local, desc, err := openLocalStore(c, log)
	if err != nil || c.S3Bucket == "" {
		return local, desc, err
	}
	shared, err := openS3(ctx, c, log)
	if err != nil {
		if cl, ok := local.(io.Closer); ok {
			cl.Close()
		}
		return nil, "", err
	}
	mode := "synchronous uploads"
	if c.S3AsyncUpload {
		mode = fmt.Sprintf("asynchronous uploads (queue of %d, %d uploaders)", c.MaxQueuedUploads, c.NumUploaders)
	}
	log.Info("shared S3 tier", "bucket", shared.Name(), "uploads", mode)
	st := tiered.New(local, shared, tiered.Options{Async: c.S3AsyncUpload, MaxQueuedUploads: c.MaxQueuedUploads, Uploaders: c.NumUploaders, Logger: log})
	return st, fmt.Sprintf("%s, in front of %s, %s", desc, shared.Name(), mode), nil
}

// s3Timeout bounds the start-up check of the S3 bucket.
const s3Timeout = 15 * time.Second

// openS3 connects to the bucket and checks it (a clear error otherwise).
func openS3(ctx context.Context, c serveConfig, log *slog.Logger) (*s3.Store, error) {
	creds, err := s3.Credentials(s3.Auth{
		Method: c.S3AuthMethod, AccessKeyID: c.S3AccessKeyID, SecretAccessKey: c.S3SecretAccessKey,
		CredentialsFile: c.S3CredentialsFile, Profile: c.S3Profile, IAMEndpoint: c.S3IAMRoleEndpoint,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s3Timeout)
	defer cancel()
	st, err := s3.Open(ctx, s3.Options{
		Endpoint: c.S3Endpoint, Bucket: c.S3Bucket, Prefix: c.S3Prefix, Region: c.S3Region,
		DisableSSL: c.S3DisableSSL, BucketLookup: c.S3BucketLookup, Creds: creds,
		UpdateTimestamps: c.S3UpdateTimestamps, FindParallel: c.S3FindParallel, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("shared S3 tier: %w", err)
	}
	return st, nil
}

// openLocalStore opens the configured local backend and describes it.
func openLocalStore(c serveConfig, log *slog.Logger) (store.Store, string, error) {
	max := int64(c.MaxSize)
	switch c.Store {
	case "memory":
		return memory.New(max), fmt.Sprintf("memory store of up to %s (lost on exit)", c.MaxSize), nil
	case "disk":
		start := time.Now()
		d, err := disk.Open(disk.Options{Dir: c.Dir, MaxBytes: max, Fsync: c.Fsync, Compress: c.StorageMode == "zstd", Logger: log})
		if err != nil {
			return nil, "", fmt.Errorf("opening the disk store in %s: %w", c.Dir, err)
		}
		st := d.Stats()
		log.Info("disk store opened", "dir", c.Dir, "entries", st.Entries, "bytes", st.Bytes, "took", time.Since(start).Round(time.Millisecond))
		return d, fmt.Sprintf("disk store in %s of up to %s, %s (%d entries, %.1f MiB at start)", c.Dir, c.MaxSize, c.StorageMode, st.Entries, float64(st.Bytes)/(1<<20)), nil
	}
	return nil, "", fmt.Errorf("unknown store %q", c.Store)
}

// serveReady, when set (by tests), is called with the server once it listens.
var serveReady func(*server.Server)

func runServe(ctx context.Context, c serveConfig, out io.Writer) error {
	level, _ := logLevel(c.LogLevel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	st, desc, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	if cl, ok := st.(io.Closer); ok {
		defer cl.Close()
	}
	httpAddr := c.HTTPAddress
	if httpAddr == "none" {
		httpAddr = ""
	}
	srv, err := server.New(server.Config{
		GRPCAddress:      c.GRPCAddress,
		HTTPAddress:      httpAddr,
		Store:            st,
		StoreDescription: desc,
		MaxBatchBytes:    c.MaxBatchBytes,
		ReadOnly:         c.ReadOnly,
		TLS:              certs.Files{Cert: c.TLSCertFile, Key: c.TLSKeyFile, CA: c.TLSCAFile},
		Auth: auth.Config{TokenFile: c.TokenFile, HtpasswdFile: c.HtpasswdFile, CertRoleFile: c.TLSClientRolesFile,
			AllowUnauthenticatedReads: c.AllowUnauthenticatedReads},
		Reflection:        c.Reflection,
		UploadIdleTimeout: c.UploadIdleTimeout,
		Uploads:           clientlimit.Limits{MaxOpen: c.MaxOpenUploads, MaxPerClient: c.MaxClientUploads},
		HTTPBodyTimeout:   c.HTTPBodyTimeout,
		Chunking: split.Options{
			FastCDC: &repb.FastCdc2020Params{AvgChunkSizeBytes: c.FastCDCAvg, Seed: uint32(c.FastCDCSeed)},
			RepMax:  &repb.RepMaxCdcParams{MinChunkSizeBytes: c.RepMaxMin, HorizonSizeBytes: c.RepMaxHorizon},
		},
		Version: version,
		Logger:  log,
	})
	if err != nil {
		return err
	}
	stopWorkers, err := startExecution(ctx, c, srv, out)
	if err != nil {
		return err
	}
	defer stopWorkers()
	if err := srv.Listen(); err != nil {
		return err
	}
	fmt.Fprintf(out, "ferrule serve: storing in a %s\n", desc)
	grpcScheme, httpScheme := "grpc", "http"
	if c.TLSCertFile != "" {
		grpcScheme, httpScheme = "grpcs", "https"
	}
	fmt.Fprintf(out, "ferrule serve: gRPC on %s  (bazel --remote_cache=%s://%s)\n", srv.GRPCAddr(), grpcScheme, srv.GRPCAddr())
	if a := srv.HTTPAddr(); a != nil {
		fmt.Fprintf(out, "ferrule serve: HTTP on %s  (bazel --remote_cache=%s://%s; /metrics, /status)\n", a, httpScheme, a)
	}
	if c.TLSCAFile != "" {
		fmt.Fprintf(out, "ferrule serve: mTLS: client certificates verified against %s\n", c.TLSCAFile)
	}
	if c.TokenFile != "" || c.HtpasswdFile != "" || c.TLSCAFile != "" {
		anon := "refused"
		if c.AllowUnauthenticatedReads {
			anon = "readers"
		}
		fmt.Fprintf(out, "ferrule serve: authentication on; clients without credentials are %s\n", anon)
	}
	if c.ReadOnly {
		fmt.Fprintf(out, "ferrule serve: read-only: every write is refused\n")
	}
	if serveReady != nil {
		serveReady(srv)
	}
	err = srv.Serve(ctx)
	fmt.Fprintf(out, "ferrule serve: stopped\n")
	return err
}

// startExecution registers the Execution and worker Scheduler services on
// srv, over the server's store, and starts c.Workers in-process workers.
// The returned function stops the workers and waits for them.
func startExecution(ctx context.Context, c serveConfig, srv *server.Server, out io.Writer) (stop func(), err error) {
	svc := execution.New(srv.Store(), execution.Options{
		InputLimits: worker.Limits{MaxDepth: c.MaxInputDepth, MaxDirectories: c.MaxInputDirectories,
			MaxPaths: c.MaxInputPaths, MaxBytes: c.MaxInputBytes},
		MaxRetainedOperations: c.MaxRetainedOperations, OperationRetention: c.OperationRetention,
		Streams:    clientlimit.Limits{MaxPerClient: c.MaxClientExecutes},
		Registerer: srv.Registerer(), Logger: srv.Logger(),
	})
	srv.RegisterExecution(svc, svc.ExecutionCapabilities())
	svc.RegisterScheduler(srv.GRPC())
	if c.Workers <= 0 {
		fmt.Fprintf(out, "ferrule serve: remote execution on; no in-process workers (start `ferrule worker --scheduler ADDRESS`)\n")
		return func() {}, nil
	}
	dir := c.WorkerDir
	if dir == "" {
		dir = filepath.Join(c.Dir, "workers")
	}
	wctx, cancel := context.WithCancel(ctx)
	wait, err := svc.StartLocalWorkers(wctx, c.Workers, execution.LocalWorkerOptions{
		Dir: dir, Platform: workerPlatform(c.WorkerPlatform), NoNamespaces: c.WorkerNoNamespaces,
		ActionLimits: worker.ActionLimits{OutputBytes: c.ActionMaxOutputBytes},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("execution: %w", err)
	}
	fmt.Fprintf(out, "ferrule serve: remote execution on with %d in-process worker(s) in %s\n", c.Workers, dir)
	return func() { cancel(); wait() }, nil
}

func init() {
	register(&command{
		name:    "serve",
		summary: "run the REAPI cache server (gRPC and Bazel's HTTP cache protocol)",
		usage:   "[flags]",
		run: func(fs *flag.FlagSet, args []string) error {
			c, err := loadServeConfig(fs, args)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, c, os.Stdout)
		},
	})
}
