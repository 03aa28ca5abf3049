// Package crates turns a Cargo.lock and the directory `cargo vendor` made
// into Bazel targets: one rust_library or rust_proc_macro per crate (with
// its version, edition, resolved features and dependencies), one
// cargo_build_script per build.rs, and aliases for the root manifest's
// direct dependencies. Target-specific dependencies become select()s over
// the platform table; overrides.toml, the user's file, adds to or replaces
// parts of single crates' targets. It is the engine of `ferrule vendor`.
//
// Output is deterministic: the same lock file and vendor directory always
// produce the same bytes. Inconsistencies (a crate missing from the vendor
// directory, a vendored copy whose checksum or version disagrees with the
// lock file) are errors naming the crate.
package crates

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Package is one crate of the lock file, with what its vendored manifest says.
type Package struct {
	Name     string
	Version  string
	Checksum string   // sha256 of the .crate, from Cargo.lock
	LockDeps []string // dependency entries from Cargo.lock ("name" or "name version")

	Dir          string // directory name under the vendor directory
	Edition      string
	CrateName    string // the library's crate name
	LibPath      string // crate root, relative to Dir
	ProcMacro    bool
	BuildScript  string // relative to Dir, "" if none
	Links        string
	Features     map[string][]string
	Deps         []Dep
	BuildDeps    []Dep
	HasBuildFile bool
}

// Dep is one dependency declared in a manifest.
type Dep struct {
	Key             string // the name the crate uses (the table key)
	Package         string // the package it refers to
	Optional        bool
	DefaultFeatures bool
	Features        []string
	Target          string // cfg(...) or triple for target-specific dependencies, "" otherwise
}

// Lock is a parsed Cargo.lock.
type Lock struct {
	Packages []*Package
	Members  []*Package // workspace members (no source): the roots
}

// ReadLock parses a Cargo.lock file.
func ReadLock(path string) (*Lock, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseLock(path, data)
}

// parseLock parses the contents of the Cargo.lock file at path.
func parseLock(path string, data []byte) (*Lock, error) {
	doc, err := parseTOML(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	lock := &Lock{}
	pkgs, _ := doc["package"].([]any)
	for i, p := range pkgs {
		m, _ := p.(map[string]any)
		pkg := &Package{Name: str(m["name"]), Version: str(m["version"]), Checksum: str(m["checksum"])}
		if pkg.Name == "" || pkg.Version == "" {
			return nil, fmt.Errorf("%s: [[package]] #%d has no name or version", path, i+1)
		}
		for _, d := range list(m["dependencies"]) {
			pkg.LockDeps = append(pkg.LockDeps, str(d))
		}
		if str(m["source"]) == "" {
			lock.Members = append(lock.Members, pkg) // not a vendored crate
			continue
		}
		if !strings.HasPrefix(str(m["source"]), "registry+") {
			return nil, fmt.Errorf("%s: crate %s %s comes from %s: only registry crates can be vendored", path, pkg.Name, pkg.Version, str(m["source"]))
		}
		lock.Packages = append(lock.Packages, pkg)
	}
	return lock, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func table(v any) map[string]any {
	t, _ := v.(map[string]any)
	return t
}

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, str(x))
	}
	return out
}

// ErrMissingCrate is wrapped by errors about crates absent from the vendor directory.
var ErrMissingCrate = errors.New("crate missing from the vendor directory")

// ErrMismatch is wrapped by errors about vendored crates that disagree with the lock file.
var ErrMismatch = errors.New("vendored crate disagrees with Cargo.lock")

