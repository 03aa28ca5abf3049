package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBzlmodConsumer is a Bazel 7 user's workspace: `bazel_dep(name =
// "ferrule")` with local_path_override, offline, building a Rust binary and
// a C extension module with Ferrule's rules and toolchains (resolved from
// Ferrule's registered toolchains), then running the binary.
func TestBzlmodConsumer(t *testing.T) {
	requireE2E(t)
	ws := filepath.Join(testRoot(t), "consumer", "ws")
	os.RemoveAll(ws)
	files := map[string]string{
		"MODULE.bazel": `module(name = "consumer")

bazel_dep(name = "ferrule", version = "0.2.0")
local_path_override(module_name = "ferrule", path = "` + repoRoot(t) + `")
`,
		".bazelrc": "common --registry=file://" + filepath.Join(repoRoot(t), "third_party", "bazel-registry") + "\ncommon --lockfile_mode=off\ncommon --noenable_workspace\nbuild --nosandbox_debug\n",
		"BUILD.bazel": `load("@ferrule//rules:defs.bzl", "cpython_extension", "rust_binary")

rust_binary(name = "hi", srcs = ["main.rs"])

cpython_extension(name = "_tiny", srcs = ["tiny.c"])
`,
		"main.rs": "fn main() { println!(\"hello from a ferrule consumer\"); }\n",
		"tiny.c": `#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_tiny", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__tiny(void) { return PyModule_Create(&def); }
`,
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ws, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ws, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := &Bazel{Dir: ws, OutputUserRoot: sharedOutputRoot(t)}
	t.Cleanup(func() { b.Run(t, "clean", "--expunge"); b.Shutdown(t) })
	b.Run(t, "build", "//:hi", "//:_tiny")
	out := b.Run(t, "run", "//:hi")
	if !strings.Contains(out, "hello from a ferrule consumer") {
		t.Errorf("bazel run //:hi printed:\n%s", tail(out, 10))
	}
	bin := strings.TrimSpace(lastLine(b.Run(t, "info", "bazel-bin")))
	mods, _ := filepath.Glob(filepath.Join(bin, "_tiny.cpython-*.so"))
	if len(mods) != 1 {
		t.Errorf("want one _tiny.cpython-*.so in %s, got %v", bin, mods)
	}
}

// TestWorkspaceMode loads and analyses the examples in WORKSPACE mode
// (--config=workspace: rules/deps.bzl instead of MODULE.bazel).
func TestWorkspaceMode(t *testing.T) {
	requireE2E(t)
	b := NewBazel(t, repoRoot(t))
	b.Run(t, "build", "--config=workspace", "--nobuild", "//examples/...", "//rules/...")
}

// TestRootErrors: entering a toolchain root that was never built, or one
// built from another manifest, is a clear error that says what to run.
func TestRootErrors(t *testing.T) {
	requireE2E(t)
	digest := strings.TrimPrefix(strings.TrimSpace(runRootScript(t, nil, false, "--digest")), "toolchain-root=")
	empty := t.TempDir()
	out := runRootScript(t, []string{"FERRULE_ROOTS=" + empty}, true, "true")
	if !strings.Contains(out, "no toolchain root") || !strings.Contains(out, "tools/setup.sh") {
		t.Errorf("missing root: %q", out)
	}
	fake := filepath.Join(empty, digest, "etc", "ferrule-root")
	os.MkdirAll(fake, 0o755)
	os.WriteFile(filepath.Join(fake, "digest"), []byte(strings.Repeat("0", 64)+"\n"), 0o644)
	out = runRootScript(t, []string{"FERRULE_ROOTS=" + empty}, true, "true")
	if !strings.Contains(out, "was built from manifest 000") || !strings.Contains(out, "--build") {
		t.Errorf("mismatched root: %q", out)
	}
}

// runRootScript runs tools/root.sh with args and more environment, and
// returns its combined output; it fails the test unless the exit status is
// what wantErr says.
func runRootScript(t *testing.T, env []string, wantErr bool, args ...string) string {
	t.Helper()
	cmd := exec.Command(rootScript(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if (err != nil) != wantErr {
		t.Fatalf("tools/root.sh %v: error %v, want an error: %v\n%s", args, err, wantErr, out)
	}
	return string(out)
}
