package explain

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustRead(t *testing.T, name string) []*Spawn {
	t.Helper()
	s, err := ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReadConcatenatedStream(t *testing.T) {
	a := mustRead(t, "machine_a.json")
	if len(a) != 5 {
		t.Fatalf("read %d spawns, want 5", len(a))
	}
	if a[0].Inputs[0].Digest.SizeBytes != 120 || a[0].Mnemonic != "CppCompile" || a[0].Key() != "bazel-out/k8-fastbuild/bin/one.o" {
		t.Errorf("first spawn parsed wrong: %+v", a[0])
	}
	b := mustRead(t, "machine_b.json")
	if b[1].Inputs[0].Digest.SizeBytes != 101 {
		t.Errorf("sizeBytes as a string: %d", b[1].Inputs[0].Digest.SizeBytes)
	}
}

func TestReadArray(t *testing.T) {
	s, err := Read(strings.NewReader(`[{"commandArgs":["a"],"listedOutputs":["o1"]}, {"commandArgs":["b"],"listedOutputs":["o2"]}]`))
	if err != nil || len(s) != 2 || s[1].Key() != "o2" {
		t.Fatalf("array: %v %d", err, len(s))
	}
}

func TestMalformedLogs(t *testing.T) {
	for _, name := range []string{"truncated.json", "wrongtype.json", "notspawn.json", "does-not-exist.json"} {
		_, err := ReadFile(filepath.Join("testdata", name))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	if _, err := Read(strings.NewReader("  \n")); err == nil {
		t.Error("empty log accepted")
	}
	if _, err := Read(strings.NewReader(`{"commandArgs":["a"],"listedOutputs":["o"]} garbage`)); err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Errorf("trailing garbage: %v", err)
	}
}

func TestCompareExplainsWhy(t *testing.T) {
	rep := Compare(mustRead(t, "machine_a.json"), mustRead(t, "machine_b.json"))
	if rep.Matched != 4 {
		t.Errorf("matched %d, want 4", rep.Matched)
	}
	if len(rep.OnlyA) != 1 || rep.OnlyA[0] != "bazel-out/k8-fastbuild/bin/only_a.txt" || len(rep.OnlyB) != 1 {
		t.Errorf("only: %v / %v", rep.OnlyA, rep.OnlyB)
	}
	byKey := map[string]ActionDiff{}
	for _, d := range rep.Differing {
		byKey[d.Key] = d
	}
	if _, ok := byKey["bazel-out/k8-fastbuild/bin/one.o"]; ok {
		t.Error("one.o is identical on both sides (inputs reordered, sizes as numbers) but reported")
	}
	if _, ok := byKey["bazel-out/k8-fastbuild/bin/stamp"]; ok {
		t.Error("stamp reported")
	}
	two := byKey["bazel-out/k8-fastbuild/bin/two.o"]
	wantTwo := map[string]bool{
		`argument 5: (absent) vs "-I/home/bob/checkout"`:    true,
		`environment variable BUILD_USER: "alice" vs "bob"`: true,
	}
	var gotInput bool
	for _, d := range two.Differences {
		delete(wantTwo, d.String())
		if d.Kind == InputFile && d.Name == "src/two.c" {
			gotInput = true
		}
	}
	if len(wantTwo) > 0 || !gotInput {
		t.Errorf("two.o differences %v; missing %v, input diff %v", two.Differences, wantTwo, gotInput)
	}
	both := byKey["bazel-out/k8-fastbuild/bin/libboth.a"]
	var gotISA bool
	for _, d := range both.Differences {
		if d.Kind == PlatformKey && d.Name == "ISA" && d.A == `"x86-64"` && d.B == `"aarch64"` {
			gotISA = true
		}
	}
	if !gotISA {
		t.Errorf("libboth.a differences %v lack the ISA property", both.Differences)
	}
	if len(rep.Differing) != 2 {
		t.Errorf("%d differing actions, want 2", len(rep.Differing))
	}
	// BUILD_USER differs in two actions: the top cause.
	if len(rep.Causes) == 0 || rep.Causes[0].Kind != EnvVarKind || rep.Causes[0].Name != "BUILD_USER" || rep.Causes[0].Actions != 2 {
		t.Errorf("top cause %v", rep.Causes)
	}
	var buf bytes.Buffer
	rep.Write(&buf, "a", "b", 0)
	out := buf.String()
	for _, want := range []string{"2 with differing keys", "environment variable BUILD_USER", "platform property ISA", "only in A:"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestCompareIdenticalLogs(t *testing.T) {
	a := mustRead(t, "machine_a.json")
	rep := Compare(a, mustRead(t, "machine_a.json"))
	if len(rep.Differing) != 0 || len(rep.OnlyA)+len(rep.OnlyB) != 0 || rep.Matched != len(a) {
		t.Fatalf("identical logs: %+v", rep)
	}
	var buf bytes.Buffer
	rep.Write(&buf, "a", "a", 0)
	if !strings.Contains(buf.String(), "no action in both logs differs") {
		t.Errorf("report: %s", buf.String())
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
