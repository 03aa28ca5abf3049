package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func init() {
	register("rustc", "run rustc for one crate: build-script flags, OUT_DIR, ${pwd} expansion, path remapping", runRustc)
}

// pwdVar stands for the action's working directory in arguments, environment
// values and files that must not contain it (build-script output), so that
// action keys and outputs are the same wherever the exec root is.
const pwdVar = "${pwd}"

// runRustc implements
//
//	builder rustc --rustc PATH [--env K=V]... [--build-script-flags F] [--out-dir D] -- RUSTC_ARGS...
//
// It runs rustc with the action's environment plus the --env values, adds the
// cfgs, env and link flags a build script printed (see build-script), sets
// OUT_DIR, and remaps the working directory out of everything rustc writes.
func runRustc(args []string, stdout, stderr io.Writer) error {
	own, rest := splitDashDash(args)
	fs := newFlags("rustc", stderr)
	rustc := fs.String("rustc", "", "rustc executable (exec-root relative)")
	flagsFile := fs.String("build-script-flags", "", "normalised output of the crate's build script")
	outDir := fs.String("out-dir", "", "OUT_DIR the build script produced")
	var envs, linkSearchFrom stringList
	fs.Var(&envs, "env", "K=V environment for rustc (repeatable); ${pwd} is expanded")
	fs.Var(&linkSearchFrom, "link-search-from", "a dependency's build-script flags file whose link-search paths this link needs (repeatable)")
	if err := fs.Parse(own); err != nil {
		return err
	}
	if *rustc == "" || len(rest) == 0 {
		return fmt.Errorf("usage: builder rustc --rustc PATH [flags] -- RUSTC_ARGS")
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if rest, err = expandParamFiles(rest); err != nil {
		return err
	}
	env := os.Environ()
	for _, kv := range envs {
		if !strings.Contains(kv, "=") {
			return fmt.Errorf("--env %q: want K=V", kv)
		}
		env = append(env, expandPwd(kv, wd))
	}
	if *outDir != "" {
		env = append(env, "OUT_DIR="+filepath.Join(wd, *outDir))
	}
	if *flagsFile != "" {
		bs, err := readBuildScriptFlags(*flagsFile)
		if err != nil {
			return err
		}
		for _, e := range bs.env {
			env = append(env, expandPwd(e, wd))
		}
		for _, a := range bs.rustcArgs() {
			rest = append(rest, expandPwd(a, wd))
		}
	}
	for _, f := range linkSearchFrom {
		bs, err := readBuildScriptFlags(f)
		if err != nil {
			return err
		}
		for _, l := range bs.linkSearch {
			rest = append(rest, "-L", expandPwd(l, wd))
		}
	}
	rest = append(rest, "--remap-path-prefix="+wd+"=.")
	cmd := exec.Command(absPath(*rustc, wd), rest...)
	cmd.Env = env
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("rustc failed (exit status %d) compiling %s", ee.ExitCode(), crateOf(rest))
		}
		return fmt.Errorf("running rustc: %v", err)
	}
	return nil
}

// crateOf names the crate of a rustc command line for error messages.
func crateOf(args []string) string {
	for i, a := range args {
		if a == "--crate-name" && i+1 < len(args) {
			return "crate " + args[i+1]
		}
	}
	if len(args) > 0 {
		return args[0]
	}
	return "?"
}

// expandParamFiles replaces @FILE arguments (Bazel's multiline parameter
// files, used when a command line is too long) with the file's lines, so the
// builder sees every rustc argument and rustc gets one consistent list.
func expandParamFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "@") || len(a) == 1 {
			out = append(out, a)
			continue
		}
		data, err := os.ReadFile(a[1:])
		if err != nil {
			return nil, fmt.Errorf("parameter file: %v", err)
		}
		text := strings.TrimSuffix(string(data), "\n")
		if text != "" {
			out = append(out, strings.Split(text, "\n")...)
		}
	}
	return out, nil
}

func splitDashDash(args []string) (own, rest []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:]
		}
	}
	return args, nil
}

func expandPwd(s, wd string) string { return strings.ReplaceAll(s, pwdVar, wd) }

func absPath(p, wd string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(wd, p)
}

// buildScriptFlags is what a build script told cargo to pass to rustc.
type buildScriptFlags struct {
	cfgs       []string // --cfg values
	env        []string // K=V for rustc's environment (env! in the crate)
	linkArgs   []string // -C link-arg values
	linkLibs   []string // -l values
	linkSearch []string // -L values
	extraRustc []string // from cargo:rustc-flags
	metadata   []string // K=V from cargo:K=V / cargo::metadata=K=V: DEP_<LINKS>_<K> for dependents' build scripts
	warnings   []string
}

