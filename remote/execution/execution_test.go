package execution

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/worker"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

const fn = repb.DigestFunction_SHA256

type env struct {
	t     testing.TB
	st    store.Store
	svc   *Service
	exec  repb.ExecutionClient
	conn  *grpc.ClientConn
	addr  string // TCP address when listening on TCP
	ctx   context.Context
	props []*repb.Platform_Property
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv starts the Execution, Scheduler, CAS and ByteStream services on
// bufconn (or TCP when tcp is set, for worker subprocesses).
func newEnv(t testing.TB, opts Options, tcp bool) *env {
	t.Helper()
	return newEnvOn(t, memory.New(1<<30), opts, tcp)
}

// newEnvOn is newEnv over the store st.
func newEnvOn(t testing.TB, st store.Store, opts Options, tcp bool) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	svc := New(st, opts)
	g := grpc.NewServer()
	svc.Register(g)
	cas.New(st, cas.Options{}).Register(g)
	bytestream.New(st, bytestream.Options{}).Register(g)
	var lis net.Listener
	var dial []grpc.DialOption
	target := "passthrough:///bufnet"
	if tcp {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis = l
		target = l.Addr().String()
	} else {
		bl := bufconn.Listen(1 << 20)
		lis = bl
		dial = append(dial, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return bl.DialContext(ctx) }))
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(target, append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e := &env{t: t, st: st, svc: svc, exec: repb.NewExecutionClient(conn), conn: conn, ctx: ctx, props: worker.DefaultPlatform()}
	if tcp {
		e.addr = lis.Addr().String()
	}
	return e
}

func (e *env) startWorkers(n int) {
	e.t.Helper()
	wait, err := e.svc.StartLocalWorkers(e.ctx, n, LocalWorkerOptions{Dir: e.t.TempDir(), Platform: e.props})
	if err != nil {
		e.t.Fatal(err)
	}
	_ = wait
}

func (e *env) put(data []byte) *repb.Digest {
	e.t.Helper()
	d, err := digest.Of(fn, data)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.Put(e.ctx, store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(data)); err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) putMsg(m proto.Message) *repb.Digest {
	e.t.Helper()
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.put(data)
}

func digestOfMsg(t *testing.T, m proto.Message) *repb.Digest {
	data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	d, err := digest.Of(fn, data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) get(d *repb.Digest) []byte {
	e.t.Helper()
	rc, _, err := e.st.Get(e.ctx, store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, 0)
	if err != nil {
		e.t.Fatalf("get %s: %v", d.Hash, err)
	}
	defer rc.Close()
	data, _ := io.ReadAll(rc)
	return data
}

// shCommand is a Command running script with /bin/sh and PATH set.
func shCommand(script string, outputs ...string) *repb.Command {
	return &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", script},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
		OutputFiles:          outputs,
	}
}

// action stores cmd, an input root and the Action, and returns the Action's
// digest.
func (e *env) action(cmd *repb.Command, root *repb.Directory, mod func(*repb.Action)) *repb.Digest {
	e.t.Helper()
	if root == nil {
		root = &repb.Directory{}
	}
	a := &repb.Action{CommandDigest: e.putMsg(cmd), InputRootDigest: e.putMsg(root)}
	if mod != nil {
		mod(a)
	}
	return e.putMsg(a)
}

// run calls Execute and returns every Operation streamed, and the response
// of the last one.
func (e *env) run(req *repb.ExecuteRequest) ([]*longrunningpb.Operation, *repb.ExecuteResponse) {
	e.t.Helper()
	stream, err := e.exec.Execute(e.ctx, req)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.drain(stream)
}

type opRecv interface {
	Recv() (*longrunningpb.Operation, error)
}

