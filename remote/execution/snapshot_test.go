package execution

import (
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

func TestSnapshot(t *testing.T) {
	e := newEnv(t, Options{}, false)
	e.startWorkers(1)
	snap := e.svc.Snapshot()
	if len(snap.Workers) != 1 || !strings.Contains(snap.Workers[0].Platform, "=") || snap.Running != 0 {
		t.Fatalf("idle snapshot %+v", snap)
	}
	// Two slow actions on one worker: one runs, one waits.
	for _, msg := range []string{"a", "b"} {
		ad := e.action(shCommand("sleep 2; echo "+msg), nil, nil)
		stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad, SkipCacheLookup: true})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		snap = e.svc.Snapshot()
		if snap.Running == 1 && snap.Queued == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if snap.Running != 1 || snap.Queued != 1 || len(snap.Workers[0].Running) != 1 || len(snap.Queues) != 1 {
		t.Fatalf("busy snapshot %+v", snap)
	}
}
