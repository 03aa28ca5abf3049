package execution

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/worker"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A remote worker that reports an output directory without a tree digest:
// the operation fails, nothing is cached, and a later Execute of the same
// action runs it again instead of being served the bad result.
func TestWorkerResultWithoutTreeDigestIsRejected(t *testing.T) {
	e := newEnv(t, Options{}, false)
	cmd := shCommand("mkdir out")
	cmd.OutputDirectories = []string{"out"}
	ad := e.action(cmd, nil, nil)

	sess := joinHandWorker(t, e, "hostile")
	stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sess.Recv()
	if err != nil || m.GetLease() == nil {
		t.Fatalf("lease: %v %v", m, err)
	}
	bad, _ := proto.Marshal(&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out"}}})
	if err := sess.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.LeaseResult{
		LeaseId: m.GetLease().LeaseId, ActionResult: bad}}}); err != nil {
		t.Fatal(err)
	}
	_, resp := e.drain(stream)
	if codes.Code(resp.Status.GetCode()) != codes.Internal || resp.Result != nil {
		t.Fatalf("status %v result %v, want INTERNAL without a result", resp.Status, resp.Result)
	}
	key := ac.ResultKey("", fn, ad.Hash)
	if miss, err := e.st.FindMissing(e.ctx, []store.Key{key}); err != nil || len(miss) != 1 {
		t.Fatalf("the malformed result was cached (missing %v, err %v)", miss, err)
	}
	sess.CloseSend()
	e.startWorkers(1)
	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: ad})
	if resp.Status.GetCode() != 0 || resp.CachedResult || len(resp.Result.GetOutputDirectories()) != 1 || resp.Result.OutputDirectories[0].TreeDigest == nil {
		t.Fatalf("rerun: status %v cached %v result %v", resp.Status, resp.CachedResult, resp.Result)
	}
}

// Finished operations are bounded in number: past MaxRetainedOperations the
// oldest are forgotten (WaitExecution: NOT_FOUND), the newest stay.
func TestRetainedOperationsAreBounded(t *testing.T) {
	e := newEnv(t, Options{MaxRetainedOperations: 3}, false)
	missing := &repb.Digest{Hash: strings.Repeat("0", 64), SizeBytes: 1}
	var names []string
	for i := 0; i < 10; i++ {
		ops, _ := e.run(&repb.ExecuteRequest{ActionDigest: missing})
		names = append(names, ops[0].Name)
	}
	if n := e.svc.Stats().Operations; n != 3 {
		t.Fatalf("%d operations retained, want 3", n)
	}
	wait := func(name string) error {
		ws, err := e.exec.WaitExecution(e.ctx, &repb.WaitExecutionRequest{Name: name})
		if err != nil {
			return err
		}
		_, err = ws.Recv()
		return err
	}
	if err := wait(names[0]); status.Code(err) != codes.NotFound {
		t.Errorf("WaitExecution of the oldest operation: %v, want NOT_FOUND", err)
	}
	if err := wait(names[9]); err != nil {
		t.Errorf("WaitExecution of the newest operation: %v", err)
	}
}

// Finished operations older than OperationRetention are forgotten.
func TestRetainedOperationsExpire(t *testing.T) {
	e := newEnv(t, Options{OperationRetention: 10 * time.Millisecond}, false)
	missing := &repb.Digest{Hash: strings.Repeat("0", 64), SizeBytes: 1}
	for i := 0; i < 5; i++ {
		e.run(&repb.ExecuteRequest{ActionDigest: missing})
	}
	time.Sleep(20 * time.Millisecond)
	e.run(&repb.ExecuteRequest{ActionDigest: missing})
	if n := e.svc.Stats().Operations; n != 1 {
		t.Fatalf("%d operations retained, want 1", n)
	}
}

// Execute checks instance names as the CAS does: a name the CAS refuses is
// INVALID_ARGUMENT here too, before anything is read or run.
func TestExecuteChecksInstanceNames(t *testing.T) {
	e := newEnv(t, Options{}, false)
	ad := e.action(shCommand("true"), nil, nil)
	for _, name := range []string{"blobs", "a/../b", "a//b", "x\\y", "tab\there", strings.Repeat("n", 300)} {
		stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{InstanceName: name, ActionDigest: ad})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Execute with instance %q: %v, want INVALID_ARGUMENT", name, err)
		}
	}
}

