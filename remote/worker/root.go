package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Actions inside a toolchain root (Options.Root) see it, read-only, as
// their root file system (see sandbox_linux.go); its /tmp is a fresh tmpfs
// with the input root mounted below it.

// RootPlatformProperty is the platform property a worker with a toolchain
// root offers, with the root's digest (the SHA-256 of its package
// manifest) as value; Bazel asks for it with
// --remote_default_exec_properties=toolchain-root=<digest>.
const RootPlatformProperty = "toolchain-root"

// execMount is where the input root appears inside the sandbox.
const execMount = "/tmp/ferrule-exec"

// ReadRootDigest checks that dir is a complete toolchain root (as
// tools/root.sh builds it) and returns its digest.
func ReadRootDigest(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "etc", "ferrule-root", "digest"))
	if err != nil {
		return "", fmt.Errorf("%s is not a complete toolchain root (tools/root.sh --build makes one): %w", dir, err)
	}
	d := strings.TrimSpace(string(b))
	if len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%s: etc/ferrule-root/digest holds %q, not a SHA-256", dir, d)
	}
	return d, nil
}

// resolveInRoot finds a bare program name through PATH inside the root and
// returns its path as seen inside.
func resolveInRoot(root, arg0, pathVar string) (string, error) {
	for _, dir := range filepath.SplitList(pathVar) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, arg0)
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("not found in the Command's PATH inside the toolchain root")
}

// inside maps a host path under inputRoot to its path inside the root.
func inside(inputRoot, p string) string {
	rel, err := filepath.Rel(inputRoot, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return p
	}
	return filepath.Join(execMount, rel)
}
