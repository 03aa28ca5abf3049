package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The sandbox an action runs in, where the kernel gives the worker mount,
// pid and network namespaces. The worker starts its own executable in the
// action's new namespaces as a launcher, which builds a private root and
// then becomes the action's program:
//
//   - the root is the toolchain root (Options.Root) bind-mounted read-only,
//     or without one a tmpfs holding only the host paths of
//     Options.SandboxPaths (default HostPaths), each bind-mounted
//     read-only, and a synthesised /etc/passwd, /etc/group and /etc/hosts;
//   - the input root is bind-mounted read-write at /tmp/ferrule-exec, on a
//     fresh tmpfs /tmp; /dev is a tmpfs with null, zero, full, random,
//     urandom and tty; /proc is a fresh procfs of the action's pid
//     namespace (its pid 1 is the action);
//   - the network namespace has only loopback, brought up;
//   - the action's resource limits (ActionLimits) are set as rlimits;
//   - privileges are dropped: a worker running as root switches the action
//     to ActionUID/ActionGID (nobody) with no supplementary groups; either
//     way the capability bounding set and every capability set are
//     emptied and no_new_privs is set, so no setuid program gives them
//     back. A worker that is not root runs the launcher in a user namespace
//     whose only uid is its own (mapped to 0, without capabilities after the
//     drop); then the action owns the input files it could chmod, so the
//     file cache verifies every entry before handing it out again.

// ActionUID and ActionGID are who actions run as under a root worker.
const (
	ActionUID = 65534
	ActionGID = 65534
)

// HostPaths are the host paths an action sees (read-only) when the worker
// has no toolchain root: the programs and libraries of the host and the
// few files of /etc the dynamic linker and alternatives need. Nothing else
// of the host: no /home, /root, /var, /tmp, /work, /etc/shadow, no store.
var HostPaths = []string{
	"/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32",
	"/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
	"/etc/localtime", "/etc/nsswitch.conf",
}

// launchEnv marks a process as the launcher and carries its spec; it is
// removed from the environment before the action's program runs.
const launchEnv = "FERRULE_WORKER_SANDBOX"

type launchSpec struct {
	Root      string   `json:"root"`       // toolchain root, "" for HostPaths on a tmpfs
	Stage     string   `json:"stage"`      // empty directory the tmpfs root is built on (Root == "")
	HostPaths []string `json:"host_paths"` // read-only host paths (Root == "")
	InputRoot string   `json:"input_root"`
	Dir       string   `json:"dir"`
	Program   string   `json:"program"`
	NewProc   bool     `json:"new_proc"` // a fresh /proc (own pid namespace)
	Loopback  bool     `json:"loopback"` // own network namespace: bring lo up
	UID       int      `json:"uid"`      // -1: keep (user namespace)
	GID       int      `json:"gid"`
	Limits    ActionLimits
}

func init() {
	if spec := os.Getenv(launchEnv); spec != "" {
		err := launch(spec)
		fmt.Fprintf(os.Stderr, "ferrule worker: setting up the action's sandbox: %v\n", err)
		os.Exit(127)
	}
}

// launchCommand returns the launcher's path and environment for spec.
func launchCommand(spec launchSpec, env []string) (string, []string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("cannot find the worker's own executable for the sandbox launcher: %w", err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return "", nil, err
	}
	return self, append(append([]string{}, env...), launchEnv+"="+string(b)), nil
}