// panickingGets is a buggy backend: Get of one blob panics.
type panickingGets struct {
	store.Store
	hash string
}

func (p panickingGets) Get(ctx context.Context, k store.Key, off int64) (io.ReadCloser, int64, error) {
	if k.Hash == p.hash {
		panic("backend bug")
	}
	return p.Store.Get(ctx, k, off)
}

// A panic inside an in-process worker (here in the store, fetching an
// input) is that action's INTERNAL outcome; the worker and the server
// carry on with the next action.
func TestLocalWorkerPanicIsInternal(t *testing.T) {
	poison := []byte("the blob whose read panics")
	pd, _ := digest.Of(fn, poison)
	e := newEnvOn(t, panickingGets{Store: memory.New(1 << 30), hash: pd.Hash}, Options{}, false)
	e.startWorkers(1)
	e.put(poison)
	root := &repb.Directory{Files: []*repb.FileNode{{Name: "in", Digest: pd}}}
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("cat in"), root, nil)})
	if codes.Code(resp.Status.GetCode()) != codes.Internal {
		t.Fatalf("status %v, want INTERNAL", resp.Status)
	}
	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("echo next"), nil, nil)})
	if resp.Status.GetCode() != 0 || string(e.get(resp.Result.StdoutDigest)) != "next\n" {
		t.Fatalf("the next action: status %v", resp.Status)
	}
}

// A DAG with two edges per level (2^64 paths from 65 Directory blobs)
// passes the per-digest walk but is refused at admission by the path
// limit, naming it, and the refusal is counted; no worker is involved.
func TestAdmissionRefusesDoublingTree(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Options{Registerer: reg}, false)
	file := e.put([]byte("leaf"))
	d := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file}}}
	for i := 0; i < 64; i++ {
		sub := e.putMsg(d)
		d = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: sub}, {Name: "b", Digest: sub}}}
	}
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("true"), d, nil)})
	if codes.Code(resp.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(resp.Status.GetMessage(), worker.LimitPaths) {
		t.Fatalf("status %v, want INVALID_ARGUMENT naming %s", resp.Status, worker.LimitPaths)
	}
	if n := e.svc.Refusals(worker.LimitPaths); n != 1 {
		t.Errorf("%v refusals counted, want 1", n)
	}
	mfs, err := reg.Gather()
	found := false
	for _, mf := range mfs {
		found = found || (mf.GetName() == "ferrule_execution_refusals_total" && len(mf.Metric) == 1 && mf.Metric[0].GetCounter().GetValue() == 1)
	}
	if err != nil || !found {
		t.Errorf("ferrule_execution_refusals_total not registered with one refusal (%v)", err)
	}
	// A deep chain is refused by the depth limit.
	e2 := newEnv(t, Options{InputLimits: worker.Limits{MaxDepth: 10}}, false)
	deep := &repb.Directory{}
	for i := 0; i < 11; i++ {
		deep = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: e2.putMsg(deep)}}}
	}
	_, resp = e2.run(&repb.ExecuteRequest{ActionDigest: e2.action(shCommand("true"), deep, nil)})
	if codes.Code(resp.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(resp.Status.GetMessage(), worker.LimitDepth) {
		t.Fatalf("status %v, want INVALID_ARGUMENT naming %s", resp.Status, worker.LimitDepth)
	}
}

// TestExecuteStreamsPerClient: a client holding max_execute_streams_per_client
// Execute streams is refused another (RESOURCE_EXHAUSTED naming the limit,
// counted); one ending makes room.
func TestExecuteStreamsPerClient(t *testing.T) {
	e := newEnv(t, Options{Streams: clientlimit.Limits{MaxPerClient: 2, Wait: -1}}, true)
	e.startWorkers(1) // busy with the first action; the second waits
	var cancels []context.CancelFunc
	for i := range 2 {
		ad := e.action(shCommand(fmt.Sprint("sleep 60; echo ", i)), nil, nil)
		ctx, cancel := context.WithCancel(e.ctx)
		cancels = append(cancels, cancel)
		stream, err := e.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil { // queued or running
			t.Fatal(err)
		}
	}
	third := func() error {
		stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: e.action(shCommand("echo third"), nil, nil)})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	err := third()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), clientlimit.ExecuteStreams.LimitPerClient) {
		t.Fatalf("third stream: %v, want RESOURCE_EXHAUSTED naming %s", err, clientlimit.ExecuteStreams.LimitPerClient)
	}
	if n := e.svc.streams.Refused(clientlimit.ExecuteStreams.LimitPerClient); n != 1 {
		t.Errorf("%v refusals counted, want 1", n)
	}
	cancels[0]()
	for i := 0; e.svc.streams.Open() != 1; i++ {
		if i > 10000 {
			t.Fatalf("%d streams open after one was cancelled", e.svc.streams.Open())
		}
		time.Sleep(time.Millisecond)
	}
	if err := third(); err != nil {
		t.Fatalf("a stream after one ended: %v", err)
	}
	cancels[1]()
}

