package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

func init() {
	register("build-script", "run a crate's compiled build.rs with cargo's environment; normalise its output and OUT_DIR", runBuildScript)
}

// runBuildScript implements
//
//	builder build-script --script EXE --crate NAME --rustc PATH --sysroot DIR --target T --host H
//	    --manifest-dir DIR --out-dir DIR --flags-out FILE [--feature F]... [--env K=V]...
//	    [--links-dep LINKS=FLAGSFILE]...
//
// The script runs in its manifest directory with the environment cargo would
// give it (absolute OUT_DIR, CARGO_MANIFEST_DIR, RUSTC, TARGET, HOST,
// CARGO_CFG_*, CARGO_FEATURE_*, ...), computed inside the action so that no
// absolute path is part of the action key. Its cargo: directives are written
// to --flags-out with the working directory replaced by ${pwd}, and files it
// left in OUT_DIR get the same treatment (paths made exec-root relative) if
// they are text. The metadata of each --links-dep (a dependency's build
// script output) becomes DEP_<LINKS>_<KEY>, as cargo sets it.
func runBuildScript(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("build-script", stderr)
	script := fs.String("script", "", "the compiled build script")
	crate := fs.String("crate", "", "the package the script belongs to (for messages)")
	rustc := fs.String("rustc", "", "rustc executable")
	sysroot := fs.String("sysroot", "", "rustc sysroot directory")
	target := fs.String("target", "", "target triple")
	host := fs.String("host", "", "host triple")
	manifestDir := fs.String("manifest-dir", "", "the crate's directory (holds Cargo.toml)")
	outDir := fs.String("out-dir", "", "OUT_DIR (an output directory)")
	flagsOut := fs.String("flags-out", "", "where to write the normalised cargo: directives")
	optLevel := fs.String("opt-level", "0", "OPT_LEVEL")
	var features, envs, linksDeps stringList
	fs.Var(&linksDeps, "links-dep", "LINKS=FILE: the flags file of a dependency's build script with that links key (repeatable)")
	fs.Var(&features, "feature", "enabled cargo feature (repeatable)")
	fs.Var(&envs, "env", "K=V extra environment (repeatable); ${pwd} is expanded")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for name, v := range map[string]string{"script": *script, "rustc": *rustc, "target": *target, "host": *host, "manifest-dir": *manifestDir, "out-dir": *outDir, "flags-out": *flagsOut} {
		if v == "" {
			return fmt.Errorf("--%s is required", name)
		}
	}
	if *crate == "" {
		*crate = filepath.Base(*manifestDir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	out := absPath(*outDir, wd)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	rustcAbs := absPath(*rustc, wd)
	cfgEnv, err := targetCfgEnv(rustcAbs, absPath(*sysroot, wd), *target)
	if err != nil {
		return fmt.Errorf("%s: %v", *crate, err)
	}

	env := os.Environ()
	profile := "debug"
	if *optLevel != "0" {
		profile = "release"
	}
	env = append(env,
		"CARGO_MANIFEST_DIR="+absPath(*manifestDir, wd),
		"OUT_DIR="+out,
		"RUSTC="+rustcAbs,
		"RUSTDOC=",
		"RUSTC_LINKER=",
		"RUSTC_WRAPPER=",
		"CARGO_ENCODED_RUSTFLAGS=",
		"TARGET="+*target,
		"HOST="+*host,
		"NUM_JOBS=1",
		"OPT_LEVEL="+*optLevel,
		"DEBUG=false",
		"PROFILE="+profile,
	)
	env = append(env, cfgEnv...)
	for _, f := range features {
		env = append(env, "CARGO_FEATURE_"+envName(f)+"=1")
	}
	depEnv, err := linksDepEnv(linksDeps, wd)
	if err != nil {
		return fmt.Errorf("%s: %v", *crate, err)
	}
	env = append(env, depEnv...)
	for _, kv := range envs {
		env = append(env, expandPwd(kv, wd))
	}

	cmd := exec.Command(absPath(*script, wd))
	cmd.Dir = absPath(*manifestDir, wd)
	cmd.Env = env
	var so, se bytes.Buffer
	cmd.Stdout = &so
	cmd.Stderr = &se
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(tail(se.String()+so.String(), 30))
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("build script of %s failed (exit status %d):\n%s", *crate, ee.ExitCode(), strings.ReplaceAll(msg, wd, pwdVar))
		}
		return fmt.Errorf("running the build script of %s: %v", *crate, err)
	}
	flags, err := parseBuildScriptOutput(so.String(), wd)
	if err != nil {
		return fmt.Errorf("build script of %s: %v", *crate, err)
	}
	for _, w := range flags.warnings {
		fmt.Fprintf(stderr, "warning: build script of %s: %s\n", *crate, w)
	}
	if err := normaliseTree(out, wd); err != nil {
		return fmt.Errorf("build script of %s: normalising OUT_DIR: %v", *crate, err)
	}
	return writeFileAtomic(*flagsOut, []byte(flags.encode()), 0o644)
}

