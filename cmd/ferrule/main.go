// Command ferrule is the one user-facing binary of Ferrule: the REAPI cache
// and execution server, its workers, the crate vendoring generator, the
// execution-log explainer and the benchmark client.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. Each lives in its own file and registers itself
// from an init function with register.
type command struct {
	name    string
	summary string // one line for `ferrule help`
	usage   string // argument synopsis, e.g. "[flags] LOG_A LOG_B"
	// run parses args with fs (already named and wired to stderr) and runs.
	run func(fs *flag.FlagSet, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("ferrule: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// usageError is an error in how the command was called; it makes main print
// the command's usage and exit with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fs := newFlagSet(c, stdout)
				c.run(fs, []string{"--help"})
				return 0
			}
			fmt.Fprintf(stderr, "ferrule: unknown command %q\n", args[1])
			return 2
		}
		printHelp(stdout)
		return 0
	case "-version", "--version":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "ferrule: unknown command %q (run 'ferrule help' for the list)\n", name)
		return 2
	}
	fs := newFlagSet(c, stderr)
	err := c.run(fs, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "ferrule %s: %s\n", c.name, ue.msg)
		fmt.Fprintf(stderr, "usage: ferrule %s %s (see 'ferrule %s --help')\n", c.name, c.usage, c.name)
		return 2
	}
	if strings.HasPrefix(err.Error(), "flag provided but not defined") || errors.Is(err, errFlagParse) {
		return 2
	}
	fmt.Fprintf(stderr, "ferrule %s: %v\n", c.name, err)
	return 1
}

var errFlagParse = errors.New("flag parse error")

func newFlagSet(c *command, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ferrule "+c.name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: ferrule %s %s\n\n%s\n", c.name, c.usage, c.summary)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(fs.Output(), "\nflags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args into fs and turns a parse failure into errFlagParse
// (the flag package has already printed the problem and the usage).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errFlagParse
	}
	return nil
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "ferrule: hermetic, cache-aware builds of CPython with C and Rust\n\nusage: ferrule <command> [flags] [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'ferrule <command> --help' for a command's flags.\n")
}
