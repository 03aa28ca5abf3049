package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cpythonSource is where the set-up step put CPython's sources.
func cpythonSource(t *testing.T) string {
	t.Helper()
	src := os.Getenv("FERRULE_CPYTHON_SRC")
	if src == "" {
		src = filepath.Join(repoRoot(t), ".ferrule", "cpython-src")
	}
	if _, err := os.Stat(filepath.Join(src, "Include", "Python.h")); err != nil {
		t.Fatalf("CPython sources not found at %s: run ./tools/setup.sh", src)
	}
	return src
}

// TestCPythonFromCache builds the interpreter through a ferrule serve (the
// one tools/test.sh runs for `bazel test //...`, which has already built it
// there, or a fresh one), then:
//   - after `bazel clean --expunge` every action comes from the cache;
//   - a second checkout at another path, with another HOME, USER, output root
//     and its own copy of the CPython sources, gets every action from the
//     cache too;
//   - in that checkout, a code change to Objects/listobject.c recompiles that
//     one object and relinks; the tools that link libpython (_freeze_module,
//     _bootstrap_python) then re-run the freeze steps, whose outputs are
//     unchanged, so no other object is recompiled.
func TestCPythonFromCache(t *testing.T) {
	requireE2E(t)
	src := cpythonSource(t)
	cache := os.Getenv("FERRULE_SHARED_CACHE")
	b := NewBazel(t, repoRoot(t))
	target := "@cpython//:python3"
	if cache == "" {
		s := StartServer(t)
		cache = "grpc://" + s.GRPC
		b.Run(t, "build", "--remote_cache="+cache, target)
	} else {
		// Make sure this very target (not only its tests) is in the cache.
		b.Run(t, "build", "--remote_cache="+cache, target)
	}
	dir := t.TempDir()

	b.Run(t, "clean", "--expunge")
	warm := filepath.Join(dir, "warm.json")
	b.Run(t, "build", "--remote_cache="+cache, "--execution_log_json_file="+warm, target)
	spawns := ReadExecLog(t, warm)
	checkAllRemoteHits(t, spawns)
	t.Logf("rebuild after clean --expunge: %d actions, all remote cache hits", len(spawns))

	// A second machine: another checkout path, HOME, USER, output root, and
	// a copy of the sources at another absolute path.
	base := filepath.Join(testRoot(t), "cpython-second")
	os.RemoveAll(base)
	clone := filepath.Join(base, "elsewhere", "ferrule")
	CopyRepo(t, clone)
	srcCopy := filepath.Join(base, "sources", "cpython")
	if err := os.MkdirAll(filepath.Dir(srcCopy), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, srcCopy).CombinedOutput(); err != nil {
		t.Fatalf("copy CPython sources: %v\n%s", err, out)
	}
	home := filepath.Join(base, "home")
	os.MkdirAll(home, 0o755)
	env := append(cleanEnv(home, "second"), "FERRULE_CPYTHON_SRC="+srcCopy)
	b2 := &Bazel{Dir: clone, OutputUserRoot: filepath.Join(base, "output-root"), Env: env}
	t.Cleanup(func() { b2.Shutdown(t) })
	second := filepath.Join(dir, "second.json")
	b2.Run(t, "build", "--remote_cache="+cache, "--execution_log_json_file="+second, target)
	spawns = ReadExecLog(t, second)
	checkAllRemoteHits(t, spawns)
	t.Logf("second checkout: %d actions, all remote cache hits", len(spawns))

	// Incremental: one edited C file recompiles one object. The edit adds an
	// exported function so the object really changes (a comment-only edit
	// gives an identical object and nothing to relink).
	list := filepath.Join(srcCopy, "Objects", "listobject.c")
	data, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list, append(data, []byte("\nint _Ferrule_incremental_probe(void) { return 42; }\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	edit := filepath.Join(dir, "edit.json")
	b2.Run(t, "build", "--remote_cache="+cache, "--execution_log_json_file="+edit, target)
	spawns = ReadExecLog(t, edit)
	compiles, byMnemonic := 0, map[string]int{}
	for _, s := range spawns {
		byMnemonic[s.Mnemonic]++
		if s.Mnemonic == "CppCompile" {
			compiles++
			if !strings.Contains(strings.Join(s.ListedOutputs, " "), "listobject") {
				t.Errorf("editing listobject.c recompiled %v", s.ListedOutputs)
			}
		}
	}
	if compiles != 1 {
		t.Errorf("editing listobject.c ran %d compiles, want exactly 1 (actions by mnemonic: %v)", compiles, byMnemonic)
	}
	if byMnemonic["CppLink"] == 0 {
		t.Errorf("editing listobject.c relinked nothing (actions by mnemonic: %v)", byMnemonic)
	}
	t.Logf("editing Objects/listobject.c ran %d actions: %v", len(spawns), byMnemonic)
}
