package e2e

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// crossTargets are built for linux-aarch64 from x86_64: the Rust `_base64`
// module (bindgen with the aarch64 target and headers, vendored crates,
// proc macro and build scripts for the exec platform), the C `_b16` module
// (Debian's cross gcc) and a Rust test binary run under qemu-user.
var crossTargets = []string{"//examples/base64:_base64", "//examples/base64:_b16", "//examples/base64:codec_test"}

// TestCrossAarch64 builds the examples for x86_64 and then, after `clean`,
// for aarch64 against one `ferrule serve`: the aarch64 build's hits are the
// actions that do not depend on the target platform (exec-platform tools),
// its outputs are aarch64 ELF files, and the test binary passes under qemu.
func TestCrossAarch64(t *testing.T) {
	requireE2E(t)
	s := StartServer(t)
	b := NewBazel(t, repoRoot(t))
	dir := t.TempDir()
	cache := "--remote_cache=grpc://" + s.GRPC
	b.Run(t, "clean")
	b.Run(t, append([]string{"build", cache, "--platforms=//platforms:linux_x86_64", "--execution_log_json_file=" + filepath.Join(dir, "x86_64.json")}, crossTargets...)...)
	b.Run(t, "clean")
	aarch64 := []string{"--platforms=//platforms:linux_aarch64"}
	b.Run(t, append(append([]string{"build", cache, "--execution_log_json_file=" + filepath.Join(dir, "aarch64.json")}, aarch64...), crossTargets...)...)

	var hits, misses []string
	for _, sp := range ReadExecLog(t, filepath.Join(dir, "aarch64.json")) {
		if !sp.Remotable || !sp.Cacheable || len(sp.ListedOutputs) == 0 {
			continue
		}
		out := sp.Mnemonic + " " + sp.ListedOutputs[0]
		if sp.RemoteCacheHit() {
			hits = append(hits, out)
			if !strings.Contains(sp.ListedOutputs[0], "-exec") {
				t.Errorf("target-platform action %s was a hit from the x86_64 build", out)
			}
		} else {
			misses = append(misses, out)
			if strings.Contains(sp.ListedOutputs[0], "-exec") {
				t.Errorf("exec-platform action %s did not reuse the x86_64 build's result", out)
			}
		}
	}
	sort.Strings(hits)
	if len(hits) == 0 {
		t.Fatalf("the aarch64 build reused nothing from the x86_64 build")
	}
	t.Logf("aarch64 build: %d of %d actions were hits from the x86_64 build:\n  %s", len(hits), len(hits)+len(misses), strings.Join(hits, "\n  "))

	// ferrule explain across the two platforms: every difference is the
	// target triple, the toolchain, pyconfig, a dependency built for the
	// other target, or command-line positions shifted by those (bindgen's
	// include list differs in length); --expect fails on anything else, e.g.
	// a source file or an environment variable.
	cmd := exec.Command(ferruleBinary(t), "explain", "--across_configs",
		"--expect", "target triple,toolchain,pyconfig,dependency outputs,command line",
		filepath.Join(dir, "x86_64.json"), filepath.Join(dir, "aarch64.json"))
	report, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("ferrule explain --expect found other causes: %v\n%s", err, tail(string(report), 40))
	}
	if !strings.Contains(string(report), "why, by cause") || !strings.Contains(string(report), "target triple") {
		t.Errorf("ferrule explain's summary names no target triple:\n%s", tail(string(report), 30))
	}
	if i := strings.Index(string(report), "why, by cause"); i >= 0 {
		t.Logf("ferrule explain x86_64 vs aarch64:\n%s", report[i:])
	}

	bin := strings.TrimSpace(lastLine(b.Run(t, append([]string{"info"}, append(aarch64, "bazel-bin")...)...)))
	mods, _ := filepath.Glob(filepath.Join(bin, "examples/base64/*.cpython-*-aarch64-linux-gnu.so"))
	if len(mods) != 2 {
		t.Fatalf("want _base64 and _b16 built for aarch64 in %s, got %v", bin, mods)
	}
	for _, f := range append(mods, filepath.Join(bin, "examples/base64/codec_test")) {
		e, err := elf.Open(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if e.Machine != elf.EM_AARCH64 {
			t.Errorf("%s is ELF machine %v, not aarch64", filepath.Base(f), e.Machine)
		}
		e.Close()
	}
	out := b.Run(t, append(append([]string{"test", cache, "--run_under=//toolchains/qemu:aarch64"}, aarch64...), "//examples/base64:codec_test")...)
	if !strings.Contains(out, "1 test passes") {
		t.Errorf("the aarch64 test binary did not pass under qemu:\n%s", tail(out, 10))
	}
}
