package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// exampleTargets is what the hermeticity and incrementality tests build: the
// Rust and C extension modules with bindgen, vendored crates (a proc macro
// and build scripts) and the builder.
const exampleTargets = "//examples/..."

// machine is one simulated machine: its own checkout path, HOME, USER and
// Bazel output root.
type machine struct {
	name string
	dir  string
	home string
	bz   *Bazel
}

func newMachine(t *testing.T, name, checkout, outputRoot string) *machine {
	t.Helper()
	base := filepath.Join(testRoot(t), "rules", name)
	dir := filepath.Join(base, checkout)
	home := filepath.Join(base, "home")
	for _, d := range []string{home, outputRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	CopyRepo(t, dir)
	bz := &Bazel{Dir: dir, OutputUserRoot: outputRoot, Env: cleanEnv(home, name)}
	t.Cleanup(func() { bz.Shutdown(t) })
	return &machine{name: name, dir: dir, home: home, bz: bz}
}

// build builds the examples and returns the spawns of the execution log.
func (m *machine) build(t *testing.T, label string, flags ...string) ([]Spawn, time.Duration) {
	t.Helper()
	log := m.logPath(label)
	start := time.Now()
	args := append([]string{"build", "--execution_log_json_file=" + log}, flags...)
	m.bz.Run(t, append(args, exampleTargets)...)
	took := time.Since(start)
	spawns := ReadExecLog(t, log)
	t.Logf("%s: %s build of %s: %d spawns in %v", m.name, label, exampleTargets, len(spawns), took.Round(time.Second))
	return spawns, took
}

// logPath is where build(label) writes its execution log.
func (m *machine) logPath(label string) string {
	return filepath.Join(filepath.Dir(m.dir), label+".json")
}

// explain runs `ferrule explain` on two execution logs.
func explain(t *testing.T, logA, logB string) string {
	t.Helper()
	out, err := exec.Command(ferruleBinary(t), "explain", logA, logB).CombinedOutput()
	if err != nil {
		t.Fatalf("ferrule explain: %v\n%s", err, out)
	}
	return string(out)
}

func spawnKey(s Spawn) string {
	outs := append([]string{}, s.ListedOutputs...)
	sort.Strings(outs)
	return s.Mnemonic + " " + strings.Join(outs, " ")
}

func fileDigests(fs []LogFile) map[string]string {
	m := map[string]string{}
	for _, f := range fs {
		m[f.Path] = f.Digest.Hash + "/" + f.Digest.SizeBytes
	}
	return m
}

func envMap(vs []EnvVar) map[string]string {
	m := map[string]string{}
	for _, v := range vs {
		m[v.Name] = v.Value
	}
	return m
}

// diffSpawns lists how two executions of the same action differ: command
// line, environment, input digests, output digests.
func diffSpawns(a, b Spawn) []string {
	var d []string
	if strings.Join(a.CommandArgs, "\x00") != strings.Join(b.CommandArgs, "\x00") {
		d = append(d, fmt.Sprintf("command lines differ:\n    %q\n    %q", a.CommandArgs, b.CommandArgs))
	}
	ea, eb := envMap(a.EnvironmentVariables), envMap(b.EnvironmentVariables)
	for k, v := range ea {
		if eb[k] != v {
			d = append(d, fmt.Sprintf("env %s: %q vs %q", k, v, eb[k]))
		}
	}
	for k := range eb {
		if _, ok := ea[k]; !ok {
			d = append(d, fmt.Sprintf("env %s only on the second machine", k))
		}
	}
	for _, pair := range []struct {
		what string
		a, b map[string]string
	}{{"input", fileDigests(a.Inputs), fileDigests(b.Inputs)}, {"output", fileDigests(a.ActualOutputs), fileDigests(b.ActualOutputs)}} {
		for p, h := range pair.a {
			if pair.b[p] != h {
				d = append(d, fmt.Sprintf("%s %s: %s vs %s", pair.what, p, h, pair.b[p]))
			}
		}
		for p := range pair.b {
			if _, ok := pair.a[p]; !ok {
				d = append(d, fmt.Sprintf("%s %s only on the second machine", pair.what, p))
			}
		}
	}
	return d
}

// TestRulesHermeticAndIncremental builds the examples on two simulated
// machines (different checkout paths, HOME, USER and output roots) and
// requires the same actions with the same keys and byte-identical outputs.
// The first machine fills a ferrule serve; after a clean the second machine
// gets every action from it, and `ferrule explain` reports no differing
// action, then names an environment variable deliberately leaked into the
// second machine's actions.
// Then, on the first machine, it checks incrementality: no change runs
// nothing, touching a file runs nothing, and editing one .rs file of
// _base64 re-runs only that crate's compile-and-link.
func TestRulesHermeticAndIncremental(t *testing.T) {
	requireE2E(t)
	if _, err := os.Stat(filepath.Join(repoRoot(t), "third_party", "vendor")); err != nil {
		t.Fatal("third_party/vendor is missing: run tools/setup.sh (tools/setup.d/20-crates.sh)")
	}
	a := newMachine(t, "alice", "checkout", sharedOutputRoot(t))
	b := newMachine(t, "bob", "a/much/longer/path/to/the/ferrule/checkout", filepath.Join(testRoot(t), "rules", "bob", "output-root"))
	a.bz.Run(t, "clean")
	b.bz.Run(t, "clean")
	// The first machine fills a ferrule serve; the second builds cold on its
	// own (reading nothing from the cache) so that its outputs can be
	// compared with the first machine's.
	server := StartServer(t)
	remote := "--remote_cache=grpc://" + server.GRPC
	logA, coldA := a.build(t, "cold", remote)
	logB, _ := b.build(t, "cold", remote, "--noremote_accept_cached", "--noremote_upload_local_results")

	byKey := map[string]Spawn{}
	for _, s := range logA {
		byKey[spawnKey(s)] = s
	}
	mnemonics := map[string]int{}
	var problems []string
	matched := 0
	for _, s := range logB {
		k := spawnKey(s)
		mnemonics[s.Mnemonic]++
		sa, ok := byKey[k]
		if !ok {
			problems = append(problems, "only on the second machine: "+k)
			continue
		}
		delete(byKey, k)
		matched++
		for _, d := range diffSpawns(sa, s) {
			problems = append(problems, k+": "+d)
		}
	}
	for k := range byKey {
		problems = append(problems, "only on the first machine: "+k)
	}
	for _, p := range problems {
		if len(p) > 600 {
			p = p[:600] + "..."
		}
		t.Error(p)
	}
	for _, want := range []string{"Rustc", "CargoBuildScript", "CPythonBindgen", "CppCompile", "CppLink", "FerruleGoTool"} {
		if mnemonics[want] == 0 {
			t.Errorf("no %s action in the build: the test does not cover it (mnemonics: %v)", want, mnemonics)
		}
	}
	t.Logf("%d actions on both machines, %d with identical keys and outputs (by mnemonic: %v); cold build %v",
		matched, matched-len(problems), mnemonics, coldA.Round(time.Second))

	// No host-specific string may appear in any action's command line or
	// environment.
	hostHome, _ := os.UserHomeDir()
	for i, m := range []*machine{a, b} {
		for _, s := range [][]Spawn{logA, logB}[i] {
			all := strings.Join(s.CommandArgs, " ")
			for _, e := range s.EnvironmentVariables {
				all += " " + e.Name + "=" + e.Value
			}
			for _, bad := range []string{m.dir, m.home, m.bz.OutputUserRoot, hostHome, "/.rustup", "/.cargo"} {
				if bad != "" && strings.Contains(all, bad) {
					t.Errorf("%s action %s mentions %q", s.Mnemonic, spawnKey(s), bad)
				}
			}
		}
	}

	// The modules themselves, as Python would load them, are byte-identical.
	for _, mod := range []string{"_base64", "_b16"} {
		var data [2][]byte
		for i, m := range []*machine{a, b} {
			bin := strings.TrimSpace(lastLine(m.bz.Run(t, "info", "bazel-bin")))
			matches, _ := filepath.Glob(filepath.Join(bin, "examples", "base64", mod+".cpython-*.so"))
			if len(matches) != 1 {
				t.Fatalf("%s: want one %s module, found %v", m.name, mod, matches)
			}
			var err error
			if data[i], err = os.ReadFile(matches[0]); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(data[0], data[1]) {
			t.Errorf("%s module differs between the machines", mod)
		}
	}

	// Cross-machine reuse: after a clean, the second machine gets every
	// action from the cache the first one filled, and `ferrule explain`
	// finds no differing action between the two machines' logs.
	b.bz.Run(t, "clean")
	warm, _ := b.build(t, "warm", remote)
	checkAllRemoteHits(t, warm)
	if out := explain(t, a.logPath("cold"), b.logPath("warm")); !strings.Contains(out, "no action in both logs differs") {
		t.Errorf("ferrule explain found differences between the machines:\n%s", out)
	}
	// A deliberate leak: an environment variable reaches the second
	// machine's actions. Those miss the cache, and explain names the cause.
	leaky, _ := b.build(t, "leak", remote, "--action_env=FERRULE_LEAK=bob")
	misses := 0
	for _, s := range leaky {
		if s.Remotable && s.Cacheable && !s.RemoteCacheHit() {
			misses++
		}
	}
	if misses == 0 {
		t.Errorf("a leaked environment variable changed no action key: the test does not exercise explain")
	}
	if out := explain(t, a.logPath("cold"), b.logPath("leak")); !strings.Contains(out, "FERRULE_LEAK") {
		t.Errorf("ferrule explain does not name the leaked variable FERRULE_LEAK:\n%s", out)
	} else {
		t.Logf("ferrule explain on the leak:\n%s", tail(out, 15))
	}
	b.bz.Shutdown(t)

	// Incrementality, on the first machine.
	if spawns, _ := a.build(t, "noop"); len(spawns) != 0 {
		t.Errorf("a rebuild without changes ran %d actions: %v", len(spawns), keys(spawns))
	}
	lib := filepath.Join(a.dir, "examples", "base64", "_base64", "lib.rs")
	now := time.Now()
	if err := os.Chtimes(lib, now, now); err != nil {
		t.Fatal(err)
	}
	if spawns, _ := a.build(t, "touch"); len(spawns) != 0 {
		t.Errorf("touching lib.rs (same content) ran %d actions: %v", len(spawns), keys(spawns))
	}
	src, err := os.ReadFile(lib)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(src, []byte("Standard base64 implemented in Rust."), []byte("Standard base64, implemented in Rust."), 1)
	if bytes.Equal(edited, src) {
		t.Fatal("the edit did not apply: update the test")
	}
	if err := os.WriteFile(lib, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	spawns, took := a.build(t, "edit")
	if len(spawns) != 1 || spawns[0].Mnemonic != "Rustc" || !strings.HasSuffix(strings.Join(spawns[0].ListedOutputs, " "), "lib_base64.so") {
		t.Errorf("editing _base64/lib.rs ran %v; want only the _base64 crate's compile-and-link (Rustc -> lib_base64.so)", keys(spawns))
	}
	t.Logf("incremental: editing one .rs file of _base64 re-ran %d action(s) in %v", len(spawns), took.Round(time.Second))
}

func keys(spawns []Spawn) []string {
	var ks []string
	for _, s := range spawns {
		ks = append(ks, spawnKey(s))
	}
	return ks
}

// TestRulesBadVendor breaks the vendor directory of a copy of the repository
// in the two ways a user meets (a crate missing, a crate whose contents do
// not match the lock file) and requires a build error naming the crate.
func TestRulesBadVendor(t *testing.T) {
	requireE2E(t)
	dir := filepath.Join(testRoot(t), "rules", "badvendor", "ws")
	CopyRepo(t, dir)
	bz := NewBazel(t, dir)
	t.Cleanup(func() { bz.Shutdown(t) })
	vendor := filepath.Join(dir, "third_party", "vendor")

	if err := os.Rename(filepath.Join(vendor, "syn-3.0.10"), filepath.Join(dir, "syn-aside")); err != nil {
		t.Fatal(err)
	}
	out, err := bz.RunErr(t, "build", "//examples/base64:_base64")
	if err == nil {
		t.Fatal("build succeeded with syn missing from the vendor directory")
	}
	if !strings.Contains(out, "crate syn 3.0.10 is missing from") || !strings.Contains(out, "20-crates.sh") {
		t.Errorf("the error does not name the missing crate and the fix:\n%s", tail(out, 30))
	}
	if err := os.Rename(filepath.Join(dir, "syn-aside"), filepath.Join(vendor, "syn-3.0.10")); err != nil {
		t.Fatal(err)
	}

	sums := filepath.Join(vendor, "thiserror-2.0.21", ".cargo-checksum.json")
	data, err := os.ReadFile(sums)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), `"package":"`, `"package":"0000`, 1)
	if bad == string(data) {
		t.Fatalf("unexpected %s: %.200s", sums, data)
	}
	if err := os.WriteFile(sums, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = bz.RunErr(t, "build", "//examples/base64:_base64")
	if err == nil {
		t.Fatal("build succeeded with a vendored crate whose checksum disagrees with Cargo.lock")
	}
	if !strings.Contains(out, "crate thiserror 2.0.21: the vendored copy has checksum 0000") {
		t.Errorf("the error does not name the mismatched crate:\n%s", tail(out, 30))
	}
	// ferrule vendor --check says the same about the lock file.
	cmd := exec.Command("go", "run", "./cmd/ferrule", "vendor", "--check")
	cmd.Dir = dir
	vout, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(vout), "crate thiserror 2.0.21: Cargo.lock has checksum") || strings.Contains(string(vout), "goroutine") {
		t.Errorf("ferrule vendor --check on a mismatched vendor directory: %v\n%s", err, vout)
	}
}
