// Package s3test runs a real S3 server for tests: versitygw (installed by
// tools/setup.d/50-versitygw.sh) with its posix backend on a directory,
// listening on loopback.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/s3"
)

// Access and Secret are the server's root credentials.
const (
	Access = "ferrule-test-access"
	Secret = "ferrule-test-secret-key"
)

// Binary finds versitygw: $FERRULE_VERSITYGW, then where
// tools/setup.d/50-versitygw.sh installs it, then $PATH.
func Binary() (string, error) {
	if p := os.Getenv("FERRULE_VERSITYGW"); p != "" {
		return p, nil
	}
	cands := []string{"/var/cache/ferrule/bin/versitygw"}
	if _, file, _, ok := runtime.Caller(0); ok {
		root := filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
		cands = append(cands, filepath.Join(root, ".ferrule", "bin", "versitygw"))
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c, nil
		}
	}
	return exec.LookPath("versitygw")
}

// Server is a running versitygw.
type Server struct {
	Addr string // 127.0.0.1:port
	Dir  string // the posix backend's root: one directory per bucket
	bin  string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// Options are the s3.Options that reach bucket on this server under
// prefix, with the test credentials and path-style addressing.
func (s *Server) Options(bucket, prefix string) s3.Options {
	return s3.Options{Endpoint: s.Addr, Bucket: bucket, Prefix: prefix, DisableSSL: true,
		BucketLookup: "path", Creds: credentials.NewStaticV4(Access, Secret, "")}
}

// Start starts versitygw on a free loopback port with an empty directory
// and stops it when the test ends. Without versitygw the test is skipped,
// or fails when FERRULE_E2E=1.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		msg := "versitygw not found (run tools/setup.d/50-versitygw.sh, or set FERRULE_VERSITYGW): " + err.Error()
		if os.Getenv("FERRULE_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{Addr: addr, Dir: t.TempDir(), bin: bin}
	s.start(t)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("versitygw log:\n%s", s.log.String())
		}
	})
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	s.log = &bytes.Buffer{}
	s.cmd = exec.Command(s.bin, "--port", s.Addr, "--access", Access, "--secret", Secret, "--quiet", "posix", s.Dir)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s did not start: %v\n%s", s.Addr, err, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port and directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// Client is a minio client with the root credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(Access, Secret, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
}

// Log returns what the server printed.
func (s *Server) Log() string { return fmt.Sprint(s.log) }

// WaitHealthy waits (20 s at most) until health reports healthy, as a
// store's probe does once the server is back after an outage.
func WaitHealthy(t testing.TB, health func() store.Health) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !health().Healthy {
		if time.Now().After(deadline) {
			t.Fatalf("still unhealthy 20 s after S3 came back: %+v", health())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
