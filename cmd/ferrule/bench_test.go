package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

func TestBenchAddr(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:9092":        "localhost:9092",
		"grpc://127.0.0.1:9092": "127.0.0.1:9092",
		"grpc://[::1]:9092/":    "[::1]:9092",
		":9092":                 "localhost:9092",
	} {
		got, err := benchAddr(in)
		if err != nil || got != want {
			t.Errorf("benchAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "localhost", "grpcs://localhost:9092", "http://localhost:8080", "localhost:"} {
		if got, err := benchAddr(in); err == nil {
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