// targetCfgEnv asks rustc for the target's cfg values and returns them as
// cargo's CARGO_CFG_* variables (multiple values joined by commas).
func targetCfgEnv(rustc, sysroot, target string) ([]string, error) {
	cmd := exec.Command(rustc, "--print", "cfg", "--target", target, "--sysroot", sysroot)
	var se bytes.Buffer
	cmd.Stderr = &se
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rustc --print cfg --target %s: %v: %s", target, err, strings.TrimSpace(se.String()))
	}
	return cfgEnv(string(out)), nil
}

func cfgEnv(printCfg string) []string {
	vals := map[string][]string{}
	var order []string
	for _, line := range strings.Split(printCfg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, hasVal := strings.Cut(line, "=")
		if _, seen := vals[k]; !seen {
			order = append(order, k)
			vals[k] = nil
		}
		if hasVal {
			vals[k] = append(vals[k], strings.Trim(v, `"`))
		}
	}
	sort.Strings(order)
	var env []string
	for _, k := range order {
		if k == "debug_assertions" {
			continue // cargo sets it from the profile; ours has none
		}
		env = append(env, "CARGO_CFG_"+envName(k)+"="+strings.Join(vals[k], ","))
	}
	return env
}

// linksDepEnv reads the metadata of dependencies' build scripts: specs
// are LINKS=FLAGSFILE; each metadata K=V becomes DEP_<LINKS>_<K>=V.
func linksDepEnv(specs []string, wd string) ([]string, error) {
	var env []string
	for _, s := range specs {
		links, file, ok := strings.Cut(s, "=")
		if !ok || links == "" || file == "" {
			return nil, fmt.Errorf("--links-dep %q: want LINKS=FLAGSFILE", s)
		}
		flags, err := readBuildScriptFlags(absPath(file, wd))
		if err != nil {
			return nil, fmt.Errorf("metadata of the %s links dependency: %v", links, err)
		}
		for _, kv := range flags.metadata {
			k, v, _ := strings.Cut(kv, "=")
			env = append(env, "DEP_"+envName(links)+"_"+envName(k)+"="+expandPwd(v, wd))
		}
	}
	return env, nil
}

// envName turns a feature or cfg name into cargo's variable spelling.
func envName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

// normaliseTree makes the text files a build script wrote independent of
// the exec root: occurrences of wd become exec-root-relative paths. Binary
// files (objects, archives, anything with a NUL byte) are left alone: a
// replacement of a different length would corrupt them.
func normaliseTree(root, wd string) error {
	abs := []byte(wd + "/")
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Contains(data, []byte(wd)) || isBinary(data) {
			return nil
		}
		data = bytes.ReplaceAll(data, abs, nil)
		data = bytes.ReplaceAll(data, []byte(wd), []byte("."))
		return writeFileAtomic(p, data, 0o644)
	})
}

// isBinary tells object files, archives and other binary data from text.
func isBinary(data []byte) bool {
	return bytes.HasPrefix(data, []byte("!<arch>\n")) || bytes.HasPrefix(data, []byte("\x7fELF")) || bytes.IndexByte(data, 0) >= 0
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
