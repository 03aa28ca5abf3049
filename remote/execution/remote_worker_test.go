package execution

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/store/grpcstore"
	"github.com/ferrule-build/ferrule/remote/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// runTestWorker is what a re-executed test binary runs: a `ferrule worker`
// equivalent connected to the test's scheduler over TCP.
func runTestWorker(addr, dir string, noNamespaces bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r, err := worker.New(worker.Options{ID: fmt.Sprintf("subprocess-%d", os.Getpid()), Dir: dir, Store: grpcstore.New(conn), NoNamespaces: noNamespaces, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for ctx.Err() == nil {
		worker.Serve(ctx, conn, r, worker.DefaultPlatform(), 1)
		time.Sleep(50 * time.Millisecond)
	}
	return 0
}

func startWorkerProcess(t *testing.T, addr string, noNamespaces bool) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "FERRULE_TEST_WORKER_SCHEDULER="+addr, "FERRULE_TEST_WORKER_DIR="+t.TempDir())
	if noNamespaces {
		cmd.Env = append(cmd.Env, "FERRULE_TEST_WORKER_NO_NAMESPACES=1")
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// waitFor polls cond; the bound only keeps a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A worker process killed with SIGKILL in the middle of an action: the
// scheduler notices the broken stream and another worker process runs it.
// The first worker runs without a sandbox, so the action can leave the
// test a mark on the host; in the second one's sandbox the mark's
// directory does not exist and the action finishes at once.
func TestWorkerKilledMidActionIsRetried(t *testing.T) {
	e := newEnv(t, Options{}, true)
	mark := filepath.Join(t.TempDir(), "first-attempt-started")
	cmd := shCommand(`if [ ! -e "$MARK" ] && (: > "$MARK") 2>/dev/null; then sleep 120; fi; echo finished > out.txt`, "out.txt")
	cmd.EnvironmentVariables = append(cmd.EnvironmentVariables, &repb.Command_EnvironmentVariable{Name: "MARK", Value: mark})
	ad := e.action(cmd, nil, nil)

	w1 := startWorkerProcess(t, e.addr, true)
	waitFor(t, "the first worker to join", func() bool { return e.svc.Stats().Workers == 1 })
	stream, err := e.exec.Execute(e.ctx, &repb.ExecuteRequest{ActionDigest: ad})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first attempt to start", func() bool { _, err := os.Stat(mark); return err == nil })
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w1.Wait()
	startWorkerProcess(t, e.addr, false)

	_, resp := e.drain(stream)
	if resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 0 {
		t.Fatalf("status %v exit %d", resp.Status, resp.Result.GetExitCode())
	}
	if len(resp.Result.OutputFiles) != 1 || string(e.get(resp.Result.OutputFiles[0].Digest)) != "finished\n" {
		t.Fatalf("outputs %v", resp.Result.OutputFiles)
	}
	if w := resp.Result.ExecutionMetadata.GetWorker(); w == fmt.Sprintf("subprocess-%d", w1.Process.Pid) {
		t.Errorf("result claims to come from the killed worker %s", w)
	}
}
