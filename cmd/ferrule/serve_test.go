package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/server"
)

func loadForTest(t *testing.T, args ...string) (serveConfig, error) {
	t.Helper()
	fs := flag.NewFlagSet("ferrule serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadServeConfig(fs, args)
}

func TestServeDefaults(t *testing.T) {
	c, err := loadForTest(t)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddress != "localhost:9092" || c.HTTPAddress != "localhost:9090" {
		t.Errorf("default addresses %s %s", c.GRPCAddress, c.HTTPAddress)
	}
	if cache, err := os.UserCacheDir(); err == nil && c.Dir != filepath.Join(cache, "ferrule") {
		t.Errorf("default dir %s", c.Dir)
	}
	if c.MaxSize <= 0 {
		t.Errorf("default max_size %d", c.MaxSize)
	}
	if c.Store != "disk" {
		t.Errorf("default store %q, want the disk store", c.Store)
	}
	if c.StorageMode != defaultStorageMode {
		t.Errorf("default storage mode %q", c.StorageMode)
	}
}

func TestServeConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ferrule.yaml")
	os.WriteFile(file, []byte("dir: /from/file\nmax_size: 3\ngrpc_address: 127.0.0.1:1111\nupload_idle_timeout: 5s\nfastcdc_avg_chunk_size: 65536\n"), 0o644)
	c, err := loadForTest(t, "--config_file", file, "--grpc_address", "127.0.0.1:2222")
	if err != nil {
		t.Fatal(err)
	}
	if c.Dir != "/from/file" || c.MaxSize != 3<<30 || c.UploadIdleTimeout != 5*time.Second || c.FastCDCAvg != 65536 {
		t.Errorf("file settings not applied: %+v", c)
	}
	if c.GRPCAddress != "127.0.0.1:2222" {
		t.Errorf("flag did not override the file: %s", c.GRPCAddress)
	}
	os.WriteFile(file, []byte("no_such_key: 1\n"), 0o644)
	if _, err := loadForTest(t, "--config_file", file); err == nil || !strings.Contains(err.Error(), "no_such_key") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := loadForTest(t, "--config_file", filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing config file accepted")
	}
}

func TestServeUploadLimits(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ferrule.yaml")
	os.WriteFile(file, []byte("max_open_uploads: 50\nhttp_body_timeout: 3s\n"), 0o644)
	c, err := loadForTest(t, "--config_file", file, "--max_uploads_per_client", "7")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxOpenUploads != 50 || c.MaxClientUploads != 7 || c.HTTPBodyTimeout != 3*time.Second {
		t.Errorf("upload limits not applied: %d %d %v", c.MaxOpenUploads, c.MaxClientUploads, c.HTTPBodyTimeout)
	}
	for _, bad := range []string{"--max_open_uploads=0", "--max_uploads_per_client=-1", "--http_body_timeout=0s", "--max_execute_streams_per_client=0"} {
		if _, err := loadForTest(t, bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestServeBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--max_size", "0"},
		{"--max_size", "-3"},
		{"--store", "tape"},
		{"--storage_mode", "lz4"},
		{"--log_level", "loud"},
		{"--max_batch_total_size_bytes", "0"},
		{"--grpc_address", ""},
		{"--dir", ""},
		{"--fastcdc_avg_chunk_size", "3000"},
		{"--fastcdc_avg_chunk_size", "512"},
		{"--fastcdc_seed", "4294967296"},
		{"--repmaxcdc_min_chunk_size", "63"},
		{"--repmaxcdc_horizon_size", "1073741824"},
		{"--s3.endpoint", "127.0.0.1:1", "--s3.bucket", "b", "--s3.find_parallel", "0"},
		{"extra"},
	} {
		if _, err := loadForTest(t, args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"serve", "--max_size", "0"}, &out, &errb); code != 2 {
		t.Errorf("bad flag exit %d, want 2; stderr %s", code, errb.String())
	}
}

// startServe runs runServe with c until the returned stop is called.
func startServe(t *testing.T, c serveConfig) (*server.Server, *bytes.Buffer, func()) {
	t.Helper()
	ready := make(chan *server.Server, 1)
	serveReady = func(s *server.Server) { ready <- s }
	defer func() { serveReady = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	out := &bytes.Buffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, c, out) }()
	select {
	case srv := <-ready:
		return srv, out, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("serve ended: %v\n%s", err, out.String())
	}
	return nil, nil, nil
}

