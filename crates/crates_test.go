package crates

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fixture writes a small workspace: a root manifest and lock, and a vendor
// directory with the given crates (dir name -> Cargo.toml body).
type fixture struct {
	dir    string
	crates map[string]string // "name-version" -> Cargo.toml
	sums   map[string]string // "name-version" -> package checksum
}

func (f *fixture) write(t *testing.T, root, lock string) Options {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(f.dir, "Cargo.toml"), []byte(root), 0o644))
	must(os.WriteFile(filepath.Join(f.dir, "Cargo.lock"), []byte(lock), 0o644))
	for d, manifest := range f.crates {
		cd := filepath.Join(f.dir, "vendor", d)
		must(os.MkdirAll(filepath.Join(cd, "src"), 0o755))
		must(os.WriteFile(filepath.Join(cd, "Cargo.toml"), []byte(manifest), 0o644))
		must(os.WriteFile(filepath.Join(cd, "src", "lib.rs"), nil, 0o644))
		sum := f.sums[d]
		must(os.WriteFile(filepath.Join(cd, ".cargo-checksum.json"), []byte(`{"files":{},"package":"`+sum+`"}`), 0o644))
	}
	return Options{
		Manifest:  filepath.Join(f.dir, "Cargo.toml"),
		Lock:      filepath.Join(f.dir, "Cargo.lock"),
		VendorDir: filepath.Join(f.dir, "vendor"),
		Repo:      "crates",
	}
}

const rootManifest = `[package]
name = "root"
version = "0.0.0"

[dependencies]
app = { version = "1", features = ["fancy"] }
`

const lockFile = `version = 4

[[package]]
name = "root"
version = "0.0.0"
dependencies = ["app"]

[[package]]
name = "app"
version = "1.2.3"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "aaaa"
dependencies = ["helper", "macros", "opt", "winonly", "bdep"]

[[package]]
name = "helper"
version = "0.5.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "bbbb"

[[package]]
name = "macros"
version = "0.1.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "cccc"

[[package]]
name = "opt"
version = "2.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "dddd"

[[package]]
name = "winonly"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "eeee"

[[package]]
name = "bdep"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ffff"
`

func newFixture(t *testing.T) *fixture {
	return &fixture{
		dir: t.TempDir(),
		crates: map[string]string{
			"app-1.2.3": `[package]
edition = "2021"
name = "app"
version = "1.2.3"
build = "build.rs"
description = """
A multi-line
description."""

[features]
default = ["std"]
std = ["renamed_helper/std"]
fancy = ["dep:opt", "renamed_helper?/extra"]
unused = ["winonly"]

[dependencies.renamed_helper]
version = "0.5"
package = "helper"
default-features = false

[dependencies.macros]
version = "0.1"

[dependencies.opt]
version = "2"
optional = true

[build-dependencies.bdep]
version = "1"

[target.'cfg(windows)'.dependencies.winonly]
version = "1"

[dev-dependencies.never]
version = "9"
`,
			"helper-0.5.0": `[package]
name = "helper"
version = "0.5.0"

[features]
std = []
extra = []
default = ["std"]
`,
			"macros-0.1.0": `[package]
name = "macros"
version = "0.1.0"
edition = "2018"

[lib]
proc-macro = true
`,
			"opt-2.0.0": `[package]
name = "opt"
version = "2.0.0"
edition = "2021"
`,
			"winonly-1.0.0": `[package]
name = "winonly"
version = "1.0.0"
`,
			"bdep-1.0.0": `[package]
name = "bdep"
version = "1.0.0"
`,
		},
		sums: map[string]string{"app-1.2.3": "aaaa", "helper-0.5.0": "bbbb", "macros-0.1.0": "cccc", "opt-2.0.0": "dddd", "winonly-1.0.0": "eeee", "bdep-1.0.0": "ffff"},
	}
}

// block returns the generated text of one target.
func block(t *testing.T, build, rule, name string) string {
	t.Helper()
	start := strings.Index(build, rule+"(\n    name = \""+name+"\",")
	if start < 0 {
		t.Fatalf("no %s %q in:\n%s", rule, name, build)
	}
	end := strings.Index(build[start:], "\n)\n")
	return build[start : start+end]
}