// loadVendored fills in a package from its vendored copy, checking it
// against the lock file.
func loadVendored(vendorDir string, pkg *Package) error {
	dir := pkg.Name + "-" + pkg.Version
	if _, err := os.Stat(filepath.Join(vendorDir, dir, "Cargo.toml")); err != nil {
		if _, err2 := os.Stat(filepath.Join(vendorDir, pkg.Name, "Cargo.toml")); err2 != nil {
			return fmt.Errorf("%w: crate %s %s (from Cargo.lock) is not in %s: run tools/setup.d/20-crates.sh (cargo vendor --versioned-dirs)", ErrMissingCrate, pkg.Name, pkg.Version, vendorDir)
		}
		dir = pkg.Name
	}
	pkg.Dir = dir
	sumData, err := os.ReadFile(filepath.Join(vendorDir, dir, ".cargo-checksum.json"))
	if err != nil {
		return fmt.Errorf("%w: crate %s %s: %s has no .cargo-checksum.json (not made by cargo vendor?)", ErrMismatch, pkg.Name, pkg.Version, filepath.Join(vendorDir, dir))
	}
	var sums struct {
		Package string `json:"package"`
	}
	if err := json.Unmarshal(sumData, &sums); err != nil {
		return fmt.Errorf("crate %s %s: bad .cargo-checksum.json: %v", pkg.Name, pkg.Version, err)
	}
	if pkg.Checksum != "" && sums.Package != pkg.Checksum {
		return fmt.Errorf("%w: crate %s %s: Cargo.lock has checksum %s but the vendored copy in %s has %s: re-run cargo vendor", ErrMismatch, pkg.Name, pkg.Version, pkg.Checksum, filepath.Join(vendorDir, dir), sums.Package)
	}
	manifestPath := filepath.Join(vendorDir, dir, "Cargo.toml")
	data, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	doc, err := parseTOML(string(data))
	if err != nil {
		return fmt.Errorf("crate %s %s: %s: %v", pkg.Name, pkg.Version, manifestPath, err)
	}
	p := table(doc["package"])
	if v := str(p["version"]); v != pkg.Version {
		return fmt.Errorf("%w: crate %s: Cargo.lock pins version %s but %s says %s", ErrMismatch, pkg.Name, pkg.Version, manifestPath, v)
	}
	if n := str(p["name"]); n != pkg.Name {
		return fmt.Errorf("%w: crate %s %s: %s is package %q", ErrMismatch, pkg.Name, pkg.Version, manifestPath, n)
	}
	pkg.Edition = str(p["edition"])
	if pkg.Edition == "" {
		pkg.Edition = "2015"
	}
	pkg.Links = str(p["links"])
	lib := table(doc["lib"])
	pkg.CrateName = strings.ReplaceAll(pkg.Name, "-", "_")
	if n := str(lib["name"]); n != "" {
		pkg.CrateName = n
	}
	pkg.LibPath = str(lib["path"])
	if pkg.LibPath == "" {
		pkg.LibPath = "src/lib.rs"
	}
	if b, ok := lib["proc-macro"].(bool); ok && b {
		pkg.ProcMacro = true
	}
	switch b := p["build"].(type) {
	case string:
		pkg.BuildScript = b
	case bool:
		// build = false disables the automatic build.rs
	default:
		if _, err := os.Stat(filepath.Join(vendorDir, dir, "build.rs")); err == nil {
			pkg.BuildScript = "build.rs"
		}
	}
	pkg.Features = map[string][]string{}
	for k, v := range table(doc["features"]) {
		pkg.Features[k] = strs(v)
	}
	pkg.Deps = deps(doc["dependencies"], "")
	pkg.BuildDeps = deps(doc["build-dependencies"], "")
	targets := table(doc["target"])
	names := sortedKeys(targets)
	for _, t := range names {
		tt := table(targets[t])
		pkg.Deps = append(pkg.Deps, deps(tt["dependencies"], t)...)
		pkg.BuildDeps = append(pkg.BuildDeps, deps(tt["build-dependencies"], t)...)
	}
	for _, f := range []string{"BUILD", "BUILD.bazel"} {
		if _, err := os.Stat(filepath.Join(vendorDir, dir, f)); err == nil {
			pkg.HasBuildFile = true
		}
	}
	return nil
}

func deps(v any, target string) []Dep {
	t := table(v)
	var out []Dep
	for _, key := range sortedKeys(t) {
		d := Dep{Key: key, Package: key, DefaultFeatures: true, Target: target}
		switch spec := t[key].(type) {
		case map[string]any:
			if p := str(spec["package"]); p != "" {
				d.Package = p
			}
			d.Optional, _ = spec["optional"].(bool)
			if df, ok := spec["default-features"].(bool); ok {
				d.DefaultFeatures = df
			}
			if df, ok := spec["default_features"].(bool); ok {
				d.DefaultFeatures = df
			}
			d.Features = strs(spec["features"])
		}
		out = append(out, d)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