func (e *env) drain(stream opRecv) ([]*longrunningpb.Operation, *repb.ExecuteResponse) {
	e.t.Helper()
	var ops []*longrunningpb.Operation
	for {
		op, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			e.t.Fatalf("stream: %v", err)
		}
		if op.GetError() != nil {
			e.t.Fatalf("Operation.error set: %v", op.GetError())
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 || !ops[len(ops)-1].Done {
		e.t.Fatalf("stream ended without a done operation (%d messages)", len(ops))
	}
	resp := &repb.ExecuteResponse{}
	if err := ops[len(ops)-1].GetResponse().UnmarshalTo(resp); err != nil {
		e.t.Fatal(err)
	}
	return ops, resp
}

func stageOf(t *testing.T, op *longrunningpb.Operation) repb.ExecutionStage_Value {
	md := &repb.ExecuteOperationMetadata{}
	if err := op.Metadata.UnmarshalTo(md); err != nil {
		t.Fatal(err)
	}
	return md.Stage
}

func TestExecuteRunsCachesAndSkipsCache(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	ad := e.action(shCommand("echo hello; printf data > out/result.txt", "out/result.txt"), nil, nil)

	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if resp.Status.GetCode() != 0 || resp.Result == nil {
		t.Fatalf("execute: %v", resp.Status)
	}
	if resp.CachedResult {
		t.Error("first run reported as cached")
	}
	if got := string(e.get(resp.Result.StdoutDigest)); got != "hello\n" {
		t.Errorf("stdout = %q", got)
	}
	if len(resp.Result.OutputFiles) != 1 || resp.Result.OutputFiles[0].Path != "out/result.txt" || string(e.get(resp.Result.OutputFiles[0].Digest)) != "data" {
		t.Fatalf("outputs = %v", resp.Result.OutputFiles)
	}
	if resp.Result.ExecutionMetadata.GetWorker() == "" || resp.Result.ExecutionMetadata.GetQueuedTimestamp() == nil {
		t.Errorf("metadata incomplete: %v", resp.Result.ExecutionMetadata)
	}
	// In the action cache now.
	if _, _, err := e.st.Get(e.ctx, ac.ResultKey("", fn, ad.Hash), 0); err != nil {
		t.Fatalf("result not in the action cache: %v", err)
	}
	_, resp2 := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if !resp2.CachedResult || resp2.Status.GetCode() != 0 {
		t.Errorf("second run: cached=%v status=%v", resp2.CachedResult, resp2.Status)
	}
	_, resp3 := e.run(&repb.ExecuteRequest{ActionDigest: ad, SkipCacheLookup: true})
	if resp3.CachedResult || resp3.Status.GetCode() != 0 || resp3.Result == nil {
		t.Errorf("skip_cache_lookup run: cached=%v status=%v", resp3.CachedResult, resp3.Status)
	}
}

func TestCachedResultWithEvictedOutputIsNotServed(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	ad := e.action(shCommand("printf x > o"), nil, nil)
	// A cached result whose output blob is not in the CAS.
	res := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: &repb.Digest{Hash: strings.Repeat("ab", 32), SizeBytes: 5}}}}
	data, _ := proto.Marshal(res)
	if err := e.st.Put(e.ctx, ac.ResultKey("", fn, ad.Hash), int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if resp.CachedResult {
		t.Fatal("served a cached result whose outputs are missing")
	}
	if resp.Status.GetCode() != 0 {
		t.Fatalf("status %v", resp.Status)
	}
}

func TestDoNotCache(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	ad := e.action(shCommand("echo x"), nil, func(a *repb.Action) { a.DoNotCache = true })
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 0 {
		t.Fatalf("status %v", resp.Status)
	}
	if _, _, err := e.st.Get(e.ctx, ac.ResultKey("", fn, ad.Hash), 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("do_not_cache result was cached (err=%v)", err)
	}
}

func TestFailedActionIsNotCached(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	ad := e.action(shCommand("echo boom >&2; exit 3"), nil, nil)
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 3 {
		t.Fatalf("status %v exit %d", resp.Status, resp.Result.GetExitCode())
	}
	if got := string(e.get(resp.Result.StderrDigest)); got != "boom\n" {
		t.Errorf("stderr = %q", got)
	}
	if _, _, err := e.st.Get(e.ctx, ac.ResultKey("", fn, ad.Hash), 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed result was cached (err=%v)", err)
	}
}

func violations(t *testing.T, resp *repb.ExecuteResponse) []string {
	t.Helper()
	var out []string
	for _, d := range status.FromProto(resp.Status).Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.Violations {
				if v.Type != "MISSING" {
					t.Errorf("violation type %q", v.Type)
				}
				out = append(out, v.Subject)
			}
		}
	}
	return out
}

func TestMissingAction(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	ad := digestOfMsg(t, &repb.Action{DoNotCache: true})
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if codes.Code(resp.Status.GetCode()) != codes.FailedPrecondition {
		t.Fatalf("status %v", resp.Status)
	}
	want := "blobs/" + ad.Hash + "/" + fmtInt(ad.SizeBytes)
	if v := violations(t, resp); len(v) != 1 || v[0] != want {
		t.Fatalf("violations %v, want [%s]", v, want)
	}
}

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

