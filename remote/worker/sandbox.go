package worker

import (
	"context"
	"errors"
	"fmt"
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
// everything it started) and its own network stack (only loopback). A
// worker that is not root adds a user namespace (see sandbox_linux.go).
const namespaceFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET

type sandbox struct {
	log    *slog.Logger
	root   string   // toolchain root actions run in ("" for paths)
	paths  []string // host paths actions see without a toolchain root
	limits ActionLimits
	userNS bool // the worker is not root: namespaces come with a user namespace
	mu     sync.Mutex
	flags  uintptr
}

func newSandbox(namespaces bool, root string, paths []string, limits ActionLimits, log *slog.Logger) *sandbox {
	if paths == nil {
		paths = HostPaths
	}
	s := &sandbox{log: log, root: root, paths: paths, limits: limits.WithDefaults(), userNS: os.Geteuid() != 0}
	if !namespaces {
		log.Warn("sandbox: namespaces disabled by configuration; actions run as the worker's user on the host's file system, without limits")
		return s
	}
	s.flags = s.probe()
	if s.flags&syscall.CLONE_NEWNS != 0 {
		who := fmt.Sprintf("uid %d without capabilities", ActionUID)
		if s.userNS {
			who = "the worker's uid in a user namespace, without capabilities (the file cache verifies inputs it hands out again)"
		}
		log.Info("sandbox: actions run in a private root as "+who, "root", root, "limits", fmt.Sprintf("%+v", s.limits))
	}
	return s
}

func (s *sandbox) attr(flags uintptr) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if s.userNS && flags != 0 {
		a.Cloneflags |= syscall.CLONE_NEWUSER
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		a.GidMappingsEnableSetgroups = false
	}
	return a
}

// probe finds out which namespaces this process may create by starting
// /bin/sh in them, and logs what it has to do without.
func (s *sandbox) probe() uintptr {
	log := s.log
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		log.Info("sandbox: no /bin/sh to probe namespaces with; trying them on the first action")
		return namespaceFlags
	}
	try := func(flags uintptr) error {
		c := exec.Command(sh, "-c", "exit 0")
		c.Env = []string{}
		c.SysProcAttr = s.attr(flags)
		return c.Run()
	}
	if err := try(namespaceFlags); err == nil {
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
	if ok&syscall.CLONE_NEWNS == 0 {
		log.Warn("sandbox: the kernel does not let this process create a mount namespace; actions run UNSANDBOXED, as the worker's user on the host's file system",
			"unavailable", strings.Join(missing, ", "))
	} else {
		log.Warn("sandbox: the kernel does not let this process create some namespaces; actions run without them",
			"unavailable", strings.Join(missing, ", "))
	}
	return ok
}

// sandboxed reports whether actions run in the private root.
func (s *sandbox) sandboxed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flags&syscall.CLONE_NEWNS != 0
}

// inputsImmutable reports whether an action cannot change the input files
// it is given (hardlinks into the file cache): it runs under another uid
// than their owner, without capabilities.
func (s *sandbox) inputsImmutable() bool { return s.sandboxed() && !s.userNS }

// owner is who the directories of an input root belong to, so the action
// can create outputs in them ({-1, -1}: the worker itself).
func (s *sandbox) owner() idPair {
	if s.inputsImmutable() {
		return idPair{ActionUID, ActionGID}
	}
	return idPair{-1, -1}
}

// run runs cmd with exactly its own environment in wd, writing stdout and
// stderr to the given files, within limits. A timeout (0: none) or a
// cancelled ctx kills the whole process group. err is set when the program
// could not be started or waited for; timedOut says the timeout fired.
func (s *sandbox) run(ctx context.Context, cmd *repb.Command, inputRoot, wd string, limits ActionLimits, stdout, stderr io.Writer, timeout time.Duration) (exit int, timedOut bool, err error) {
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
	path, args, plainEnv := prog, cmd.Arguments, env
	if flags&syscall.CLONE_NEWNS == 0 && s.root != "" {
		return -1, false, errors.New("actions in a toolchain root need a mount namespace, which this worker cannot create")
	}
	if flags&syscall.CLONE_NEWNS != 0 {
		spec := launchSpec{Root: s.root, InputRoot: inputRoot, Dir: wd, Program: prog,
			NewProc: flags&syscall.CLONE_NEWPID != 0, Loopback: flags&syscall.CLONE_NEWNET != 0,
			UID: -1, GID: -1, Limits: limits}
		if s.root == "" {
			spec.Stage = filepath.Join(filepath.Dir(inputRoot), "sandbox")
			spec.HostPaths = s.paths
			if err := os.Mkdir(spec.Stage, 0o700); err != nil {
				return -1, false, err
			}
		}
		if !s.userNS {
			spec.UID, spec.GID = ActionUID, ActionGID
		}
		if path, env, err = launchCommand(spec, env); err != nil {
			return -1, false, err
		}
	}

	var c *exec.Cmd
	for {
		c = &exec.Cmd{Path: path, Args: args, Env: env, Dir: wd, Stdout: stdout, Stderr: stderr}
		c.SysProcAttr = s.attr(flags)
		err = c.Start()
		if err != nil && flags != 0 && s.root == "" && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS)) {
			s.log.Warn("sandbox: cannot create namespaces, running actions UNSANDBOXED", "err", err)
			s.mu.Lock()
			s.flags = 0
			s.mu.Unlock()
			flags = 0
			path, env = prog, plainEnv
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
