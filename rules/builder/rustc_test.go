package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseBuildScriptOutput(t *testing.T) {
	out := strings.Join([]string{
		"cargo:rustc-cfg=wrap_proc_macro",
		"cargo::rustc-cfg=feature=\"x\"",
		"cargo:rustc-check-cfg=cfg(fuzzing)",
		"cargo:rerun-if-changed=build.rs",
		"cargo:rustc-env=GENERATED=/sandbox/17/execroot/ws/bazel-out/x.rs",
		"cargo:rustc-link-lib=static=foo",
		"cargo:rustc-link-search=native=/sandbox/17/execroot/ws/out",
		"cargo:rustc-flags=-l bar -L/usr/lib",
		"cargo:rustc-link-arg=-Wl,--as-needed",
		"cargo:warning=careful",
		"cargo:some_metadata=1",
		"cargo::metadata=include=/sandbox/17/execroot/ws/out/include",
		"cargo::rerun-if-env-changed=CC",
		"not a directive",
		"",
	}, "\n")
	b, err := parseBuildScriptOutput(out, "/sandbox/17/execroot/ws")
	if err != nil {
		t.Fatal(err)
	}
	want := &buildScriptFlags{
		cfgs:       []string{"wrap_proc_macro", `feature="x"`},
		env:        []string{"GENERATED=${pwd}/bazel-out/x.rs"},
		linkLibs:   []string{"static=foo", "bar"},
		linkSearch: []string{"native=${pwd}/out", "/usr/lib"},
		linkArgs:   []string{"-Wl,--as-needed"},
		metadata:   []string{"some_metadata=1", "include=${pwd}/out/include"},
		warnings:   []string{"careful"},
	}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("got %+v\nwant %+v", b, want)
	}

	// The encoded form reads back to the same flags (warnings aside).
	path := filepath.Join(t.TempDir(), "flags")
	if err := os.WriteFile(path, []byte(b.encode()), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := readBuildScriptFlags(path)
	if err != nil {
		t.Fatal(err)
	}
	want.warnings = nil
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip: got %+v\nwant %+v", back, want)
	}
	args := back.rustcArgs()
	if strings.Join(args, " ") != `--cfg wrap_proc_macro --cfg feature="x" -L native=${pwd}/out -L /usr/lib -l static=foo -l bar -Clink-arg=-Wl,--as-needed` {
		t.Errorf("rustc args = %q", args)
	}
}

func TestParseBuildScriptOutputErrors(t *testing.T) {
	for _, bad := range []string{
		"cargo:rustc-env=NOEQUALS",
		"cargo:rustc-flags=-Wall",
		"cargo:error=the C library is missing",
		"cargo:missing-equals",
	} {
		if _, err := parseBuildScriptOutput(bad, "/x"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCfgEnv(t *testing.T) {
	got := cfgEnv("debug_assertions\npanic=\"unwind\"\ntarget_arch=\"x86_64\"\ntarget_feature=\"sse\"\ntarget_feature=\"sse2\"\nunix\n")
	want := []string{"CARGO_CFG_PANIC=unwind", "CARGO_CFG_TARGET_ARCH=x86_64", "CARGO_CFG_TARGET_FEATURE=sse,sse2", "CARGO_CFG_UNIX="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRustcUsageErrors(t *testing.T) {
	var out, errb strings.Builder
	if err := runRustc([]string{"--rustc", "x"}, &out, &errb); err == nil {
		t.Error("no rustc args: no error")
	}
	if err := runRustc([]string{"--env", "NOEQ", "--rustc", "x", "--", "a.rs"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "NOEQ") {
		t.Errorf("bad --env: %v", err)
	}
}

func TestExpandParamFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "params")
	if err := os.WriteFile(path, []byte("lib.rs\n--crate-name\nfoo\n--cfg\nfeature=\"a b\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := expandParamFiles([]string{"--edition=2021", "@" + path, "@"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--edition=2021", "lib.rs", "--crate-name", "foo", "--cfg", `feature="a b"`, "@"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := expandParamFiles([]string{"@/no/such/file"}); err == nil {
		t.Error("missing parameter file: no error")
	}
}

func TestLinksDepEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "z.flags")
	b := &buildScriptFlags{cfgs: []string{"x"}, metadata: []string{"include=${pwd}/out/include", "static-lib=1"}}
	if err := os.WriteFile(path, []byte(b.encode()), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := linksDepEnv([]string{"z-ng=" + path}, "/exec/root")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"DEP_Z_NG_INCLUDE=/exec/root/out/include", "DEP_Z_NG_STATIC_LIB=1"}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("env = %q, want %q", env, want)
	}
	if _, err := linksDepEnv([]string{"nofile"}, "/"); err == nil {
		t.Error("a spec without = was accepted")
	}
	if _, err := linksDepEnv([]string{"z=" + filepath.Join(dir, "missing")}, "/"); err == nil || !strings.Contains(err.Error(), "z links dependency") {
		t.Errorf("want an error naming the links dependency, got %v", err)
	}
}

func TestNormaliseTreeTextOnly(t *testing.T) {
	wd := t.TempDir()
	out := filepath.Join(wd, "out")
	os.MkdirAll(filepath.Join(out, "sub"), 0o755)
	text := "#include \"" + wd + "/out/gen.h\"\n"
	// An archive and an object: same-length-changing edits would corrupt them.
	archive := "!<arch>\n/               0           0     0     0       4         `\n" + wd + "/out/x.o\x00\x00"
	object := "\x7fELF\x02\x01\x01" + wd + "/src/a.c"
	blob := "data\x00" + wd
	files := map[string]string{"gen.rs": text, "libz.a": archive, "sub/a.o": object, "blob": blob}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := normaliseTree(out, wd); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		got, _ := os.ReadFile(filepath.Join(out, name))
		want := data
		if name == "gen.rs" {
			want = "#include \"out/gen.h\"\n"
		}
		if string(got) != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}