func (b *buildScriptFlags) rustcArgs() []string {
	var out []string
	for _, c := range b.cfgs {
		out = append(out, "--cfg", c)
	}
	for _, l := range b.linkSearch {
		out = append(out, "-L", l)
	}
	for _, l := range b.linkLibs {
		out = append(out, "-l", l)
	}
	for _, a := range b.linkArgs {
		out = append(out, "-Clink-arg="+a)
	}
	return append(out, b.extraRustc...)
}

// The normalised flags file has one directive per line: "cfg X", "env K=V",
// "link-arg A", "link-lib L", "link-search S", "flag F".
func (b *buildScriptFlags) encode() string {
	var sb strings.Builder
	put := func(kind string, vals []string) {
		for _, v := range vals {
			fmt.Fprintf(&sb, "%s %s\n", kind, v)
		}
	}
	put("cfg", b.cfgs)
	put("env", b.env)
	put("link-search", b.linkSearch)
	put("link-lib", b.linkLibs)
	put("link-arg", b.linkArgs)
	put("flag", b.extraRustc)
	put("metadata", b.metadata)
	return sb.String()
}

func readBuildScriptFlags(path string) (*buildScriptFlags, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := &buildScriptFlags{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		kind, val, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%s:%d: malformed line %q", path, n, line)
		}
		switch kind {
		case "cfg":
			b.cfgs = append(b.cfgs, val)
		case "env":
			b.env = append(b.env, val)
		case "link-search":
			b.linkSearch = append(b.linkSearch, val)
		case "link-lib":
			b.linkLibs = append(b.linkLibs, val)
		case "link-arg":
			b.linkArgs = append(b.linkArgs, val)
		case "flag":
			b.extraRustc = append(b.extraRustc, val)
		case "metadata":
			b.metadata = append(b.metadata, val)
		default:
			return nil, fmt.Errorf("%s:%d: unknown directive %q", path, n, kind)
		}
	}
	return b, sc.Err()
}

// parseBuildScriptOutput reads the stdout of a build script: lines
// "cargo:KEY=VALUE" or "cargo::KEY=VALUE". wd is replaced by ${pwd} in every
// value so the result does not depend on where the action ran.
func parseBuildScriptOutput(out, wd string) (*buildScriptFlags, error) {
	b := &buildScriptFlags{}
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		var rest string
		newSyntax := false
		switch {
		case strings.HasPrefix(line, "cargo::"):
			rest = line[len("cargo::"):]
			newSyntax = true
		case strings.HasPrefix(line, "cargo:"):
			rest = line[len("cargo:"):]
		default:
			continue
		}
		key, val, ok := strings.Cut(rest, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not a cargo:KEY=VALUE directive", i+1, line)
		}
		if wd != "" {
			val = strings.ReplaceAll(val, wd, pwdVar)
		}
		switch key {
		case "rustc-cfg":
			b.cfgs = append(b.cfgs, val)
		case "rustc-env":
			if !strings.Contains(val, "=") {
				return nil, fmt.Errorf("line %d: cargo:rustc-env=%s: want VAR=VALUE", i+1, val)
			}
			b.env = append(b.env, val)
		case "rustc-link-lib":
			b.linkLibs = append(b.linkLibs, val)
		case "rustc-link-search":
			b.linkSearch = append(b.linkSearch, val)
		case "rustc-link-arg", "rustc-link-arg-cdylib", "rustc-cdylib-link-arg", "rustc-link-arg-bins", "rustc-link-arg-tests":
			b.linkArgs = append(b.linkArgs, val)
		case "rustc-flags":
			fields := strings.Fields(val)
			for j := 0; j < len(fields); j++ {
				f := fields[j]
				switch {
				case (f == "-l" || f == "-L") && j+1 < len(fields):
					if f == "-l" {
						b.linkLibs = append(b.linkLibs, fields[j+1])
					} else {
						b.linkSearch = append(b.linkSearch, fields[j+1])
					}
					j++
				case strings.HasPrefix(f, "-l"):
					b.linkLibs = append(b.linkLibs, f[2:])
				case strings.HasPrefix(f, "-L"):
					b.linkSearch = append(b.linkSearch, f[2:])
				default:
					return nil, fmt.Errorf("line %d: cargo:rustc-flags only allows -l and -L, got %q", i+1, f)
				}
			}
		case "warning":
			b.warnings = append(b.warnings, val)
		case "error":
			return nil, fmt.Errorf("build script reported an error: %s", val)
		case "metadata":
			if !strings.Contains(val, "=") {
				return nil, fmt.Errorf("line %d: cargo::metadata=%s: want KEY=VALUE", i+1, val)
			}
			b.metadata = append(b.metadata, val)
		default:
			// rerun-if-*, rustc-check-cfg: nothing for Bazel to do (it
			// tracks inputs itself). Any other cargo:KEY=VALUE (old syntax)
			// is metadata for a `links` package's dependents.
			if !newSyntax && !strings.HasPrefix(key, "rerun-if-") && !strings.HasPrefix(key, "rustc-") {
				b.metadata = append(b.metadata, key+"="+val)
			}
		}
	}
	return b, nil
}
