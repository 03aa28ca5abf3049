package worker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

const fn = repb.DigestFunction_SHA256

type fixture struct {
	t   *testing.T
	ctx context.Context
	st  store.Store
	r   *Runner
}

func newFixture(t *testing.T) *fixture {
	st := memory.New(1 << 30)
	r, err := New(Options{ID: "test", Dir: t.TempDir(), Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: context.Background(), st: st, r: r}
}

func (f *fixture) put(data []byte) *repb.Digest {
	d, _ := digest.Of(fn, data)
	if err := f.st.Put(f.ctx, store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(data)); err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) putMsg(m proto.Message) *repb.Digest {
	data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return f.put(data)
}

func (f *fixture) get(d *repb.Digest) string {
	f.t.Helper()
	if d == nil {
		f.t.Fatal("nil digest")
	}
	rc, _, err := f.st.Get(f.ctx, store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, 0)
	if err != nil {
		f.t.Fatalf("blob %s: %v", d.Hash, err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func (f *fixture) run(cmd *repb.Command, root *repb.Directory, timeout time.Duration) Outcome {
	if root == nil {
		root = &repb.Directory{}
	}
	a := &repb.Action{CommandDigest: f.putMsg(cmd), InputRootDigest: f.putMsg(root)}
	return f.r.Run(f.ctx, &Task{Function: fn, ActionDigest: f.putMsg(a), Action: a, Command: cmd, Timeout: timeout})
}

func sh(script string) *repb.Command {
	return &repb.Command{Arguments: []string{"/bin/sh", "-c", script},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}}}
}

func TestRunEchoAndEnvironmentIsolation(t *testing.T) {
	f := newFixture(t)
	t.Setenv("FERRULE_HOST_SECRET", "leaked")
	cmd := sh(`echo "secret=[$FERRULE_HOST_SECRET] mine=[$MINE]"; echo err >&2; env | sort`)
	cmd.EnvironmentVariables = append(cmd.EnvironmentVariables, &repb.Command_EnvironmentVariable{Name: "MINE", Value: "v"})
	out := f.run(cmd, nil, time.Minute)
	if out.Status.GetCode() != 0 || out.Result.ExitCode != 0 {
		t.Fatalf("outcome %v", out.Status)
	}
	stdout := f.get(out.Result.StdoutDigest)
	if !strings.HasPrefix(stdout, "secret=[] mine=[v]\n") {
		t.Errorf("stdout = %q", stdout)
	}
	if strings.Contains(stdout, "leaked") || strings.Contains(stdout, "HOME=") {
		t.Errorf("host environment visible to the action:\n%s", stdout)
	}
	if got := f.get(out.Result.StderrDigest); got != "err\n" {
		t.Errorf("stderr = %q", got)
	}
	md := out.Result.ExecutionMetadata
	if md.GetWorker() != "test" || md.GetExecutionStartTimestamp() == nil || md.GetOutputUploadCompletedTimestamp() == nil {
		t.Errorf("metadata %v", md)
	}
}

func TestInputsAreHardlinkedAndExecutablesSeparate(t *testing.T) {
	f := newFixture(t)
	content := []byte("#!/bin/sh\necho from-script\n")
	d := f.put(content)
	sub := &repb.Directory{Files: []*repb.FileNode{{Name: "data.txt", Digest: d}}}
	root := &repb.Directory{
		Files:       []*repb.FileNode{{Name: "run.sh", Digest: d, IsExecutable: true}, {Name: "empty", Digest: digest.Empty(fn)}},
		Directories: []*repb.DirectoryNode{{Name: "sub", Digest: f.putMsg(sub)}},
		Symlinks:    []*repb.SymlinkNode{{Name: "link", Target: "sub/data.txt"}},
	}
	cmd := sh(`./run.sh; stat -c '%a %h' run.sh sub/data.txt; cat link >/dev/null && echo link-ok; test -e empty && echo empty-ok`)
	out := f.run(cmd, root, time.Minute)
	if out.Status.GetCode() != 0 || out.Result.ExitCode != 0 {
		t.Fatalf("outcome %v exit %d stderr %q", out.Status, out.Result.GetExitCode(), f.get(out.Result.GetStderrDigest()))
	}
	got := f.get(out.Result.StdoutDigest)
	// 555 and 444 modes; a link count of 2 (the cache entry and the input).
	want := "from-script\n555 2\n444 2\nlink-ok\nempty-ok\n"
	if got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestOutputsLegacyAndPaths(t *testing.T) {
	f := newFixture(t)
	script := `mkdir -p gen/dir/sub && printf a > gen/dir/a.txt && printf b > gen/dir/sub/b && chmod +x gen/dir/sub/b && ln -s a.txt gen/dir/l && printf f > gen/file && ln -s file gen/flink`
	legacy := sh(script)
	legacy.OutputFiles = []string{"gen/file", "gen/flink", "gen/absent"}
	legacy.OutputDirectories = []string{"gen/dir"}
	out := f.run(legacy, nil, time.Minute)
	if out.Status.GetCode() != 0 || out.Result.ExitCode != 0 {
		t.Fatalf("outcome %v stderr %q", out.Status, f.get(out.Result.GetStderrDigest()))
	}
	res := out.Result
	if len(res.OutputFiles) != 1 || res.OutputFiles[0].Path != "gen/file" || f.get(res.OutputFiles[0].Digest) != "f" {
		t.Errorf("output files %v", res.OutputFiles)
	}
	if len(res.OutputFileSymlinks) != 1 || res.OutputFileSymlinks[0].Target != "file" || len(res.OutputSymlinks) != 0 {
		t.Errorf("file symlinks %v / %v", res.OutputFileSymlinks, res.OutputSymlinks)
	}
	if len(res.OutputDirectories) != 1 {
		t.Fatalf("output dirs %v", res.OutputDirectories)
	}
	tree := &repb.Tree{}
	if err := proto.Unmarshal([]byte(f.get(res.OutputDirectories[0].TreeDigest)), tree); err != nil {
		t.Fatal(err)
	}
	if len(tree.Root.Files) != 1 || tree.Root.Files[0].Name != "a.txt" || f.get(tree.Root.Files[0].Digest) != "a" ||
		len(tree.Root.Symlinks) != 1 || len(tree.Root.Directories) != 1 || len(tree.Children) != 1 {
		t.Fatalf("tree %v", tree)
	}
	child := tree.Children[0]
	if len(child.Files) != 1 || !child.Files[0].IsExecutable || f.get(child.Files[0].Digest) != "b" {
		t.Errorf("child %v", child)
	}
	childData, _ := proto.MarshalOptions{Deterministic: true}.Marshal(child)
	cd, _ := digest.Of(fn, childData)
	if !proto.Equal(cd, tree.Root.Directories[0].Digest) {
		t.Errorf("child digest mismatch")
	}

	paths := sh(script)
	paths.OutputPaths = []string{"gen/dir", "gen/file", "gen/flink"}
	out = f.run(paths, nil, time.Minute)
	res = out.Result
	if out.Status.GetCode() != 0 || len(res.OutputFiles) != 1 || len(res.OutputDirectories) != 1 || len(res.OutputSymlinks) != 1 || len(res.OutputFileSymlinks) != 0 {
		t.Errorf("output_paths result %v", res)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	f := newFixture(t)
	// A background grandchild that would outlive a kill of sh alone; its
	// pid goes to stderr.
	cmd := sh(`sleep 300 & echo $! >&2; echo started; wait`)
	out := f.run(cmd, nil, 300*time.Millisecond)
	if codes.Code(out.Status.GetCode()) != codes.DeadlineExceeded {
		t.Fatalf("status %v, want DEADLINE_EXCEEDED", out.Status)
	}
	if got := f.get(out.Result.StdoutDigest); got != "started\n" {
		t.Errorf("stdout = %q", got)
	}
	data := f.get(out.Result.StderrDigest)
	// In a pid namespace the pid is not ours to check; outside one it is.
	if f.r.sandbox.flags&syscall.CLONE_NEWPID == 0 {
		var pid int
		for _, c := range strings.TrimSpace(data) {
			pid = pid*10 + int(c-'0')
		}
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("grandchild %d survived the timeout", pid)
		}
	}
}

func TestMissingInputAndBadCommands(t *testing.T) {
	f := newFixture(t)
	absent, _ := digest.Of(fn, []byte("never stored"))
	out := f.run(sh("true"), &repb.Directory{Files: []*repb.FileNode{{Name: "x", Digest: absent}}}, time.Minute)
	if codes.Code(out.Status.GetCode()) != codes.FailedPrecondition || !strings.Contains(out.Status.String(), "blobs/"+absent.Hash) {
		t.Errorf("missing input: %v", out.Status)
	}
	out = f.run(&repb.Command{Arguments: []string{"no-such-program"}, EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}}}, nil, time.Minute)
	if out.Status.GetCode() != 0 || out.Result.ExitCode != 127 {
		t.Errorf("unknown program: %v exit %d", out.Status, out.Result.GetExitCode())
	}
	out = f.run(&repb.Command{Arguments: []string{"sh", "-c", "true"}}, nil, time.Minute)
	if out.Result.GetExitCode() != 127 {
		t.Errorf("bare name without PATH must not use the host PATH: exit %d", out.Result.GetExitCode())
	}
	bad := sh("true")
	bad.OutputFiles = []string{"../x"}
	if out := f.run(bad, nil, time.Minute); codes.Code(out.Status.GetCode()) != codes.InvalidArgument {
		t.Errorf("output outside root: %v", out.Status)
	}
	if out := f.r.Run(f.ctx, nil); codes.Code(out.Status.GetCode()) != codes.InvalidArgument {
		t.Errorf("nil task: %v", out.Status)
	}
}

// In CI (FERRULE_E2E=1) the sandbox must have its network namespace: the
// test fails there instead of skipping when CLONE_NEWNET is unavailable.
func TestNoNetworkInNamespace(t *testing.T) {
	f := newFixture(t)
	if f.r.sandbox.flags&syscall.CLONE_NEWNET == 0 {
		if os.Getenv("FERRULE_E2E") == "1" {
			t.Fatal("FERRULE_E2E=1 but this kernel does not allow network namespaces here (CLONE_NEWNET)")
		}
		t.Skip("this kernel does not allow network namespaces here (CLONE_NEWNET); FERRULE_E2E=1 makes this a failure")
	}
	// /proc/self/net shows the interfaces of the process's own namespace:
	// only "lo".
	out := f.run(sh(`tail -n +3 /proc/self/net/dev | cut -d: -f1 | tr -d ' '`), nil, time.Minute)
	if got := f.get(out.Result.GetStdoutDigest()); got != "lo\n" {
		t.Errorf("interfaces in the sandbox: %q, want only lo", got)
	}
}
