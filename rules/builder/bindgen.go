package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

func init() {
	register("bindgen", "run bindgen on a header with a pinned libclang; normalise the bindings", runBindgen)
}

// runBindgen implements
//
//	builder bindgen --bindgen EXE --libclang SO --header H --out F [--rustfmt EXE] [--arg BINDGEN_FLAG]... -- CLANG_ARGS...
//
// bindgen finds libclang through LIBCLANG_PATH (the directory of --libclang,
// made absolute here, inside the action), and rustfmt through RUSTFMT. The
// bindings are normalised so that they are the same on every machine: the
// exec root is removed, line endings and trailing space are canonical, and
// the file ends with one newline.
func runBindgen(args []string, stdout, stderr io.Writer) error {
	own, clangArgs := splitDashDash(args)
	fs := newFlags("bindgen", stderr)
	bindgen := fs.String("bindgen", "", "bindgen executable")
	libclang := fs.String("libclang", "", "libclang shared library bindgen loads")
	header := fs.String("header", "", "the header to generate bindings for")
	out := fs.String("out", "", "output .rs file")
	rustfmt := fs.String("rustfmt", "", "rustfmt for bindgen to format the bindings with (RUSTFMT)")
	var passthrough stringList
	fs.Var(&passthrough, "arg", "a bindgen flag (repeatable), e.g. --allowlist-function=Py.*")
	if err := fs.Parse(own); err != nil {
		return err
	}
	if *bindgen == "" || *header == "" || *out == "" {
		return fmt.Errorf("--bindgen, --header and --out are required")
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(*header); err != nil {
		return fmt.Errorf("header %s: %v", *header, errors.Unwrap(err))
	}
	tmp := *out + ".raw"
	bargs := append([]string{*header, "-o", tmp}, passthrough...)
	bargs = append(bargs, "--")
	bargs = append(bargs, clangArgs...)
	cmd := exec.Command(absPath(*bindgen, wd), bargs...)
	env := append(os.Environ(), "RUST_BACKTRACE=0")
	if *rustfmt != "" {
		env = append(env, "RUSTFMT="+absPath(*rustfmt, wd))
	}
	if *libclang != "" {
		env = append(env, "LIBCLANG_PATH="+filepath.Dir(absPath(*libclang, wd)))
	}
	cmd.Env = env
	var se bytes.Buffer
	cmd.Stderr = &se
	cmd.Stdout = &se
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bindgen failed on %s:\n%s", *header, summariseBindgenError(se.String(), wd))
	}
	if msg := strings.TrimSpace(se.String()); msg != "" {
		// Warnings (e.g. unknown clang flags): show them, minus our paths.
		fmt.Fprintln(stderr, strings.ReplaceAll(msg, wd+"/", ""))
	}
	raw, err := os.ReadFile(tmp)
	if err != nil {
		return err
	}
	os.Remove(tmp)
	if len(bytes.TrimSpace(raw)) == 0 {
		return fmt.Errorf("bindgen produced no bindings for %s (check the allowlist)", *header)
	}
	return writeFileAtomic(*out, normaliseBindings(raw, wd), 0o644)
}

var panicLine = regexp.MustCompile(`(?m)^thread '.*' panicked at .*$`)

// summariseBindgenError keeps clang's diagnostics and the panic message, not
// the backtrace, and makes paths exec-root relative.
func summariseBindgenError(s, wd string) string {
	s = strings.ReplaceAll(s, wd+"/", "")
	var keep []string
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "stack backtrace:") || strings.HasPrefix(l, "note: run with `RUST_BACKTRACE") {
			break
		}
		if panicLine.MatchString(l) {
			keep = append(keep, l)
			if i+1 < len(lines) {
				next := strings.TrimSpace(lines[i+1])
				if next != "" && !strings.HasPrefix(next, "stack backtrace") && !strings.HasPrefix(next, "note:") {
					keep = append(keep, lines[i+1])
				}
			}
			break
		}
		keep = append(keep, l)
	}
	out := strings.TrimSpace(strings.Join(keep, "\n"))
	if out == "" {
		out = "(bindgen printed nothing)"
	}
	return tail(out, 40)
}

// normaliseBindings removes the exec root from bindgen output and makes line
// endings, trailing whitespace and the final newline canonical.
func normaliseBindings(raw []byte, wd string) []byte {
	s := string(raw)
	if wd != "" {
		s = strings.ReplaceAll(s, wd+"/", "")
		s = strings.ReplaceAll(s, wd, ".")
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	s = strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
	return []byte(s)
}
