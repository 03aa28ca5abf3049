package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at link time (-ldflags "-X main.version=...") for releases.
var version = "0.1.0-dev"

func init() {
	register(&command{
		name:    "version",
		summary: "print Ferrule's version and how it was built",
		usage:   "",
		run: func(fs *flag.FlagSet, args []string) error {
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return usagef("unexpected argument %q", fs.Arg(0))
			}
			rev := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = " " + s.Value
					}
				}
			}
			fmt.Fprintf(os.Stdout, "ferrule %s%s (%s, %s/%s)\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	})
}