func TestGenerate(t *testing.T) {
	f := newFixture(t)
	res, err := Generate(f.write(t, rootManifest, lockFile))
	if err != nil {
		t.Fatal(err)
	}
	build := string(res.RepoBuild)
	app := block(t, build, "rust_library", "app-1.2.3")
	for _, want := range []string{
		`crate_name = "app"`,
		`version = "1.2.3"`,
		`edition = "2021"`,
		`"default",`, `"fancy",`, `"std",`,
		`":helper-0.5.0",`, `":opt-2.0.0",`,
		`proc_macro_deps = [
        ":macros-0.1.0",`,
		`":helper-0.5.0": "renamed_helper",`,
		`build_script = ":app-1.2.3_build_script",`,
	} {
		if !strings.Contains(app, want) {
			t.Errorf("app target lacks %q:\n%s", want, app)
		}
	}
	if strings.Contains(app, "winonly") || strings.Contains(app, `"unused"`) || strings.Contains(build, "never") {
		t.Errorf("windows-only, unused or dev dependencies leaked into the targets:\n%s", build)
	}
	// helper: default features off for the renamed edge, but "std" comes in
	// through app's std feature and "extra" through the weak helper?/extra
	// (helper is active).
	helper := block(t, build, "rust_library", "helper-0.5.0")
	if !strings.Contains(helper, `"extra",`) || !strings.Contains(helper, `"std",`) || strings.Contains(helper, `"default"`) {
		t.Errorf("helper features wrong:\n%s", helper)
	}
	bs := block(t, build, "cargo_build_script", "app-1.2.3_build_script")
	if !strings.Contains(bs, `":bdep-1.0.0",`) || !strings.Contains(bs, `manifest_dir = "app-1.2.3"`) {
		t.Errorf("build script target wrong:\n%s", bs)
	}
	macros := block(t, build, "rust_proc_macro", "macros-0.1.0")
	if !strings.Contains(macros, `edition = "2018"`) {
		t.Errorf("proc macro target wrong:\n%s", macros)
	}
	if !strings.Contains(build, "# app 1.2.3 (sha256 aaaa)") {
		t.Errorf("checksum comment missing")
	}
	if !strings.Contains(string(res.AliasBuild), `actual = "@crates//:app-1.2.3"`) {
		t.Errorf("alias wrong:\n%s", res.AliasBuild)
	}
	if strings.Contains(build, "winonly-1.0.0\"") && strings.Contains(build, "rust_library(\n    name = \"winonly") {
		t.Errorf("inactive crate got a target")
	}

	// Same inputs, same bytes.
	for i := 0; i < 3; i++ {
		again, err := Generate(f.write(t, rootManifest, lockFile))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.RepoBuild, res.RepoBuild) || !bytes.Equal(again.AliasBuild, res.AliasBuild) {
			t.Fatal("generating twice from the same lock file gave different output")
		}
	}
}

func TestMissingCrate(t *testing.T) {
	f := newFixture(t)
	delete(f.crates, "opt-2.0.0")
	_, err := Generate(f.write(t, rootManifest, lockFile))
	if !errors.Is(err, ErrMissingCrate) || !strings.Contains(err.Error(), "crate opt 2.0.0") {
		t.Fatalf("want a missing-crate error naming opt 2.0.0, got %v", err)
	}
}

func TestChecksumMismatch(t *testing.T) {
	f := newFixture(t)
	f.sums["helper-0.5.0"] = "9999"
	_, err := Generate(f.write(t, rootManifest, lockFile))
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "crate helper 0.5.0") || !strings.Contains(err.Error(), "9999") {
		t.Fatalf("want a checksum mismatch naming helper, got %v", err)
	}
}

func TestVersionMismatch(t *testing.T) {
	f := newFixture(t)
	f.crates["opt-2.0.0"] = strings.Replace(f.crates["opt-2.0.0"], `version = "2.0.0"`, `version = "2.0.1"`, 1)
	_, err := Generate(f.write(t, rootManifest, lockFile))
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "crate opt") || !strings.Contains(err.Error(), "2.0.1") {
		t.Fatalf("want a version mismatch naming opt, got %v", err)
	}
}

func TestLockMissingDependency(t *testing.T) {
	f := newFixture(t)
	lock := strings.Replace(lockFile, `dependencies = ["helper", "macros", "opt", "winonly", "bdep"]`, `dependencies = ["macros", "opt", "winonly", "bdep"]`, 1)
	_, err := Generate(f.write(t, rootManifest, lock))
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "helper") || !strings.Contains(err.Error(), "app 1.2.3") {
		t.Fatalf("want an error naming app and helper, got %v", err)
	}
}

func TestNoVendorDir(t *testing.T) {
	f := newFixture(t)
	o := f.write(t, rootManifest, lockFile)
	o.VendorDir = filepath.Join(f.dir, "nowhere")
	if _, err := Generate(o); !errors.Is(err, ErrMissingCrate) {
		t.Fatalf("want ErrMissingCrate, got %v", err)
	}
}

