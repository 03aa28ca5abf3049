package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// namespaceFlags are the namespaces an action gets where the kernel allows:
// its own mount table, its own pid space (so killing its first process kills
// everything it started) and its own network stack (no network at all: only
// a loopback interface that is down).
const namespaceFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET

type sandbox struct {
	log   *slog.Logger
	root  string // toolchain root actions run in ("" for the host's file system)
	mu    sync.Mutex
	flags uintptr
}

func newSandbox(namespaces bool, root string, log *slog.Logger) *sandbox {
	s := &sandbox{log: log, root: root}
	if !namespaces {
		log.Info("sandbox: namespaces disabled by configuration; actions share the host's mount, pid and network namespaces")
		return s
	}
	s.flags = probeNamespaces(log)
	return s
}

// probeNamespaces finds out which namespaces this process may create by
// starting /bin/sh in them, and logs what it has to do without.
func probeNamespaces(log *slog.Logger) uintptr {
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		log.Info("sandbox: no /bin/sh to probe namespaces with; trying them on the first action")
		return namespaceFlags
	}
	try := func(flags uintptr) error {
		c := exec.Command(sh, "-c", "exit 0")
		c.Env = []string{}
		c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true}
		return c.Run()
	}
	if err := try(namespaceFlags); err == nil {
		log.Info("sandbox: actions run in their own mount, pid and network namespaces")
		return namespaceFlags
	}
	var ok uintptr
	var missing []string
	for _, f := range []struct {
		flag uintptr
		name string
	}{{syscall.CLONE_NEWNS, "mount"}, {syscall.CLONE_NEWPID, "pid"}, {syscall.CLONE_NEWNET, "network"}} {
		if err := try(f.flag); err == nil {
			ok |= f.flag
		} else {
			missing = append(missing, f.name+" ("+err.Error()+")")
		}
	}
	log.Warn("sandbox: the kernel does not let this process create some namespaces; actions run without them",
		"unavailable", strings.Join(missing, ", "))
	return ok
}

// run runs cmd with exactly its own environment in wd, writing stdout and
// stderr to the given files. A timeout (0: none) or a cancelled ctx kills the
// whole process group. err is set when the program could not be started or
// waited for; timedOut says the timeout fired.
func (s *sandbox) run(ctx context.Context, cmd *repb.Command, inputRoot, wd string, stdout, stderr io.Writer, timeout time.Duration) (exit int, timedOut bool, err error) {
	env := make([]string, 0, len(cmd.EnvironmentVariables))
	pathVar := ""
	for _, e := range cmd.EnvironmentVariables {
		env = append(env, e.Name+"="+e.Value)
		if e.Name == "PATH" {
			pathVar = e.Value
		}
	}
	var prog string
	if s.root != "" && !strings.Contains(cmd.Arguments[0], "/") {
		prog, err = resolveInRoot(s.root, cmd.Arguments[0], pathVar)
	} else {
		prog, err = resolveProgram(cmd.Arguments[0], inputRoot, wd, pathVar)
	}
	if err != nil {
		return -1, false, err
	}
	s.mu.Lock()
	flags := s.flags
	s.mu.Unlock()
	path, args := prog, cmd.Arguments
	if s.root != "" {
		if flags&syscall.CLONE_NEWNS == 0 {
			return -1, false, errors.New("actions in a toolchain root need a mount namespace, which this worker cannot create")
		}
		if path, args, env, err = rootCommand(s.root, inputRoot, wd, prog, cmd.Arguments, env, flags&syscall.CLONE_NEWPID != 0); err != nil {
			return -1, false, err
		}
	}

	var c *exec.Cmd
	for {
		c = &exec.Cmd{Path: path, Args: args, Env: env, Dir: wd, Stdout: stdout, Stderr: stderr}
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
		err = c.Start()
		if err != nil && flags != 0 && s.root == "" && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS)) {
			s.log.Warn("sandbox: cannot create namespaces, running actions without them", "err", err)
			s.mu.Lock()
			s.flags = 0
			s.mu.Unlock()
			flags = 0
			continue
		}
		break
	}
	if err != nil {
		return -1, false, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	kill := func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		c.Process.Kill()
	}
	var werr error
	select {
	case werr = <-done:
	case <-timer:
		timedOut = true
		kill()
		werr = <-done
	case <-ctx.Done():
		kill()
		<-done
		return -1, false, ctx.Err()
	}
	// Whatever the first process left behind in its group goes too.
	syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	if c.ProcessState == nil {
		return -1, timedOut, werr
	}
	if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), timedOut, nil
	}
	return c.ProcessState.ExitCode(), timedOut, nil
}

// resolveProgram finds the program of arguments[0]: an absolute path as is,
// a relative path with a slash against the working directory (then the input
// root), and a bare name through the Command's own PATH (never the host's).
func resolveProgram(arg0, inputRoot, wd, pathVar string) (string, error) {
	if arg0 == "" {
		return "", errors.New("empty program name")
	}
	if filepath.IsAbs(arg0) {
		return arg0, nil
	}
	if strings.Contains(arg0, "/") {
		p := filepath.Join(wd, arg0)
		if _, err := os.Stat(p); err != nil {
			if q := filepath.Join(inputRoot, arg0); q != p {
				if _, err2 := os.Stat(q); err2 == nil {
					return q, nil
				}
			}
		}
		return p, nil
	}
	if pathVar == "" {
		return "", errors.New("not found: the Command sets no PATH and the program is not a path")
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(wd, dir)
		}
		p := filepath.Join(dir, arg0)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("not found in the Command's PATH")
}
