package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/s3/s3test"
)

// Bad S3 settings stop `ferrule serve` at start-up with an error naming
// the setting and a non-zero exit.
func TestServeS3BadInput(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "serve-bad")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	credFile := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(credFile, []byte("[other]\naws_access_key_id = x\naws_secret_access_key = y\n"), 0o600)
	base := []string{"serve", "--dir", t.TempDir(), "--grpc_address", "127.0.0.1:0", "--http_address", "none", "--s3.disable_ssl"}
	for _, tc := range []struct {
		name string
		env  [2]string // access key, secret
		args []string
		want string
	}{
		{"wrong secret", [2]string{s3test.Access, "wrong"}, []string{"--s3.endpoint", srv.Addr, "--s3.bucket", "serve-bad"}, "refused the credentials"},
		{"no credentials", [2]string{"", ""}, []string{"--s3.endpoint", srv.Addr, "--s3.bucket", "serve-bad"}, "AWS_ACCESS_KEY_ID"},
		{"missing bucket", [2]string{s3test.Access, s3test.Secret}, []string{"--s3.endpoint", srv.Addr, "--s3.bucket", "no-such-bucket"}, `--s3.bucket "no-such-bucket" does not exist`},
		{"unreachable", [2]string{s3test.Access, s3test.Secret}, []string{"--s3.endpoint", closed, "--s3.bucket", "serve-bad"}, "(--s3.endpoint) unreachable"},
		{"bucket without endpoint", [2]string{s3test.Access, s3test.Secret}, []string{"--s3.bucket", "serve-bad"}, "both --s3.endpoint and --s3.bucket"},
		{"unknown auth method", [2]string{s3test.Access, s3test.Secret}, []string{"--s3.endpoint", srv.Addr, "--s3.bucket", "serve-bad", "--s3.auth_method", "magic"}, `unknown --s3.auth_method "magic"`},
		{"profile not in file", [2]string{"", ""}, []string{"--s3.endpoint", srv.Addr, "--s3.bucket", "serve-bad", "--s3.auth_method", "aws_credentials_file", "--s3.aws_shared_credentials_file", credFile}, "--s3.aws_profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tc.env[0])
			t.Setenv("AWS_SECRET_ACCESS_KEY", tc.env[1])
			var out, errb bytes.Buffer
			code := run(append(append([]string(nil), base...), tc.args...), &out, &errb)
			if code == 0 {
				t.Fatalf("serve exited 0\n%s", out.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d; stderr does not say %q:\n%s", code, tc.want, errb.String())
			}
		})
	}
}

// The S3 settings are read from the config file under the flags' names.
func TestServeS3ConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "serve.yaml")
	os.WriteFile(file, []byte("s3.endpoint: s3.example.com\ns3.bucket: cache\ns3.prefix: ci\ns3.async_upload: true\nmax_queued_uploads: 7\n"), 0o644)
	c, err := loadForTest(t, "--config_file", file, "--s3.prefix", "flag")
	if err != nil {
		t.Fatal(err)
	}
	if c.S3Endpoint != "s3.example.com" || c.S3Bucket != "cache" || !c.S3AsyncUpload || c.MaxQueuedUploads != 7 {
		t.Errorf("file settings not applied: %+v", c)
	}
	if c.S3Prefix != "flag" {
		t.Errorf("--s3.prefix did not override the file: %q", c.S3Prefix)
	}
	if c.S3AuthMethod != "access_key" || c.NumUploaders != 16 {
		t.Errorf("defaults: auth method %q, uploaders %d", c.S3AuthMethod, c.NumUploaders)
	}
}

func getStatus(t *testing.T, srv *server.Server) server.Status {
	t.Helper()
	resp, err := http.Get("http://" + srv.HTTPAddr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st server.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// `ferrule serve` in front of a bucket: /status shows the S3 tier's
// health, degraded with the cause while S3 is down (and writes are
// UNAVAILABLE), /metrics counts its uploads.
func TestServeS3Status(t *testing.T) {
	s3srv := s3test.Start(t)
	s3srv.MakeBucket(t, "serve-status")
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.Access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.Secret)
	c, err := loadForTest(t, "--grpc_address", "127.0.0.1:0", "--http_address", "127.0.0.1:0", "--dir", t.TempDir(),
		"--s3.endpoint", s3srv.Addr, "--s3.bucket", "serve-status", "--s3.prefix", "ci", "--s3.disable_ssl")
	if err != nil {
		t.Fatal(err)
	}
	srv, out, stop := startServe(t, c)
	defer stop()
	if st := getStatus(t, srv); st.SharedTier == nil || !st.SharedTier.Healthy || !strings.Contains(st.SharedTier.Name, "s3://serve-status/ci") {
		t.Fatalf("/status shared tier: %+v", st.SharedTier)
	}
	if !strings.Contains(out.String(), "in front of s3://serve-status/ci") {
		t.Errorf("output does not name the bucket:\n%s", out.String())
	}
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cas := repb.NewContentAddressableStorageClient(conn)
	upload := func(data []byte) error {
		d, _ := digest.Of(repb.DigestFunction_SHA256, data)
		resp, err := cas.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{
			Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}}, grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		if s := resp.Responses[0].Status; s.GetCode() != 0 {
			return status.ErrorProto(s)
		}
		return nil
	}
	if err := upload([]byte("to the bucket")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `ferrule_shared_uploads_total{result="ok"} 1`) {
		t.Errorf("/metrics lacks one ok upload:\n%s", grepLines(string(metrics), "ferrule_shared"))
	}

	s3srv.Stop()
	// A lookup of what the disk lacks reaches for S3, is answered from
	// the disk, and shows the outage in /status.
	absent := &repb.Digest{Hash: strings.Repeat("0", 64), SizeBytes: 1}
	fm, err := cas.FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{absent}})
	if err != nil || len(fm.MissingBlobDigests) != 1 {
		t.Errorf("FindMissingBlobs with S3 down: %v, %v; want the digest missing", fm, err)
	}
	if st := getStatus(t, srv); st.SharedTier == nil || st.SharedTier.Healthy || st.SharedTier.Cause == "" {
		t.Errorf("/status after a lookup with S3 down: %+v, want degraded with the cause", st.SharedTier)
	}
	err = upload([]byte("while S3 is down"))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "S3") {
		t.Errorf("write with S3 down: %v, want UNAVAILABLE naming S3", err)
	}
	st := getStatus(t, srv)
	if st.SharedTier == nil || st.SharedTier.Healthy || st.SharedTier.Cause == "" {
		t.Errorf("/status with S3 down: %+v, want degraded with the cause", st.SharedTier)
	}
	s3srv.Restart(t)
	s3test.WaitHealthy(t, func() store.Health { return *getStatus(t, srv).SharedTier })
	if err := upload([]byte("after S3 is back")); err != nil {
		t.Errorf("write after recovery: %v", err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
