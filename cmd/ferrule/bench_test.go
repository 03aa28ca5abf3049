package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrule-build/ferrule/remote/certs/certstest"
)

func TestBenchAddr(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:9092":         "localhost:9092",
		"grpc://127.0.0.1:9092":  "127.0.0.1:9092",
		"grpc://[::1]:9092/":     "[::1]:9092",
		":9092":                  "localhost:9092",
		"grpcs://localhost:9092": "localhost:9092",
	} {
		got, useTLS, err := benchAddr(in)
		if err != nil || got != want || useTLS != strings.HasPrefix(in, "grpcs://") {
			t.Errorf("benchAddr(%q) = %q, %v, %v; want %q", in, got, useTLS, err, want)
		}
	}
	for _, in := range []string{"", "localhost", "http://localhost:8080", "localhost:"} {
		if got, _, err := benchAddr(in); err == nil {
			t.Errorf("benchAddr(%q) = %q, want an error", in, got)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, a := range []string{"127.0.0.1:1", "[::1]:1", "127.8.9.10:1"} {
		if err := checkLoopback(a); err != nil {
			t.Errorf("checkLoopback(%q) = %v", a, err)
		}
	}
	for _, a := range []string{"10.1.2.3:9092", "[2001:db8::1]:9092", "0.0.0.0:9092"} {
		if err := checkLoopback(a); err == nil || !strings.Contains(err.Error(), "--allow-remote") {
			t.Errorf("checkLoopback(%q) = %v, want a refusal naming --allow-remote", a, err)
		}
	}
}

func TestBenchRefusesRemoteAddress(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--addr", "10.1.2.3:9092", "--duration", "1s"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "not a loopback address") {
		t.Errorf("stderr: %q", errb.String())
	}
}

func TestBenchUnknownWorkloadIsUsageError(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--addr", "127.0.0.1:1", "--workloads", "findmissing,nope"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2; stderr: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), `unknown workload "nope"`) {
		t.Errorf("stderr: %q", errb.String())
	}
}

func TestBenchUnreachableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--addr", addr, "--duration", "1s"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "cannot reach a REAPI server at "+addr) {
		t.Errorf("stderr: %q", errb.String())
	}
}

func TestBenchBadSize(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--large-size", "lots"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2; stderr: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "invalid size") {
		t.Errorf("stderr: %q", errb.String())
	}
}

func TestBenchCompareNeedsTwoFiles(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--compare", "only.json"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2; stderr: %s", code, errb.String())
	}
	if code := run([]string{"bench", "--compare", "/nonexistent/a.json", "/nonexistent/b.json"}, &out, &errb); code != 1 {
		t.Fatalf("missing files: exit %d, want 1; stderr: %s", code, errb.String())
	}
}

// ferrule bench against a server with TLS and tokens.
func TestBenchTLSAndToken(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, dir, "ca")
	sc := ca.Server(t, dir, "server")
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("bench writer bench-token-0123456789\n"), 0o600)
	c, err := loadForTest(t, "--store", "memory", "--grpc_address", "127.0.0.1:0", "--http_address", "none",
		"--tls_cert_file", sc.Cert, "--tls_key_file", sc.Key, "--token_file", tokens)
	if err != nil {
		t.Fatal(err)
	}
	srv, _, stop := startServe(t, c)
	defer stop()
	addr := "grpcs://" + srv.GRPCAddr().String()
	args := []string{"bench", "--addr", addr, "--tls_ca_file", ca.File, "--workloads", "findmissing,batch-write", "--count", "20", "--small-pool", "20", "--duration", "10s"}
	var out, errb bytes.Buffer
	if code := run(append(args, "--token", "bench-token-0123456789"), &out, &errb); code != 0 {
		t.Fatalf("with the token: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run(args, &out, &errb); code == 0 || !strings.Contains(out.String()+errb.String(), "Unauthenticated") {
		t.Fatalf("without the token: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
}