// launch runs in the launcher process (new namespaces): it only returns
// on error.
func launch(specJSON string) error {
	var spec launchSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("bad launcher spec: %w", err)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, launchEnv+"=") {
			env = append(env, e)
		}
	}
	r := spec.Root
	if r == "" {
		r = spec.Stage
	}
	type step struct {
		what string
		do   func() error
	}
	steps := []step{
		{"make mounts private", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
	}
	if spec.Root != "" {
		steps = append(steps, step{"bind the toolchain root read-only", func() error { return bindRO(r, r) }})
	} else {
		steps = append(steps,
			step{"mount the root tmpfs", func() error {
				return unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=16m")
			}},
			step{"bind the host paths", func() error { return bindHostPaths(r, spec.HostPaths) }},
			step{"write /etc", func() error { return writeEtc(r) }},
		)
	}
	steps = append(steps,
		step{"mount /tmp", func() error {
			return mountAt(r, "tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
		}},
		step{"bind the input root", func() error {
			dst := filepath.Join(r, execMount)
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			if err := unix.Mount(spec.InputRoot, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return err
			}
			return remount(dst, unix.MS_NOSUID|unix.MS_NODEV)
		}},
		step{"make /dev", func() error { return makeDev(r) }},
		step{"mount /proc", func() error {
			if spec.NewProc {
				return mountAt(r, "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
			}
			return unix.Mount("/proc", filepath.Join(r, "proc"), "", unix.MS_BIND|unix.MS_REC, "")
		}},
		step{"pivot_root", func() error {
			old := filepath.Join(r, "tmp", ".oldroot")
			if err := os.MkdirAll(old, 0o700); err != nil {
				return err
			}
			if err := unix.PivotRoot(r, old); err != nil {
				return err
			}
			if err := unix.Chdir("/"); err != nil {
				return err
			}
			if err := unix.Unmount("/tmp/.oldroot", unix.MNT_DETACH); err != nil {
				return err
			}
			return os.Remove("/tmp/.oldroot")
		}},
	)
	if spec.Root == "" {
		steps = append(steps, step{"make the root read-only", func() error { return remount("/", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV) }})
	}
	if spec.Loopback {
		steps = append(steps, step{"bring loopback up", loopbackUp})
	}
	steps = append(steps,
		step{"enter the working directory", func() error { return unix.Chdir(inside(spec.InputRoot, spec.Dir)) }},
		step{"set resource limits", func() error { return spec.Limits.apply() }},
		step{"drop privileges", func() error { return dropPrivileges(spec.UID, spec.GID) }},
	)
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	prog := inside(spec.InputRoot, spec.Program)
	return fmt.Errorf("exec %s: %w", prog, unix.Exec(prog, os.Args, env))
}

func mountAt(root, dir, fstype string, flags uintptr, data string) error {
	p := filepath.Join(root, dir)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return unix.Mount(fstype, p, fstype, flags, data)
}

// remount changes the flags of the bind mount at p, keeping the flags a
// user namespace may not drop (nosuid, nodev, noexec, atime).
func remount(p string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC | unix.ST_NOATIME | unix.ST_NODIRATIME | unix.ST_RELATIME)
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|flags|keep, "")
}

// bindRO bind-mounts src (and its submounts) at dst, read-only.
func bindRO(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return remount(dst, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV)
}

// bindHostPaths makes each host path appear read-only at the same place
// below root: directories and files bind-mounted, symlinks (/bin ->
// usr/bin) recreated. Paths the host lacks are left out.
func bindHostPaths(root string, paths []string) error {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			continue
		case fi.IsDir():
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		default:
			if err := os.WriteFile(dst, nil, 0o644); err != nil {
				return err
			}
		}
		if err := bindRO(p, dst); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// writeEtc writes the /etc files that name the users and the host.
func writeEtc(root string) error {
	etc := filepath.Join(root, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	for name, content := range map[string]string{
		"passwd": "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"group":  "root:x:0:\nnogroup:x:65534:\n",
		"hosts":  "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
	} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// makeDev mounts a tmpfs on root/dev with the few devices actions use,
// bind-mounted from the host's, and the usual symlinks.
func makeDev(root string) error {
	dev := filepath.Join(root, "dev")
	if err := mountAt(root, "dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		dst := filepath.Join(dev, d)
		if err := os.WriteFile(dst, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("/dev/%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return mountAt(dev, "shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
}

// loopbackUp sets the lo interface of the process's network namespace up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// dropPrivileges switches to uid/gid (uid < 0: stays) and leaves the
// process no capabilities, with none to gain through exec.
func dropPrivileges(uid, gid int) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if uid >= 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setresgid(gid, gid, gid); err != nil {
			return fmt.Errorf("setresgid %d: %w", gid, err)
		}
		if err := syscall.Setresuid(uid, uid, uid); err != nil {
			return fmt.Errorf("setresuid %d: %w", uid, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	// A change of credentials clears the parent-death signal.
	return unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
}
