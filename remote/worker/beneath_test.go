package worker

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Both ways of resolving beneath the input root (openat2, and the
// O_NOFOLLOW walk for kernels without it) refuse every way out.
func TestOpenBeneath(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o644)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("inside"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "abs"))
	os.Symlink("../../../../../../../../.."+outside, filepath.Join(dir, "a", "rel"))
	os.Symlink("/proc/self/root", filepath.Join(dir, "magic"))
	root, err := openRootDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, mode := range []struct {
		name    string
		openat2 bool
	}{{"openat2", true}, {"walk", false}} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.openat2 && !haveOpenat2() {
				t.Skip("this kernel has no openat2")
			}
			saved := openat2OK
			openat2Once.Do(func() {})
			openat2OK = mode.openat2
			defer func() { openat2OK = saved }()
			f, err := openBeneath(root, "a/b/f", os.O_RDONLY|unix.O_NOFOLLOW)
			if err != nil {
				t.Fatalf("a path inside: %v", err)
			}
			f.Close()
			for _, p := range []string{"abs/secret", "a/rel/secret", "magic/etc/passwd", "../x", "/etc/passwd"} {
				f, err := openBeneath(root, p, os.O_RDONLY)
				if err == nil {
					f.Close()
					t.Errorf("%s: opened", p)
				} else if !errors.Is(err, errEscapes) {
					t.Errorf("%s: %v, want the escape error", p, err)
				}
			}
			if err := mkdirBeneath(root, "abs/made", idPair{-1, -1}); err == nil {
				t.Error("mkdirBeneath went through a symlink out of the root")
			}
			if _, err := os.Stat(filepath.Join(outside, "made")); err == nil {
				t.Error("a directory was made outside the root")
			}
			if err := mkdirBeneath(root, "a/b/c/d", idPair{-1, -1}); err != nil {
				t.Errorf("mkdirBeneath inside: %v", err)
			}
		})
	}
}