// TestCommittedTargetsUpToDate regenerates third_party/crates from the real
// lock file and vendor directory and compares with the committed files.
func TestCommittedTargetsUpToDate(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	vendor := filepath.Join(repo, "third_party", "vendor")
	if _, err := os.Stat(vendor); err != nil {
		if os.Getenv("FERRULE_E2E") == "1" {
			t.Fatalf("%s is missing: run tools/setup.sh (tools/setup.d/20-crates.sh)", vendor)
		}
		t.Skip("third_party/vendor not set up (run tools/setup.d/20-crates.sh)")
	}
	dir := filepath.Join(repo, "third_party", "crates")
	res, err := Generate(Options{
		Manifest:  filepath.Join(dir, "Cargo.toml"),
		Lock:      filepath.Join(dir, "Cargo.lock"),
		VendorDir: vendor,
		Repo:      "ferrule_crates",
		Overrides: filepath.Join(dir, "overrides.toml"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"BUILD.crates.bazel": res.RepoBuild, "BUILD.bazel": res.AliasBuild} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("third_party/crates/%s is out of date: run `go run ./cmd/ferrule vendor`", name)
		}
	}
	var hasMacro, hasBuildScript bool
	for _, p := range res.Crates {
		hasMacro = hasMacro || p.ProcMacro
		hasBuildScript = hasBuildScript || p.BuildScript != ""
	}
	if !hasMacro || !hasBuildScript {
		t.Errorf("the example's crate closure must include a proc-macro crate and a build script (macro %v, build script %v)", hasMacro, hasBuildScript)
	}
}

// withPlatformDeps adds to app a dependency for aarch64 only and one for
// every unix target, and gives helper a links key and a build script.
func withPlatformDeps(f *fixture) string {
	f.crates["app-1.2.3"] += `
[target.'cfg(target_arch = "aarch64")'.dependencies.armonly]
version = "1"

[target.'cfg(unix)'.dependencies.unixdep]
version = "1"
`
	f.crates["armonly-1.0.0"] = "[package]\nname = \"armonly\"\nversion = \"1.0.0\"\n"
	f.crates["unixdep-1.0.0"] = "[package]\nname = \"unixdep\"\nversion = \"1.0.0\"\n"
	f.crates["helper-0.5.0"] = strings.Replace(f.crates["helper-0.5.0"], `version = "0.5.0"`, "version = \"0.5.0\"\nlinks = \"helper\"\nbuild = \"build.rs\"", 1)
	f.sums["armonly-1.0.0"], f.sums["unixdep-1.0.0"] = "a1", "u1"
	lock := strings.Replace(lockFile, `"winonly", "bdep"]`, `"winonly", "bdep", "armonly", "unixdep"]`, 1)
	return lock + `
[[package]]
name = "armonly"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "a1"

[[package]]
name = "unixdep"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "u1"
`
}

func TestPlatformSelect(t *testing.T) {
	f := newFixture(t)
	lock := withPlatformDeps(f)
	res, err := Generate(f.write(t, rootManifest, lock))
	if err != nil {
		t.Fatal(err)
	}
	build := string(res.RepoBuild)
	app := block(t, build, "rust_library", "app-1.2.3")
	for _, want := range []string{
		`":unixdep-1.0.0",`, // cfg(unix): every platform of the table, so unconditional
		`] + select({
        ":platform_aarch64-unknown-linux-gnu": [":armonly-1.0.0"],
        "//conditions:default": [],
    }),`,
	} {
		if !strings.Contains(app, want) {
			t.Errorf("app target lacks %q:\n%s", want, app)
		}
	}
	if strings.Contains(app, "winonly") {
		t.Errorf("windows-only dependency listed:\n%s", app)
	}
	if !strings.Contains(build, "rust_library(\n    name = \"armonly-1.0.0\",") {
		t.Errorf("the aarch64-only crate has no target")
	}
	for _, want := range []string{
		"config_setting(\n    name = \"platform_aarch64-unknown-linux-gnu\",\n    constraint_values = [\n        \"@platforms//cpu:aarch64\",\n        \"@platforms//os:linux\",\n    ],\n)",
		"config_setting(\n    name = \"platform_x86_64-unknown-linux-gnu\",",
	} {
		if !strings.Contains(build, want) {
			t.Errorf("BUILD lacks %q", want)
		}
	}

	// One triple only: the aarch64 crate is gone and nothing is selected.
	o := f.write(t, rootManifest, lock)
	o.Target = "x86_64-unknown-linux-gnu"
	res, err = Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(res.RepoBuild), "armonly") || strings.Contains(string(res.RepoBuild), "select(") {
		t.Errorf("x86_64-only generation lists aarch64 dependencies:\n%s", res.RepoBuild)
	}
	o.Target = "riscv64gc-unknown-linux-gnu"
	if _, err := Generate(o); err == nil || !strings.Contains(err.Error(), "riscv64gc-unknown-linux-gnu") {
		t.Errorf("want an error naming the unknown target, got %v", err)
	}
}

