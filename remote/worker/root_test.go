package worker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// toolchainRoot is the checkout's toolchain root (.ferrule/root, made by
// tools/setup.sh). Without one the test skips, unless FERRULE_E2E=1 says
// this machine was set up, where a missing root fails it.
func toolchainRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", ".ferrule", "root"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRootDigest(dir); err != nil {
		if os.Getenv("FERRULE_E2E") == "1" {
			t.Fatalf("FERRULE_E2E=1 but no toolchain root: %v", err)
		}
		t.Skipf("no toolchain root (run tools/setup.sh): %v", err)
	}
	return dir
}

func TestActionRunsInToolchainRoot(t *testing.T) {
	root := toolchainRoot(t)
	want, err := ReadRootDigest(root)
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New(1 << 30)
	r, err := New(Options{ID: "rooted", Dir: t.TempDir(), Store: st, Root: root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: context.Background(), st: st, r: r}
	in := f.put([]byte("input bytes\n"))
	// The root's own digest file and compiler, the input through a relative
	// path, a bare name resolved on the root's PATH, and an output.
	cmd := &repb.Command{
		Arguments:            []string{"sh", "-c", "cat /etc/ferrule-root/digest; cat in.txt; test -x /usr/bin/bazel && echo bazel; pwd; cat in.txt > out.txt"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
		OutputPaths:          []string{"out.txt"},
	}
	out := f.run(cmd, &repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: in}}}, 0)
	if out.Status != nil && out.Status.Code != 0 {
		t.Fatalf("status %v", out.Status)
	}
	res := out.Result
	if res.ExitCode != 0 {
		t.Fatalf("exit %d, stderr %q", res.ExitCode, f.get(res.StderrDigest))
	}
	stdout := f.get(res.StdoutDigest)
	for _, w := range []string{want + "\n", "input bytes\n", "bazel\n", execMount + "\n"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout %q lacks %q", stdout, w)
		}
	}
	if len(res.OutputFiles) != 1 || f.get(res.OutputFiles[0].Digest) != "input bytes\n" {
		t.Errorf("outputs %v", res.OutputFiles)
	}
}

func TestNotARoot(t *testing.T) {
	_, err := New(Options{ID: "x", Dir: t.TempDir(), Store: memory.New(1 << 20), Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not a complete toolchain root") {
		t.Fatalf("err = %v", err)
	}
}