// TestOutputLimit: an action whose outputs (counted per path, stdout and
// stderr included) exceed the workers' action_max_output_bytes fails with
// RESOURCE_EXHAUSTED naming the limit; nothing of it is cached or uploaded,
// the refusal is counted, an action within the limit runs, and an action
// may lower the limit with a platform property.
func TestOutputLimit(t *testing.T) {
	e := newEnv(t, Options{}, false)
	if _, err := e.svc.StartLocalWorkers(e.ctx, 1, LocalWorkerOptions{Dir: t.TempDir(), Platform: e.props,
		ActionLimits: worker.ActionLimits{OutputBytes: 1000}}); err != nil {
		t.Fatal(err)
	}
	// Two outputs of 600 bytes with the same content: 1,200 bytes by path.
	big := e.action(shCommand("head -c 600 /dev/zero > a; cp a b", "a", "b"), nil, nil)
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: big})
	if codes.Code(resp.Status.GetCode()) != codes.ResourceExhausted || !strings.Contains(resp.Status.GetMessage(), worker.LimitOutputBytes) {
		t.Fatalf("status %v, want RESOURCE_EXHAUSTED naming %s", resp.Status, worker.LimitOutputBytes)
	}
	if resp.Result != nil {
		t.Errorf("a result came with the refusal: %v", resp.Result)
	}
	if _, _, err := e.st.Get(e.ctx, ac.ResultKey("", fn, big.Hash), 0); err == nil {
		t.Error("the refused action's result was cached")
	}
	zeros, _ := digest.Of(fn, make([]byte, 600))
	if missing, err := e.st.FindMissing(e.ctx, []store.Key{{Kind: store.CAS, Function: fn, Hash: zeros.Hash, Size: zeros.SizeBytes}}); err != nil || len(missing) != 1 {
		t.Errorf("the refused action's output was uploaded (missing %v, %v)", missing, err)
	}
	if n := e.svc.Refusals(worker.LimitOutputBytes); n != 1 {
		t.Errorf("%v refusals counted, want 1", n)
	}

	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("head -c 600 /dev/zero > a", "a"), nil, nil)})
	if resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 0 || len(resp.Result.GetOutputFiles()) != 1 {
		t.Fatalf("an action within the limit: status %v result %v", resp.Status, resp.Result)
	}

	lowered := e.action(shCommand("head -c 600 /dev/zero > c", "c"), nil, func(a *repb.Action) {
		a.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: worker.PropMaxOutput, Value: "100"}}}
	})
	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: lowered})
	if codes.Code(resp.Status.GetCode()) != codes.ResourceExhausted {
		t.Fatalf("status %v with %s=100, want RESOURCE_EXHAUSTED", resp.Status, worker.PropMaxOutput)
	}
	// Stdout counts too.
	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("head -c 1200 /dev/zero"), nil, nil)})
	if codes.Code(resp.Status.GetCode()) != codes.ResourceExhausted {
		t.Fatalf("status %v for 1,200 bytes of stdout, want RESOURCE_EXHAUSTED", resp.Status)
	}
	// So does the Tree of an output directory: 200 empty files.
	dirCmd := shCommand("mkdir d; for i in $(seq 200); do : > d/file-$i; done")
	dirCmd.OutputDirectories = []string{"d"}
	_, resp = e.run(&repb.ExecuteRequest{ActionDigest: e.action(dirCmd, nil, nil)})
	if codes.Code(resp.Status.GetCode()) != codes.ResourceExhausted {
		t.Fatalf("status %v for an output directory of 200 files, want RESOURCE_EXHAUSTED", resp.Status)
	}
	if n := e.svc.Refusals(worker.LimitOutputBytes); n != 4 {
		t.Errorf("%v refusals counted, want 4", n)
	}
}