func TestMissingCommandAndInputs(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	cmd := shCommand("cat in.txt")
	cmdDigest := digestOfMsg(t, cmd) // not stored
	fileDigest, _ := digest.Of(fn, []byte("not uploaded"))
	subDir := &repb.Directory{Files: []*repb.FileNode{{Name: "x", Digest: e.put([]byte("present"))}}}
	subDigest := digestOfMsg(t, subDir) // not stored
	root := &repb.Directory{
		Files:       []*repb.FileNode{{Name: "in.txt", Digest: fileDigest}},
		Directories: []*repb.DirectoryNode{{Name: "sub", Digest: subDigest}},
	}
	ad := e.putMsg(&repb.Action{CommandDigest: cmdDigest, InputRootDigest: e.putMsg(root)})
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if codes.Code(resp.Status.GetCode()) != codes.FailedPrecondition {
		t.Fatalf("status %v", resp.Status)
	}
	got := map[string]bool{}
	for _, v := range violations(t, resp) {
		got[v] = true
	}
	for _, d := range []*repb.Digest{cmdDigest, fileDigest, subDigest} {
		s := "blobs/" + d.Hash + "/" + fmtInt(d.SizeBytes)
		if !got[s] {
			t.Errorf("missing violation for %s; got %v", s, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("got %d violations, want 3: %v", len(got), got)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	for name, req := range map[string]*repb.ExecuteRequest{
		"no digest":        {},
		"short hash":       {ActionDigest: &repb.Digest{Hash: "abc", SizeBytes: 3}},
		"uppercase hash":   {ActionDigest: &repb.Digest{Hash: strings.Repeat("AB", 32), SizeBytes: 3}},
		"negative size":    {ActionDigest: &repb.Digest{Hash: strings.Repeat("ab", 32), SizeBytes: -1}},
		"unknown digestfn": {ActionDigest: &repb.Digest{Hash: strings.Repeat("ab", 32), SizeBytes: 1}, DigestFunction: repb.DigestFunction_MD5},
	} {
		stream, err := e.exec.Execute(e.ctx, req)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT", name, err)
		}
	}
	// Blobs that are there but wrong: in ExecuteResponse.status.
	notAction := e.put([]byte("\xff\xff not a proto"))
	badCmd := e.action(&repb.Command{}, nil, nil)
	absOut := e.action(shCommand("true", "/etc/passwd"), nil, nil)
	dotdot := e.action(shCommand("true", "../escape"), nil, nil)
	badRoot := e.action(shCommand("true"), &repb.Directory{Files: []*repb.FileNode{{Name: "a/b", Digest: e.put([]byte("x"))}}}, nil)
	badTimeout := e.action(shCommand("true"), nil, func(a *repb.Action) { a.Timeout = durationpb.New(-time.Second) })
	tooLong := e.action(shCommand("true"), nil, func(a *repb.Action) { a.Timeout = durationpb.New(1000 * time.Hour) })
	for name, ad := range map[string]*repb.Digest{
		"unparsable action": notAction, "empty command": badCmd, "absolute output": absOut,
		"output leaves root": dotdot, "slash in name": badRoot, "negative timeout": badTimeout, "timeout above max": tooLong,
	} {
		_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
		if codes.Code(resp.Status.GetCode()) != codes.InvalidArgument {
			t.Errorf("%s: status %v, want INVALID_ARGUMENT", name, resp.Status)
		}
	}
}

func TestUnsupportedPlatform(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	cmd := shCommand("true")
	cmd.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "OSFamily", Value: "plan9"}}}
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: e.action(cmd, nil, nil)})
	if codes.Code(resp.Status.GetCode()) != codes.FailedPrecondition || !strings.Contains(resp.Status.Message, "plan9") {
		t.Fatalf("status %v", resp.Status)
	}
	// Action.platform wins over Command.platform.
	ad := e.action(cmd, nil, func(a *repb.Action) {
		a.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "OSFamily", Value: e.props[1].Value}}}
	})
	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if resp.Status.GetCode() != 0 {
		t.Fatalf("action platform not honoured: %v", resp.Status)
	}
	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: e.action(cmd, nil, func(a *repb.Action) {
		a.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "", Value: "x"}}}
	})})
	if codes.Code(resp.Status.GetCode()) != codes.InvalidArgument {
		t.Fatalf("empty property name: %v", resp.Status)
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	ad := e.action(shCommand("echo started; sleep 60; echo never"), nil, func(a *repb.Action) { a.Timeout = durationpb.New(500 * time.Millisecond) })
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if codes.Code(resp.Status.GetCode()) != codes.DeadlineExceeded {
		t.Fatalf("status %v, want DEADLINE_EXCEEDED", resp.Status)
	}
	if resp.Result == nil || string(e.get(resp.Result.StdoutDigest)) != "started\n" {
		t.Errorf("partial stdout not returned: %v", resp.Result)
	}
	if _, _, err := e.st.Get(e.ctx, ac.ResultKey("", fn, ad.Hash), 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("timed-out result was cached")
	}
}

func TestWaitExecution(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	ws, err := e.exec.WaitExecution(e.ctx, &repb.WaitExecutionRequest{Name: "operations/nope"})
	if err == nil {
		_, err = ws.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown operation: %v, want NOT_FOUND", err)
	}
	ops, resp := e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("echo w"), nil, nil)})
	ws, err = e.exec.WaitExecution(e.ctx, &repb.WaitExecutionRequest{Name: ops[0].Name})
	if err != nil {
		t.Fatal(err)
	}
	_, resp2 := e.drain(ws)
	if !proto.Equal(resp, resp2) {
		t.Errorf("WaitExecution response differs:\n%v\n%v", resp, resp2)
	}
}

