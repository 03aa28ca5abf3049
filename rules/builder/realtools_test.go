package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The tests below run the real tools (rustc, bindgen) the way the Bazel
// actions do. On a machine without them they are skipped, unless
// FERRULE_E2E=1 (tools/test.sh) says the toolchain must be there.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("FERRULE_E2E") == "1" {
			t.Fatalf("%s not found on PATH: run tools/setup.sh", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(old) })
}

// rustSysroot returns the real rustc binary and its sysroot.
func rustSysroot(t *testing.T) (string, string) {
	rustc := needTool(t, "rustc")
	out, err := exec.Command(rustc, "--print", "sysroot").Output()
	if err != nil {
		t.Fatal(err)
	}
	sysroot := strings.TrimSpace(string(out))
	return filepath.Join(sysroot, "bin", "rustc"), sysroot
}

func TestBuildScriptRealRustc(t *testing.T) {
	rustc, sysroot := rustSysroot(t)
	// Two exec roots: the outputs must not depend on which one ran.
	var flags [2]string
	var outFiles [2][]byte
	for i := range flags {
		root := t.TempDir()
		chdir(t, root)
		os.MkdirAll("crate", 0o755)
		// A build script in Rust: prints directives using its environment
		// and writes a file that mentions OUT_DIR into OUT_DIR.
		src := `use std::env;
fn main() {
    let out = env::var("OUT_DIR").unwrap();
    assert!(std::path::Path::new(&out).is_absolute());
    assert_eq!(env::var("CARGO_CFG_TARGET_OS").unwrap(), "linux");
    assert_eq!(env::var("CARGO_FEATURE_FAST_PATH").unwrap(), "1");
    assert!(env::var("HOME").is_err(), "HOME leaked into the build script");
    println!("cargo:rustc-cfg=has_fast_path");
    println!("cargo:rustc-env=GEN={}/gen.rs", out);
    std::fs::write(format!("{}/gen.rs", out), format!("// from {}\npub const X: u32 = 1;\n", out)).unwrap();
}
`
		if err := os.WriteFile("crate/build.rs", []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(rustc, "--edition=2021", "--crate-name=build_script_build", "-o", "crate/build_script", "crate/build.rs")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("compiling the build script: %v\n%s", err, out)
		}
		t.Setenv("HOME", "")
		os.Unsetenv("HOME")
		var stderr bytes.Buffer
		err := runBuildScript([]string{
			"--script", "crate/build_script", "--crate", "demo", "--rustc", rustc, "--sysroot", sysroot,
			"--target", "x86_64-unknown-linux-gnu", "--host", "x86_64-unknown-linux-gnu",
			"--manifest-dir", "crate", "--out-dir", "out", "--flags-out", "flags", "--feature", "fast-path",
		}, &stderr, &stderr)
		if err != nil {
			t.Fatalf("build-script: %v\n%s", err, stderr.String())
		}
		b, _ := os.ReadFile("flags")
		flags[i] = string(b)
		outFiles[i], _ = os.ReadFile("out/gen.rs")
	}
	if flags[0] != flags[1] || !bytes.Equal(outFiles[0], outFiles[1]) {
		t.Errorf("build script outputs depend on the exec root:\n%q\n%q\n%q\n%q", flags[0], flags[1], outFiles[0], outFiles[1])
	}
	if flags[0] != "cfg has_fast_path\nenv GEN=${pwd}/out/gen.rs\n" {
		t.Errorf("flags = %q", flags[0])
	}
	if string(outFiles[0]) != "// from out\npub const X: u32 = 1;\n" {
		t.Errorf("OUT_DIR file = %q", outFiles[0])
	}
}

func TestBuildScriptFailureNamesCrate(t *testing.T) {
	rustc, sysroot := rustSysroot(t)
	chdir(t, t.TempDir())
	os.MkdirAll("crate", 0o755)
	os.WriteFile("crate/build.sh", []byte("#!/bin/sh\necho 'cannot find libfoo' >&2\nexit 3\n"), 0o755)
	var stderr bytes.Buffer
	err := runBuildScript([]string{
		"--script", "crate/build.sh", "--crate", "foo-sys", "--rustc", rustc, "--sysroot", sysroot,
		"--target", "x86_64-unknown-linux-gnu", "--host", "x86_64-unknown-linux-gnu",
		"--manifest-dir", "crate", "--out-dir", "out", "--flags-out", "flags",
	}, &stderr, &stderr)
	if err == nil || !strings.Contains(err.Error(), "foo-sys") || !strings.Contains(err.Error(), "cannot find libfoo") {
		t.Fatalf("want an error naming foo-sys with the script's message, got %v", err)
	}
}

func bindgenArgs(header string) []string {
	return []string{
		"--bindgen", "/usr/bin/bindgen", "--libclang", "/usr/lib/llvm-21/lib/libclang-21.so.1",
		"--header", header, "--out", "out.rs", "--arg=--allowlist-function=demo_.*", "--arg=--allowlist-type=demo_.*",
		"--", "-I", ".",
	}
}

func TestBindgenNormalisedAcrossRoots(t *testing.T) {
	needTool(t, "bindgen")
	var outs [2][]byte
	for i := range outs {
		chdir(t, t.TempDir())
		os.WriteFile("demo.h", []byte("typedef struct demo_point { int x; int y; } demo_point;\nint demo_add(demo_point *p);\n"), 0o644)
		var stderr bytes.Buffer
		if err := runBindgen(bindgenArgs("demo.h"), &stderr, &stderr); err != nil {
			t.Fatalf("bindgen: %v\n%s", err, stderr.String())
		}
		outs[i], _ = os.ReadFile("out.rs")
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Errorf("bindings differ between exec roots")
	}
	if !bytes.Contains(outs[0], []byte("pub fn demo_add")) || !bytes.Contains(outs[0], []byte("pub struct demo_point")) {
		t.Errorf("unexpected bindings:\n%s", outs[0])
	}
}

func TestBindgenFailureNamesHeader(t *testing.T) {
	needTool(t, "bindgen")
	chdir(t, t.TempDir())
	os.WriteFile("broken.h", []byte("#include \"no_such_header.h\"\nint demo_f(void);\n"), 0o644)
	var stderr bytes.Buffer
	err := runBindgen(bindgenArgs("broken.h"), &stderr, &stderr)
	if err == nil {
		t.Fatal("bindgen on a broken header succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "broken.h") || !strings.Contains(msg, "no_such_header.h") {
		t.Errorf("error does not name the header and the problem: %s", msg)
	}
	if strings.Contains(msg, "stack backtrace") || strings.Contains(msg, "RUST_BACKTRACE") {
		t.Errorf("error carries a backtrace: %s", msg)
	}
	if _, err := os.Stat("out.rs"); err == nil {
		t.Error("a failed run left an output")
	}
	if err := runBindgen(bindgenArgs("missing.h"), &stderr, &stderr); err == nil || !strings.Contains(err.Error(), "missing.h") {
		t.Errorf("missing header: %v", err)
	}
}

func TestNormaliseBindings(t *testing.T) {
	got := string(normaliseBindings([]byte("// /x/root/a.h  \r\npub const A: u32 = 1;\t\n\n\n"), "/x/root"))
	if got != "// a.h\npub const A: u32 = 1;\n" {
		t.Errorf("got %q", got)
	}
}
