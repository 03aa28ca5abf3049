package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ferrule-build/ferrule/remote/explain"
)

func init() {
	register(&command{
		name:    "explain",
		summary: "say why actions in two Bazel execution logs (--execution_log_json_file) have different cache keys",
		usage:   "[--max N] [--across_configs] [--json] [--expect CAUSES | --fail_on_diff] LOG_A LOG_B",
		run: func(fs *flag.FlagSet, args []string) error {
			maxActions := fs.Int("max", 50, "list at most this many differing actions (0: all); the summary always counts all")
			across := fs.Bool("across_configs", false, "compare builds of two configurations (e.g. --platforms): match outputs without their bazel-out/<config>/ directory")
			asJSON := fs.Bool("json", false, "print the report as JSON instead of text")
			failOnDiff := fs.Bool("fail_on_diff", false, "exit 1 if any action's key differs")
			expect := fs.String("expect", "", "comma-separated causes that may differ (e.g. \"target triple,toolchain,pyconfig,dependency outputs\"); exit 1 if an action differs for another cause")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if fs.NArg() != 2 {
				return usagef("want two execution logs, got %d argument(s)", fs.NArg())
			}
			if *failOnDiff && *expect != "" {
				return usagef("--fail_on_diff and --expect exclude each other")
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
			rep := explain.CompareWith(a, b, explain.Options{AcrossConfigs: *across})
			if *asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				rep.Write(os.Stdout, fs.Arg(0), fs.Arg(1), *maxActions)
			}
			switch {
			case *failOnDiff && len(rep.Differing) > 0:
				return fmt.Errorf("%d actions have differing keys", len(rep.Differing))
			case *expect != "":
				if bad := rep.Unexpected(strings.Split(*expect, ",")); len(bad) > 0 {
					var causes []string
					seen := map[string]bool{}
					for _, d := range bad[0].Differences {
						if c := explain.Classify(d); !seen[c] {
							seen[c] = true
							causes = append(causes, c)
						}
					}
					return fmt.Errorf("%d actions differ for causes not in --expect; the first, %s, for: %s",
						len(bad), bad[0].Key, strings.Join(causes, ", "))
				}
			}
			return nil
		},
	})
}
