package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Actions inside a toolchain root (Options.Root): the worker starts its own
// executable in the action's new namespaces as a launcher, which
// bind-mounts the action's input root into the toolchain root, pivots into
// it, and execs the action's program there. The toolchain root's own files
// are never written: its /tmp is a fresh tmpfs, and the input root is
// mounted below it.

// RootPlatformProperty is the platform property a worker with a toolchain
// root offers, with the root's digest (the SHA-256 of its package
// manifest) as value; Bazel asks for it with
// --remote_default_exec_properties=toolchain-root=<digest>.
const RootPlatformProperty = "toolchain-root"

// rootExecEnv marks a process as the launcher and carries its spec; it is
// removed from the environment before the action's program runs.
const rootExecEnv = "FERRULE_WORKER_ROOT_EXEC"

// execMount is where the input root appears inside the toolchain root.
const execMount = "/tmp/ferrule-exec"

type rootSpec struct {
	Root      string `json:"root"`
	InputRoot string `json:"input_root"`
	Dir       string `json:"dir"`
	Program   string `json:"program"`
	NewProc   bool   `json:"new_proc"`
}

func init() {
	if spec := os.Getenv(rootExecEnv); spec != "" {
		err := launchInRoot(spec)
		fmt.Fprintf(os.Stderr, "ferrule worker: running the action in its toolchain root: %v\n", err)
		os.Exit(127)
	}
}

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

// rootCommand returns the launcher's path, arguments and environment for
// running prog (a path inside the toolchain root or under inputRoot) with
// args and env in wd.
func rootCommand(root, inputRoot, wd, prog string, args, env []string, newProc bool) (string, []string, []string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, nil, fmt.Errorf("cannot find the worker's own executable for the root launcher: %w", err)
	}
	spec, err := json.Marshal(rootSpec{Root: root, InputRoot: inputRoot, Dir: wd, Program: prog, NewProc: newProc})
	if err != nil {
		return "", nil, nil, err
	}
	return self, args, append(append([]string{}, env...), rootExecEnv+"="+string(spec)), nil
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

// launchInRoot runs in the launcher process (new mount namespace): it
// only returns on error.
func launchInRoot(specJSON string) error {
	var spec rootSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("bad launcher spec: %w", err)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, rootExecEnv+"=") {
			env = append(env, e)
		}
	}
	r := spec.Root
	steps := []struct {
		what string
		do   func() error
	}{
		{"make mounts private", func() error { return syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, "") }},
		{"bind the root", func() error { return syscall.Mount(r, r, "", syscall.MS_BIND|syscall.MS_REC, "") }},
		{"mount /tmp", func() error {
			return syscall.Mount("tmpfs", filepath.Join(r, "tmp"), "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777")
		}},
		{"bind the input root", func() error {
			if err := os.MkdirAll(filepath.Join(r, execMount), 0o755); err != nil {
				return err
			}
			return syscall.Mount(spec.InputRoot, filepath.Join(r, execMount), "", syscall.MS_BIND|syscall.MS_REC, "")
		}},
		{"bind /dev", func() error {
			return syscall.Mount("/dev", filepath.Join(r, "dev"), "", syscall.MS_BIND|syscall.MS_REC, "")
		}},
		{"mount /proc", func() error {
			if spec.NewProc {
				return syscall.Mount("proc", filepath.Join(r, "proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "")
			}
			return syscall.Mount("/proc", filepath.Join(r, "proc"), "", syscall.MS_BIND|syscall.MS_REC, "")
		}},
		{"pivot_root", func() error {
			old := filepath.Join(r, "tmp", ".oldroot")
			if err := os.MkdirAll(old, 0o700); err != nil {
				return err
			}
			if err := syscall.PivotRoot(r, old); err != nil {
				return err
			}
			if err := syscall.Chdir("/"); err != nil {
				return err
			}
			if err := syscall.Unmount("/tmp/.oldroot", syscall.MNT_DETACH); err != nil {
				return err
			}
			return os.Remove("/tmp/.oldroot")
		}},
		{"enter the working directory", func() error { return syscall.Chdir(inside(spec.InputRoot, spec.Dir)) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	prog := inside(spec.InputRoot, spec.Program)
	return fmt.Errorf("exec %s: %w", prog, syscall.Exec(prog, os.Args, env))
}
