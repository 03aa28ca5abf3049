package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferrule-build/ferrule/crates"
)

func init() {
	register(&command{
		name:    "vendor",
		summary: "generate Bazel targets for vendored crates from Cargo.lock and a `cargo vendor` directory",
		usage:   "[flags]",
		run:     runVendor,
	})
}

func runVendor(fs *flag.FlagSet, args []string) error {
	dir := fs.String("dir", "third_party/crates", "directory holding Cargo.toml and Cargo.lock; outputs go here too")
	vendorDir := fs.String("vendor_dir", "third_party/vendor", "the directory `cargo vendor --versioned-dirs` wrote")
	repo := fs.String("repo", "ferrule_crates", "name of the Bazel repository that holds the vendored crates")
	target := fs.String("target", "", "resolve target-specific dependencies for this triple only; default: every platform, as select()s")
	check := fs.Bool("check", false, "do not write: fail if the generated files are out of date")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %v", fs.Args())
	}
	fmt.Printf("ferrule vendor: reading %s and %s\n", filepath.Join(*dir, "Cargo.lock"), *vendorDir)
	res, err := crates.Generate(crates.Options{
		Manifest:  filepath.Join(*dir, "Cargo.toml"),
		Lock:      filepath.Join(*dir, "Cargo.lock"),
		VendorDir: *vendorDir,
		Repo:      *repo,
		Target:    *target,
		Overrides: filepath.Join(*dir, "overrides.toml"),
	})
	if err != nil {
		return err
	}
	for _, p := range res.Crates {
		kind := "library"
		if p.ProcMacro {
			kind = "proc-macro"
		}
		extra := ""
		if p.BuildScript != "" {
			extra = " + build script"
		}
		fmt.Printf("  %-16s %-10s %s%s\n", p.Name, p.Version, kind, extra)
	}
	outputs := []struct {
		path string
		data []byte
	}{
		{filepath.Join(*dir, "BUILD.crates.bazel"), res.RepoBuild},
		{filepath.Join(*dir, "BUILD.bazel"), res.AliasBuild},
	}
	stale := 0
	for _, o := range outputs {
		old, err := os.ReadFile(o.path)
		if err == nil && bytes.Equal(old, o.data) {
			fmt.Printf("%s is up to date\n", o.path)
			continue
		}
		if *check {
			fmt.Printf("%s is out of date\n", o.path)
			stale++
			continue
		}
		tmp := o.path + ".tmp"
		if err := os.WriteFile(tmp, o.data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, o.path); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", o.path)
	}
	if stale > 0 {
		return fmt.Errorf("%d generated file(s) out of date: run `ferrule vendor`", stale)
	}
	fmt.Printf("%d crates\n", len(res.Crates))
	return nil
}
