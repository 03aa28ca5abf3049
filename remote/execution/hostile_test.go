package execution

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"google.golang.org/grpc/codes"
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

	sess, err := workerpb.NewSchedulerClient(e.conn).Session(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &workerpb.Hello{WorkerId: "hostile", Concurrency: 1}
	for _, p := range e.props {
		hello.Platform = append(hello.Platform, &workerpb.Property{Name: p.Name, Value: p.Value})
	}
	if err := sess.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if m, err := sess.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("welcome: %v %v", m, err)
	}
	waitFor(t, "the hostile worker to join", func() bool { return e.svc.Stats().Workers == 1 })
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
	key := store.Key{Kind: store.AC, Function: fn, Hash: ad.Hash, Size: ad.SizeBytes}
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
