// Command builder does the work inside Ferrule's Bazel actions: what would
// otherwise be shell in a genrule (response files, output normalisation,
// path remapping, bindgen fix-ups, running build scripts) lives here, with
// unit tests.
//
// It imports only the standard library so a tiny Bazel rule can compile it
// from the Go SDK (see rules/private/go_tool.bzl), and its bytes depend only
// on the Go version.
//
// Usage: builder <subcommand> [flags] [args]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

type subcommand struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var subcommands = map[string]subcommand{}

func register(name, summary string, run func(args []string, stdout, stderr io.Writer) error) {
	subcommands[name] = subcommand{summary: summary, run: run}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		w := stdout
		if len(args) == 0 {
			w = stderr
		}
		fmt.Fprintln(w, "usage: builder <subcommand> [flags] [args]\n\nsubcommands:")
		names := make([]string, 0, len(subcommands))
		for n := range subcommands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(w, "  %-16s %s\n", n, subcommands[n].summary)
		}
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sc, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "builder: unknown subcommand %q\n", args[0])
		return 2
	}
	if err := sc.run(args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "builder %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// newFlags returns a flag set for a subcommand that reports errors instead
// of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("builder "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