func TestSourcesAndLinks(t *testing.T) {
	f := newFixture(t)
	res, err := Generate(f.write(t, rootManifest, withPlatformDeps(f)))
	if err != nil {
		t.Fatal(err)
	}
	build := string(res.RepoBuild)
	bs := block(t, build, "cargo_build_script", "app-1.2.3_build_script")
	// The whole crate's .rs files (a build script may include!() src/...),
	// and the links crate's build script, whose metadata becomes DEP_HELPER_*.
	for _, want := range []string{
		`srcs = glob(["app-1.2.3/**/*.rs"]),`,
		"links_deps = [\n        \":helper-0.5.0_build_script\",\n    ],",
	} {
		if !strings.Contains(bs, want) {
			t.Errorf("build script target lacks %q:\n%s", want, bs)
		}
	}
	if !strings.Contains(block(t, build, "cargo_build_script", "helper-0.5.0_build_script"), `links = "helper",`) {
		t.Errorf("helper's build script lacks its links key")
	}
	app := block(t, build, "rust_library", "app-1.2.3")
	if !strings.Contains(app, `srcs = glob(["app-1.2.3/**/*.rs"]),`) || strings.Contains(app, "examples") {
		t.Errorf("library sources must include every .rs file (examples/ too):\n%s", app)
	}
}

func TestOverrides(t *testing.T) {
	f := newFixture(t)
	o := f.write(t, rootManifest, withPlatformDeps(f))
	o.Overrides = filepath.Join(f.dir, "overrides.toml")
	write := func(s string) {
		if err := os.WriteFile(o.Overrides, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`# the user's
[app]
build_script_env = { PYO3_NO_PYTHON = "1", CONF = "${pwd}/x" }
build_script_data = ["//python:config"]
compile_data = ["//data:file", "@other//:f"]
rustc_env = { APP_MODE = "bazel" }
rustc_flags = ["-Cdebug-assertions=off"]
deps = ["//native:shim"]

["helper-0.5.0"]
build_script = "//native:helper_build_script"
`)
	res, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	build := string(res.RepoBuild)
	bs := block(t, build, "cargo_build_script", "app-1.2.3_build_script")
	for _, want := range []string{
		"data = glob([\"app-1.2.3/**\"]) + [\n        \"@//python:config\",\n    ],",
		"build_script_env = {\n        \"CONF\": \"${pwd}/x\",\n        \"PYO3_NO_PYTHON\": \"1\",\n    },",
		"links_deps = [\n        \"@//native:helper_build_script\",\n    ],",
	} {
		if !strings.Contains(bs, want) {
			t.Errorf("build script target lacks %q:\n%s", want, bs)
		}
	}
	app := block(t, build, "rust_library", "app-1.2.3")
	for _, want := range []string{
		"\"@//data:file\",\n        \"@other//:f\",\n    ],",
		"rustc_env = {\n        \"APP_MODE\": \"bazel\",\n    },",
		`rustc_flags = ["--cap-lints=allow", "-Cdebug-assertions=off"],`,
		"\"@//native:shim\",\n",
	} {
		if !strings.Contains(app, want) {
			t.Errorf("app target lacks %q:\n%s", want, app)
		}
	}
	if strings.Contains(build, "name = \"helper-0.5.0_build_script\"") ||
		!strings.Contains(block(t, build, "rust_library", "helper-0.5.0"), `build_script = "@//native:helper_build_script",`) {
		t.Errorf("helper's build script was not replaced:\n%s", build)
	}
	again, err := Generate(o)
	if err != nil || !bytes.Equal(again.RepoBuild, res.RepoBuild) {
		t.Fatalf("regenerating with the same overrides changed the output (err %v)", err)
	}

	write("[nosuch]\ndeps = [\"//x\"]\n")
	if _, err := Generate(o); err == nil || !strings.Contains(err.Error(), "crate nosuch is not in the resolved dependency graph") {
		t.Errorf("want an error naming the unknown crate, got %v", err)
	}
	write("[app]\ndatas = [\"//x\"]\n")
	if _, err := Generate(o); err == nil || !strings.Contains(err.Error(), "unknown key") || !strings.Contains(err.Error(), "[app]") {
		t.Errorf("want an unknown-key error naming the crate, got %v", err)
	}
	write("[app]\nrustc_env = { A = 1 }\n")
	if _, err := Generate(o); err == nil || !strings.Contains(err.Error(), "rustc_env") {
		t.Errorf("want a type error naming rustc_env, got %v", err)
	}
}