// With a worker that the test drives by hand, stages, priorities and
// deduplication are observable without timing.
func TestStagesDedupeAndPriority(t *testing.T) {
	e := newEnv(t, Options{}, false)
	reg := e.svc.registerWorker("manual", e.props)
	ad := e.action(shCommand("echo a"), nil, nil)

	s1, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s1.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.Done || stageOf(t, first) != repb.ExecutionStage_QUEUED {
		t.Fatalf("first message: done=%v stage=%v", first.Done, stageOf(t, first))
	}
	s2, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad, SkipCacheLookup: true})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if second.Name != first.Name {
		t.Errorf("identical actions in flight got two operations: %s, %s", first.Name, second.Name)
	}
	if st := e.svc.Stats(); st.Queued != 1 {
		t.Fatalf("queued = %d, want 1 (merged)", st.Queued)
	}
	// Lower priority values run first; equal priorities in arrival order.
	var lowDigests []*repb.Digest
	for i, p := range []int32{5, -3, 5} {
		d := e.action(shCommand("echo p"+fmtInt(int64(i))), nil, nil)
		lowDigests = append(lowDigests, d)
		s, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: d, ExecutionPolicy: &repb.ExecutionPolicy{Priority: p}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	wantOrder := []*repb.Digest{lowDigests[1], ad, lowDigests[0], lowDigests[2]}
	var leases []string
	for i, want := range wantOrder {
		j, lease, err := e.svc.next(e.ctx, reg)
		if err != nil {
			t.Fatal(err)
		}
		if j.task.ActionDigest.Hash != want.Hash {
			t.Errorf("lease %d: got action %s, want %s", i, j.task.ActionDigest.Hash[:8], want.Hash[:8])
		}
		leases = append(leases, lease)
		if want == ad {
			// The client sees EXECUTING.
			op, err := s1.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if stageOf(t, op) != repb.ExecutionStage_EXECUTING {
				t.Errorf("stage after lease = %v", stageOf(t, op))
			}
			res := &repb.ActionResult{ExitCode: 0, StdoutDigest: e.put([]byte("a\n"))}
			e.svc.complete(lease, worker.Outcome{Result: res})
		}
	}
	_, r1 := e.drain(s1)
	_, r2 := e.drain(s2)
	if r1.Status.GetCode() != 0 || r2.Status.GetCode() != 0 || string(e.get(r1.Result.StdoutDigest)) != "a\n" || !proto.Equal(r1, r2) {
		t.Fatalf("merged executions disagree: %v / %v", r1, r2)
	}
	// A late outcome for a finished lease is ignored; a lost lease requeues.
	e.svc.complete(leases[1], worker.Outcome{Status: statusProto(codes.Internal, "late")})
	e.svc.leaseLost(leases[0], "test")
	j, _, err := e.svc.next(e.ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	if j.task.ActionDigest.Hash != lowDigests[1].Hash || j.attempts != 2 {
		t.Fatalf("requeued job: %s attempt %d", j.task.ActionDigest.Hash[:8], j.attempts)
	}
}

func TestDoNotCacheActionsAreNotMerged(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.svc.registerWorker("manual", e.props)
	ad := e.action(shCommand("echo a"), nil, func(a *repb.Action) { a.DoNotCache = true })
	var names []string
	for i := 0; i < 2; i++ {
		s, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad})
		if err != nil {
			t.Fatal(err)
		}
		op, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, op.Name)
	}
	if names[0] == names[1] || e.svc.Stats().Queued != 2 {
		t.Fatalf("do_not_cache actions merged: %v queued=%d", names, e.svc.Stats().Queued)
	}
}

func TestMaxAttempts(t *testing.T) {
	e := newEnv(t, Options{MaxAttempts: 2}, false)
	reg := e.svc.registerWorker("manual", e.props)
	ad := e.action(shCommand("echo a"), nil, nil)
	s, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, lease, err := e.svc.next(e.ctx, reg)
		if err != nil {
			t.Fatal(err)
		}
		e.svc.leaseLost(lease, "worker died")
	}
	_, resp := e.drain(s)
	if codes.Code(resp.Status.GetCode()) != codes.Unavailable {
		t.Fatalf("status %v, want UNAVAILABLE", resp.Status)
	}
}

func TestMain(m *testing.M) {
	if addr := os.Getenv("FERRULE_TEST_WORKER_SCHEDULER"); addr != "" {
		os.Exit(runTestWorker(addr, os.Getenv("FERRULE_TEST_WORKER_DIR"), os.Getenv("FERRULE_TEST_WORKER_NO_NAMESPACES") == "1"))
	}
	os.Exit(m.Run())
}
