package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ferrule-build/ferrule/remote/explain"
)

func init() {
	register(&command{
		name:    "explain",
		summary: "say why actions in two Bazel execution logs (--execution_log_json_file) have different cache keys",
		usage:   "[--max N] LOG_A LOG_B",
		run: func(fs *flag.FlagSet, args []string) error {
			maxActions := fs.Int("max", 50, "list at most this many differing actions (0: all); the summary always counts all")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if fs.NArg() != 2 {
				return usagef("want two execution logs, got %d argument(s)", fs.NArg())
			}
			a, err := explain.ReadFile(fs.Arg(0))
			if err != nil {
				return err
			}
			b, err := explain.ReadFile(fs.Arg(1))
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "ferrule explain: comparing %d and %d spawns\n", len(a), len(b))
			explain.Compare(a, b).Write(os.Stdout, fs.Arg(0), fs.Arg(1), *maxActions)
			return nil
		},
	})
}
