package explain

import (
	"strings"
	"testing"
)

func crossSpawns(cfg, triple, gcc, pyconfigHash, srcHash string) []*Spawn {
	d := func(h string) *Digest { return &Digest{Hash: h, SizeBytes: 10} }
	return []*Spawn{
		{
			Mnemonic:      "CppCompile",
			Args:          []string{gcc, "-c", "m.c", "-o", "bazel-out/" + cfg + "/bin/m.o"},
			Inputs:        []File{{Path: "m.c", Digest: d(srcHash)}, {Path: "external/ferrule_python/include/pyconfig.h", Digest: d(pyconfigHash)}},
			ListedOutputs: []string{"bazel-out/" + cfg + "/bin/m.o"},
		},
		{
			Mnemonic:      "Rustc",
			Args:          []string{"rustc", "--target", triple, "--emit", "link=bazel-out/" + cfg + "/bin/liba.rlib"},
			Inputs:        []File{{Path: "bazel-out/" + cfg + "/bin/libdep.rlib", Digest: d(triple)}},
			ListedOutputs: []string{"bazel-out/" + cfg + "/bin/liba.rlib"},
		},
		{
			Mnemonic:      "Genrule",
			Args:          []string{"/bin/sh", "-c", "echo hi > bazel-out/k8-opt-exec/bin/tool.txt"},
			ListedOutputs: []string{"bazel-out/k8-opt-exec/bin/tool.txt"},
		},
	}
}

func TestGroupsAcrossPlatforms(t *testing.T) {
	a := crossSpawns("k8-fastbuild", "x86_64-unknown-linux-gnu", "/usr/bin/gcc", "p1", "s1")
	b := crossSpawns("linux_aarch64-fastbuild", "aarch64-unknown-linux-gnu", "/usr/bin/aarch64-linux-gnu-gcc", "p2", "s1")

	// Without --across_configs only the exec-platform action matches.
	if rep := Compare(a, b); rep.Matched != 1 || len(rep.Differing) != 0 {
		t.Fatalf("plain compare: %d matched, %d differing", rep.Matched, len(rep.Differing))
	}
	rep := CompareWith(a, b, Options{AcrossConfigs: true})
	if rep.Matched != 3 || len(rep.Differing) != 2 {
		t.Fatalf("across configs: %d matched, %d differing", rep.Matched, len(rep.Differing))
	}
	got := map[string]int{}
	for _, g := range rep.Groups {
		got[g.Cause] = g.Actions
	}
	want := map[string]int{CauseToolchain: 1, CausePyconfig: 1, CauseTriple: 1, CauseDependency: 1}
	for c, n := range want {
		if got[c] != n {
			t.Errorf("cause %q: %d actions, want %d (groups %+v)", c, got[c], n, rep.Groups)
		}
	}
	if len(got) != len(want) {
		t.Errorf("groups %+v, want exactly %v", rep.Groups, want)
	}
	if bad := rep.Unexpected([]string{CauseTriple, CauseToolchain, CausePyconfig, CauseDependency}); len(bad) != 0 {
		t.Errorf("unexpected: %+v", bad)
	}
	if bad := rep.Unexpected([]string{CauseTriple, CauseDependency}); len(bad) != 1 || bad[0].Key != "bazel-out/CFG/bin/m.o" {
		t.Errorf("with only the triple expected, want m.o unexpected, got %+v", bad)
	}
	var out strings.Builder
	rep.Write(&out, "x86", "arm", 10)
	if !strings.Contains(out.String(), "why, by cause") || !strings.Contains(out.String(), "target triple") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestClassifySourceAndEnv(t *testing.T) {
	for _, c := range []struct {
		d    Difference
		want string
	}{
		{Difference{Kind: InputFile, Name: "Objects/listobject.c", A: "a/1", B: "b/1"}, "source file Objects/listobject.c"},
		{Difference{Kind: EnvVarKind, Name: "FERRULE_LEAK", A: "(unset)", B: `"bob"`}, "environment variable FERRULE_LEAK"},
		{Difference{Kind: Argument, Name: "3", A: `"-O1"`, B: `"-O2"`}, CauseCommand},
		{Difference{Kind: InputFile, Name: "external/_main~toolchains~ferrule_rust/lib/rustlib/x/libstd.rlib"}, CauseToolchain},
	} {
		if got := Classify(c.d); got != c.want {
			t.Errorf("Classify(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}
