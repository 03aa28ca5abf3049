package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer a child process writes to while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Worker is a `ferrule worker` process.
type Worker struct {
	ID  string
	cmd *exec.Cmd
	log *syncBuffer
}

// StartWorker runs `ferrule worker` against the scheduler at addr, its
// actions inside the checkout's toolchain root, and kills it when the test
// ends.
func StartWorker(t *testing.T, addr, id string) *Worker {
	t.Helper()
	w := &Worker{ID: id, log: &syncBuffer{}}
	w.cmd = exec.Command(ferruleBinary(t), "worker", "--scheduler", addr, "--id", id, "--dir", t.TempDir(),
		"--root", toolchainRootDir(t))
	w.cmd.Stdout = w.log
	w.cmd.Stderr = w.log
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start ferrule worker: %v", err)
	}
	t.Cleanup(func() {
		w.Kill()
		if t.Failed() {
			t.Logf("worker %s log:\n%s", id, tail(w.log.String(), 40))
		}
	})
	if !waitFor(func() bool { return strings.Contains(w.log.String(), "connected to the scheduler") }, 30*time.Second) {
		t.Fatalf("worker %s did not connect; log:\n%s", id, w.log.String())
	}
	return w
}

// Kill ends the worker with SIGKILL, as a crash would.
func (w *Worker) Kill() {
	if w.cmd.Process != nil {
		w.cmd.Process.Signal(syscall.SIGKILL)
		w.cmd.Wait()
	}
}

// Actions counts the actions the worker started.
func (w *Worker) Actions() int { return strings.Count(w.log.String(), "running action") }

// toolchainRootDir is the checkout's toolchain root (tools/root.sh --path).
func toolchainRootDir(t *testing.T) string {
	return strings.TrimSpace(runRootScript(t, nil, false, "--path"))
}

// rootExecProperty is the Bazel flag asking for workers in this toolchain root.
func rootExecProperty(t *testing.T) string {
	return "--remote_default_exec_properties=" + strings.TrimSpace(runRootScript(t, nil, false, "--digest"))
}

func waitFor(cond func() bool, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}

// TestRemoteExecution builds and tests the examples (Rust, bindgen, C,
// vendored crates, Python tests) and the C test package with every action
// executed remotely on two `ferrule worker` processes.
func TestRemoteExecution(t *testing.T) {
	requireE2E(t)
	s := StartServer(t, "--workers", "0")
	w1 := StartWorker(t, s.GRPC, "worker-1")
	w2 := StartWorker(t, s.GRPC, "worker-2")
	b := NewBazel(t, repoRoot(t))
	b.Run(t, "clean")
	log := filepath.Join(t.TempDir(), "exec.json")
	out := b.Run(t, "test", "--remote_executor=grpc://"+s.GRPC, "--spawn_strategy=remote", "--jobs=8", rootExecProperty(t),
		"--execution_log_json_file="+log, "//examples/...", "//e2e/testdata/cc:greeting")
	spawns := ReadExecLog(t, log)
	remote := 0
	for _, sp := range spawns {
		if sp.Runner != "remote" {
			t.Errorf("%s action %v ran with %q, not remotely", sp.Mnemonic, sp.ListedOutputs, sp.Runner)
			continue
		}
		remote++
	}
	if remote < 10 {
		t.Errorf("only %d actions ran remotely", remote)
	}
	if !strings.Contains(out, "remote") || !regexpMatch(`\d+ remote[,.]`, out) {
		t.Errorf("Bazel's process summary does not report remote execution:\n%s", tail(out, 15))
	}
	if w1.Actions() == 0 || w2.Actions() == 0 {
		t.Errorf("both worker processes should have run actions: %s ran %d, %s ran %d", w1.ID, w1.Actions(), w2.ID, w2.Actions())
	}
	t.Logf("%d spawns, all remote; %s ran %d, %s ran %d", remote, w1.ID, w1.Actions(), w2.ID, w2.Actions())

	// The same outputs as local execution: the actions' outputs as the
	// run's shared cache holds them from the local `bazel test //...` (or a
	// local build here when there is no shared cache).
	b.Run(t, "clean")
	localLog := filepath.Join(t.TempDir(), "local.json")
	args := []string{"build", "--execution_log_json_file=" + localLog}
	if c := os.Getenv("FERRULE_SHARED_CACHE"); c != "" {
		args = append(args, "--remote_cache="+c)
	}
	b.Run(t, append(args, "//examples/...", "//e2e/testdata/cc:greeting")...)
	local := map[string]string{}
	for _, sp := range ReadExecLog(t, localLog) {
		for _, o := range sp.ActualOutputs {
			local[o.Path] = o.Digest.Hash
		}
	}
	compared := 0
	for _, sp := range spawns {
		if sp.Mnemonic == "TestRunner" {
			continue
		}
		for _, o := range sp.ActualOutputs {
			want, ok := local[o.Path]
			if !ok {
				continue
			}
			compared++
			if want != o.Digest.Hash {
				t.Errorf("%s output %s: remote execution made %s, local execution %s", sp.Mnemonic, o.Path, o.Digest.Hash, want)
			}
		}
	}
	if compared < 10 {
		t.Errorf("only %d outputs compared between remote and local execution", compared)
	}
	t.Logf("%d outputs of remote execution identical to local execution's", compared)
}

// TestRemoteExecutionWorkerKilled kills (SIGKILL) the worker running an
// action; the scheduler must hand the action to another worker and the build
// must succeed.
func TestRemoteExecutionWorkerKilled(t *testing.T) {
	requireE2E(t)
	s := StartServer(t, "--workers", "0")
	w1 := StartWorker(t, s.GRPC, "doomed")
	b := NewBazel(t, repoRoot(t))
	b.Run(t, "clean")
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := b.RunErr(t, "build", "--remote_executor=grpc://"+s.GRPC, "--spawn_strategy=remote", rootExecProperty(t), "//e2e/testdata/slow")
		done <- result{out, err}
	}()
	if !waitFor(func() bool { return w1.Actions() > 0 }, 5*time.Minute) {
		t.Fatalf("the worker never started the action; log:\n%s", w1.log.String())
	}
	w2 := StartWorker(t, s.GRPC, "survivor")
	w1.Kill()
	r := <-done
	if r.err != nil {
		t.Fatalf("the build failed after a worker was killed mid-action: %v\n%s", r.err, tail(r.out, 30))
	}
	if w2.Actions() == 0 {
		t.Errorf("the surviving worker ran nothing; the action was not retried on it")
	}
	bin := strings.TrimSpace(lastLine(b.Run(t, "info", "bazel-bin")))
	if got := readFile(t, filepath.Join(bin, "e2e/testdata/slow/slow.txt")); got != "survived a worker crash\n" {
		t.Errorf("slow.txt = %q", got)
	}
}
