package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/worker"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestWorkerUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"worker"},
		{"worker", "--scheduler", "127.0.0.1:1", "extra"},
		{"worker", "--scheduler", "127.0.0.1:1", "--platform", "novalue"},
		{"worker", "--scheduler", "127.0.0.1:1", "--log_level", "loud"},
		{"worker", "--scheduler", "127.0.0.1:1", "--max_input_paths", "0"},
		{"worker", "--scheduler", "127.0.0.1:1", "--action_max_processes", "-1"},
		{"worker", "--scheduler", "127.0.0.1:1", "--sandbox_path", "relative/dir"},
		{"worker", "--scheduler", "127.0.0.1:1", "--tls_client_cert_file", "c.pem"},
		{"worker", "--scheduler", "127.0.0.1:1", "--token_file", "/nonexistent/token"},
	} {
		var stderr bytes.Buffer
		if code := run(args, io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}

func TestWorkerPlatform(t *testing.T) {
	p := workerPlatform(platformFlag{{Name: "ISA", Value: "riscv64"}, {Name: "pool", Value: "big"}})
	got := (*platformFlag)(&p).String()
	if !strings.Contains(got, "ISA=riscv64") || strings.Contains(got, "ISA=x86-64") || !strings.Contains(got, "pool=big") || !strings.Contains(got, "OSFamily=") {
		t.Errorf("platform %s", got)
	}
}

func TestExplainCommand(t *testing.T) {
	a, b := "../../remote/explain/testdata/machine_a.json", "../../remote/explain/testdata/machine_b.json"
	if code := run([]string{"explain", a, b}, io.Discard, io.Discard); code != 0 {
		t.Errorf("explain: exit %d", code)
	}
	if code := run([]string{"explain", a}, io.Discard, io.Discard); code != 2 {
		t.Errorf("one log: exit %d, want 2", code)
	}
	var stderr bytes.Buffer
	if code := run([]string{"explain", a, "../../remote/explain/testdata/truncated.json"}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "truncated.json") {
		t.Errorf("malformed log: exit %d, %s", code, stderr.String())
	}
}

// `ferrule serve --workers 1` executes actions.
func TestServeWithWorkersExecutes(t *testing.T) {
	dir := t.TempDir()
	c, err := loadForTest(t, "--grpc_address", "127.0.0.1:0", "--http_address", "none", "--dir", dir, "--store", "memory", "--workers", "1")
	if err != nil {
		t.Fatal(err)
	}
	srv, out, stop := startServe(t, c)
	defer stop()
	if !strings.Contains(out.String(), "1 in-process worker") {
		t.Errorf("output: %s", out.String())
	}
	ctx := context.Background()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	caps, err := repb.NewCapabilitiesClient(conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{}, grpc.WaitForReady(true))
	if err != nil || !caps.GetExecutionCapabilities().GetExecEnabled() {
		t.Fatalf("execution not advertised: %v %v", caps, err)
	}
	cas := repb.NewContentAddressableStorageClient(conn)
	upload := func(m proto.Message) *repb.Digest {
		data, _ := proto.Marshal(m)
		d, _ := digest.Of(repb.DigestFunction_SHA256, data)
		resp, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}})
		if err != nil || resp.Responses[0].Status.GetCode() != 0 {
			t.Fatalf("upload: %v %v", resp, err)
		}
		return d
	}
	cmd := &repb.Command{Arguments: []string{"/bin/sh", "-c", "echo via-serve > out"}, OutputFiles: []string{"out"}}
	ad := upload(&repb.Action{CommandDigest: upload(cmd), InputRootDigest: digest.Empty(repb.DigestFunction_SHA256)})
	stream, err := repb.NewExecutionClient(conn).Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad})
	if err != nil {
		t.Fatal(err)
	}
	var last *repb.ExecuteResponse
	for {
		op, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if op.Done {
			last = &repb.ExecuteResponse{}
			op.GetResponse().UnmarshalTo(last)
		}
	}
	if last == nil || last.Status.GetCode() != 0 || last.Result.GetExitCode() != 0 || len(last.Result.GetOutputFiles()) != 1 {
		t.Fatalf("execute via serve: %v", last)
	}
}

// refusingScheduler turns every worker away, as a server that checks
// worker tokens does with a wrong one.
type refusingScheduler struct {
	workerpb.UnimplementedSchedulerServer
}

func (refusingScheduler) Session(workerpb.Scheduler_SessionServer) error {
	return status.Error(codes.Unauthenticated, "invalid worker token")
}

// A worker whose token the scheduler refuses exits with an error naming
// the token file and the server's refusal, never the token.
func TestWorkerWithRefusedTokenExits(t *testing.T) {
	srv := grpc.NewServer()
	workerpb.RegisterSchedulerServer(srv, refusingScheduler{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("wrong-secret-token\n"), 0o600)
	var stderr bytes.Buffer
	code := run([]string{"worker", "--scheduler", lis.Addr().String(), "--token_file", tokenFile, "--chunking=false", "--no_namespaces", "--dir", filepath.Join(dir, "w")}, io.Discard, &stderr)
	msg := stderr.String()
	if code != 1 || !strings.Contains(msg, "--token_file "+tokenFile) || !strings.Contains(msg, "invalid worker token") {
		t.Fatalf("exit %d, stderr %s", code, msg)
	}
	if strings.Contains(msg, "wrong-secret-token") {
		t.Errorf("the token is in the output: %s", msg)
	}
}

// `ferrule worker` against `ferrule serve --token_file`: a wrong token and
// a token without the worker role each stop the worker with the server's
// refusal and the token file's name; the worker token gets a session.
func TestWorkerTokensAgainstServe(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("w1 worker 0123456789abcdef-worker\nci reader 0123456789abcdef-reader\n"), 0o600)
	c, err := loadForTest(t, "--grpc_address", "127.0.0.1:0", "--http_address", "none", "--store", "memory", "--workers", "0", "--token_file", tokens)
	if err != nil {
		t.Fatal(err)
	}
	srv, _, stop := startServe(t, c)
	defer stop()
	addr := srv.GRPCAddr().String()
	for _, tc := range []struct{ name, token, want string }{
		{"wrong", "0123456789abcdef-guessed", "Unauthenticated"},
		{"reader", "0123456789abcdef-reader", "PermissionDenied"},
	} {
		file := filepath.Join(dir, tc.name)
		os.WriteFile(file, []byte(tc.token+"\n"), 0o600)
		var stderr bytes.Buffer
		code := run([]string{"worker", "--scheduler", addr, "--token_file", file, "--chunking=false", "--no_namespaces", "--dir", filepath.Join(dir, "w-"+tc.name)}, io.Discard, &stderr)
		msg := stderr.String()
		if code != 1 || !strings.Contains(msg, "--token_file "+file) || !strings.Contains(msg, tc.want) {
			t.Errorf("%s token: exit %d, stderr %s", tc.name, code, msg)
		}
		t.Logf("%s: %s", tc.name, msg)
		if strings.Contains(msg, tc.token) {
			t.Errorf("%s token: the token is in the output", tc.name)
		}
	}
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("0123456789abcdef-worker\n"), 0o600)
	opts, err := worker.Credentials{TokenFile: good}.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := workerpb.NewSchedulerClient(conn).Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: &workerpb.Hello{WorkerId: "w1"}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("the worker token got no session: %v %v", m, err)
	}
}
