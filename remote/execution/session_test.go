package execution

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/workerpb"
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
	if err := sess.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if m, err := sess.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("welcome: %v %v", m, err)
	}
	waitFor(t, "the "+id+" worker to join", func() bool { return e.svc.Stats().Workers == 1 })
	return sess
}
