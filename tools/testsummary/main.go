// Command testsummary reads `go test -json` events on standard input and
// prints what a person reads: each package's ok/FAIL line as it finishes,
// the output of every failed test, a line for each test that took 5 s or
// more, every skipped test with its reason, and
// one closing line counting test functions:
//
//	go: N passed, N failed, N skipped
//
// It exits 1 if a test or a package failed. tools/test.sh uses it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type summary struct {
	passed, failed, skipped int
	pkgFailed               int
	output                  map[string][]string // package/test -> its output lines
	skips                   []string
}

func main() {
	s, err := run(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if s.failed > 0 || s.pkgFailed > 0 {
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) (*summary, error) {
	s := &summary{output: map[string][]string{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// Not an event (a build error printed by go test): pass it on.
			fmt.Fprintln(out, string(line))
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			s.output[key] = append(s.output[key], e.Output)
		case "build-output":
			// A package that does not compile: its compiler errors.
			fmt.Fprint(out, e.Output)
		case "pass", "fail", "skip":
			s.finish(out, e, key)
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	sort.Strings(s.skips)
	if len(s.skips) > 0 {
		fmt.Fprintf(out, "\nskipped tests (%d):\n", len(s.skips))
		for _, k := range s.skips {
			fmt.Fprintln(out, "  "+k)
		}
	}
	fmt.Fprintf(out, "go: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	return s, nil
}

func (s *summary) finish(out io.Writer, e event, key string) {
	if e.Test == "" {
		// The package's own result line.
		switch e.Action {
		case "fail":
			s.pkgFailed++
			for _, l := range s.output[key] {
				if !strings.HasPrefix(l, "FAIL\t") && !strings.HasPrefix(l, "ok ") {
					fmt.Fprint(out, l)
				}
			}
			fmt.Fprintf(out, "FAIL\t%s\t%.1fs\n", e.Package, e.Elapsed)
		case "pass":
			fmt.Fprintf(out, "ok\t%s\t%.1fs\n", e.Package, e.Elapsed)
		}
		delete(s.output, key)
		return
	}
	if strings.Contains(e.Test, "/") {
		// Subtests fail their parent; only test functions are counted.
		if e.Action == "fail" {
			fmt.Fprintf(out, "--- FAIL: %s (%s)\n", e.Test, e.Package)
			for _, l := range s.output[key] {
				fmt.Fprint(out, l)
			}
		}
		delete(s.output, key)
		return
	}
	switch e.Action {
	case "pass":
		s.passed++
		if e.Elapsed >= 5 {
			// Long tests (the end-to-end ones) show progress as they pass.
			fmt.Fprintf(out, "--- PASS: %s (%s, %.1fs)\n", e.Test, e.Package, e.Elapsed)
		}
	case "fail":
		s.failed++
		fmt.Fprintf(out, "--- FAIL: %s (%s)\n", e.Test, e.Package)
		for _, l := range s.output[key] {
			fmt.Fprint(out, l)
		}
	case "skip":
		s.skipped++
		s.skips = append(s.skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, skipReason(s.output[key])))
	}
	delete(s.output, key)
}

// skipReason is the message of t.Skip: the output line naming a _test.go
// position, without it.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if _, msg, ok := strings.Cut(l, ".go:"); ok && strings.Contains(l, "_test.go:") {
			if _, rest, ok := strings.Cut(msg, ": "); ok {
				return rest
			}
			return msg
		}
	}
	return "(no reason given)"
}