func TestServeRuns(t *testing.T) {
	dir := t.TempDir()
	c, err := loadForTest(t, "--grpc_address", "127.0.0.1:0", "--http_address", "127.0.0.1:0", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, out, stop := startServe(t, c)
	ctx := context.Background()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	caps, err := repb.NewCapabilitiesClient(conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{}, grpc.WaitForReady(true))
	if err != nil || caps.LowApiVersion.Major != 2 {
		t.Fatalf("capabilities: %v %v", caps, err)
	}
	blob := []byte("kept across restarts")
	d, _ := digest.Of(repb.DigestFunction_SHA256, blob)
	ws, err := bspb.NewByteStreamClient(conn).Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ws.Send(&bspb.WriteRequest{ResourceName: fmt.Sprintf("uploads/u/blobs/%s/%d", d.Hash, d.SizeBytes), Data: blob, FinishWrite: true})
	if _, err := ws.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.HTTPAddr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st server.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if !strings.Contains(st.Store, "disk store in "+dir) || st.StoreStats.Entries != 1 {
		t.Errorf("/status: %+v", st)
	}
	conn.Close()
	stop()
	for _, want := range []string{"gRPC on " + srv.GRPCAddr().String(), "HTTP on", "disk store in " + dir} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// Restart on the same directory: the blob is still there.
	srv, _, stop = startServe(t, c)
	defer stop()
	conn, err = grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rs, err := bspb.NewByteStreamClient(conn).Read(ctx, &bspb.ReadRequest{ResourceName: fmt.Sprintf("blobs/%s/%d", d.Hash, d.SizeBytes)}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rs.Recv()
	if err != nil || !bytes.Equal(r.Data, blob) {
		t.Fatalf("read after restart: %v %v", r, err)
	}
}

// The execution settings are part of serve's own configuration: from the
// config file, with repeated --worker_platform flags kept apart.
func TestServeWorkerConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(file, []byte("workers: 2\nworker_no_namespaces: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadForTest(t, "--config_file", file, "--worker_platform", "a=1", "--worker_platform", "b=2,3")
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 2 || !c.WorkerNoNamespaces {
		t.Errorf("workers %d, no namespaces %v; want 2, true", c.Workers, c.WorkerNoNamespaces)
	}
	if got := c.WorkerPlatform.String(); got != "a=1,b=2,3" || len(c.WorkerPlatform) != 2 {
		t.Errorf("worker platform %q (%d properties), want a=1 and b=2,3", got, len(c.WorkerPlatform))
	}
	if _, err := loadForTest(t, "--workers", "-1"); err == nil {
		t.Error("--workers -1 accepted")
	}
}

// The execution limits have defaults, come from the config file and the
// flags, and must be positive.
func TestServeLimitsConfig(t *testing.T) {
	c, err := loadForTest(t)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxInputDepth != 256 || c.MaxInputPaths != 4_000_000 || c.MaxRetainedOperations != 10_000 || c.OperationRetention != 10*time.Minute || c.ActionMaxOutputBytes != 64<<30 {
		t.Errorf("defaults: %+v", c)
	}
	file := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(file, []byte("max_input_depth: 64\nmax_input_bytes: 1000\nmax_retained_operations: 5\noperation_retention: 1m\naction_max_output_bytes: 4096\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = loadForTest(t, "--config_file", file, "--max_input_paths", "99")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxInputDepth != 64 || c.MaxInputBytes != 1000 || c.MaxInputPaths != 99 || c.MaxRetainedOperations != 5 || c.OperationRetention != time.Minute || c.ActionMaxOutputBytes != 4096 {
		t.Errorf("from file and flags: %+v", c)
	}
	for _, bad := range [][]string{{"--max_input_depth", "0"}, {"--max_input_paths", "-1"}, {"--max_retained_operations", "0"}, {"--operation_retention", "0s"}, {"--action_max_output_bytes", "0"}} {
		if _, err := loadForTest(t, bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestServeAuthConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(file, []byte("token_file: /etc/ferrule/tokens\nallow_unauthenticated_reads: true\ntls_cert_file: a.pem\ntls_key_file: a.key\ntls_ca_file: ca.pem\ntls_client_roles_file: roles\nhtpasswd_file: pw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadForTest(t, "--config_file", file, "--tls_ca_file", "other.pem")
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenFile != "/etc/ferrule/tokens" || !c.AllowUnauthenticatedReads || c.TLSCertFile != "a.pem" || c.TLSKeyFile != "a.key" ||
		c.TLSCAFile != "other.pem" || c.TLSClientRolesFile != "roles" || c.HtpasswdFile != "pw" {
		t.Errorf("from file and flags: %+v", c)
	}

	// A malformed token file stops start-up, naming the file and line.
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("ci writer 0123456789abcdef\nbob\n"), 0o600)
	c, err = loadForTest(t, "--store", "memory", "--grpc_address", "127.0.0.1:0", "--http_address", "none", "--token_file", tokens)
	if err != nil {
		t.Fatal(err)
	}
	if err := runServe(context.Background(), c, io.Discard); err == nil || !strings.Contains(err.Error(), tokens+" line 2") {
		t.Errorf("malformed token file: %v", err)
	}
}
