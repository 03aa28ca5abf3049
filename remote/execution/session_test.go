package execution

import (
	"context"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/worker"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A worker only gets actions whose platform it satisfies.
func TestPlatformRouting(t *testing.T) {
	e := newEnv(t, Options{}, false)
	small := e.svc.registerWorker("small", e.props)
	big := e.svc.registerWorker("big", append([]*repb.Platform_Property{{Name: "pool", Value: "big"}}, e.props...))
	cmd := shCommand("true")
	cmd.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "pool", Value: "big"}}}
	s, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: e.action(cmd, nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(e.ctx)
	cancel() // next returns a matching job if one is queued, else the context's error
	if j, _, err := e.svc.next(done, small); err == nil {
		t.Fatalf("worker without pool=big got %s", j.task.ActionDigest.Hash)
	}
	j, _, err := e.svc.next(done, big)
	if err != nil || j == nil {
		t.Fatalf("worker with pool=big got nothing: %v", err)
	}
}

// A remote worker that holds a lease and goes silent (no heartbeat, stream
// still open) loses it; another worker completes the action.
func TestMissedHeartbeatRequeues(t *testing.T) {
	e := newEnv(t, Options{HeartbeatInterval: 20 * time.Millisecond}, false)
	ad := e.action(shCommand("echo after-requeue"), nil, nil)

	sess := joinHandWorker(t, e, "silent")
	stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sess.Recv()
	if err != nil || m.GetLease() == nil {
		t.Fatalf("lease: %v %v", m, err)
	}
	// Say nothing more. The scheduler drops the session and requeues.
	waitFor(t, "the action to be requeued", func() bool { st := e.svc.Stats(); return st.Queued == 1 && st.Running == 0 })
	e.startWorkers(1)
	_, resp := e.drain(stream)
	if resp.Status.GetCode() != 0 || string(e.get(resp.Result.StdoutDigest)) != "after-requeue\n" {
		t.Fatalf("status %v", resp.Status)
	}
	if w := resp.Result.ExecutionMetadata.GetWorker(); w != "local-0" {
		t.Errorf("completed by %q, want local-0", w)
	}
}

// joinHandWorker opens a scheduler session the test drives by hand, as a
// worker named id offering the env's platform, and waits until the
// scheduler counts it.
func joinHandWorker(t *testing.T, e *env, id string) workerpb.Scheduler_SessionClient {
	t.Helper()
	sess, err := workerpb.NewSchedulerClient(e.conn).Session(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &workerpb.Hello{WorkerId: id, Concurrency: 1}
	for _, p := range e.props {
		hello.Platform = append(hello.Platform, &workerpb.Property{Name: p.Name, Value: p.Value})
	}
	before := e.svc.Stats().Workers
	if err := sess.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if m, err := sess.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("welcome: %v %v", m, err)
	}
	waitFor(t, "the "+id+" worker to join", func() bool { return e.svc.Stats().Workers > before })
	return sess
}

// A worker may only answer the leases it holds: a second worker answering
// the first one's lease with a forged success, and the first answering its
// own lease a second time, each have their session ended with
// FAILED_PRECONDITION, and neither forged result reaches the Action Cache.
func TestResultForALeaseNotHeldIsRefused(t *testing.T) {
	e := newEnv(t, Options{}, false)
	ad := e.action(shCommand("echo honest"), nil, nil)
	holder := joinHandWorker(t, e, "holder")
	stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad})
	if err != nil {
		t.Fatal(err)
	}
	m, err := holder.Recv()
	if err != nil || m.GetLease() == nil {
		t.Fatalf("lease: %v %v", m, err)
	}
	lease := m.GetLease().LeaseId
	forged, _ := proto.Marshal(&repb.ActionResult{ExitCode: 0, StdoutDigest: e.put([]byte("forged\n"))})
	answer := func(s workerpb.Scheduler_SessionClient, result []byte) {
		t.Helper()
		if err := s.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.LeaseResult{LeaseId: lease, ActionResult: result}}}); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(s workerpb.Scheduler_SessionClient, who string) {
		t.Helper()
		ended := make(chan error, 1)
		go func() {
			for {
				if _, err := s.Recv(); err != nil {
					ended <- err
					return
				}
			}
		}()
		select {
		case err := <-ended:
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not held by this session") {
				t.Fatalf("%s: session ended with %v, want FAILED_PRECONDITION naming the lease", who, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the scheduler said nothing about an answer for a lease it did not give (10s)", who)
		}
	}
	acMissing := func(when string) {
		t.Helper()
		key := store.Key{Kind: store.AC, Function: fn, Hash: ad.Hash, Size: ad.SizeBytes}
		if miss, err := e.st.FindMissing(e.ctx, []store.Key{key}); err != nil || len(miss) != 1 {
			t.Fatalf("%s: a forged result was cached (missing %v, err %v)", when, miss, err)
		}
	}

	rogue := joinHandWorker(t, e, "rogue")
	answer(rogue, forged)
	refused(rogue, "rogue")
	acMissing("after the rogue's answer")
	if st := e.svc.Stats(); st.Running != 1 {
		t.Fatalf("the rogue's answer changed the operation: %+v", st)
	}

	failed, _ := proto.Marshal(&repb.ActionResult{ExitCode: 1})
	answer(holder, failed)
	_, resp := e.drain(stream)
	if resp.Result.GetExitCode() != 1 {
		t.Fatalf("the holder's own answer: %v", resp)
	}
	answer(holder, forged) // the same lease again, now a success
	refused(holder, "holder answering twice")
	acMissing("after the second answer")
}

// The action-limit platform properties are not something a worker offers:
// an action asking for lower limits is routed like one without them, and
// the worker applies them.
func TestLimitPropertiesDoNotRoute(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	cmd := shCommand(`grep 'Max processes' /proc/self/limits | tr -s ' '`)
	cmd.Platform = &repb.Platform{Properties: append([]*repb.Platform_Property{{Name: worker.PropMaxProcesses, Value: "64"}}, e.props...)}
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: e.action(cmd, nil, nil)})
	if resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 0 {
		t.Fatalf("status %v exit %d", resp.Status, resp.Result.GetExitCode())
	}
	if got := string(e.get(resp.Result.StdoutDigest)); !strings.Contains(got, "Max processes 64 64") {
		t.Errorf("limits in the action: %q", got)
	}
}
