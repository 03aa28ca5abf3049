package worker

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Outputs are read relative to the input root's directory descriptor:
// every path is resolved with openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS),
// so a symlink (or "..") that leads out of the input root fails instead of
// reading the host's file. Kernels without openat2 (before 5.6) get an
// equivalent walk that opens each component with O_NOFOLLOW, which refuses
// every symlinked parent.

// errEscapes is a path whose resolution leaves the input root.
var errEscapes = errors.New("it leads out of the input root (a symlink or \"..\" on the way)")

var (
	openat2Once sync.Once
	openat2OK   bool
)

func haveOpenat2() bool {
	openat2Once.Do(func() {
		fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
		if err == nil {
			unix.Close(fd)
		}
		openat2OK = !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM)
	})
	return openat2OK
}

// openRootDir opens dir as the anchor of beneath lookups.
func openRootDir(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// openBeneath opens rel (slash-separated, relative) below root with flags,
// following no symlink out of root and, with O_NOFOLLOW in flags, not the
// last component either.
func openBeneath(root *os.File, rel string, flags int) (*os.File, error) {
	rel = path.Clean(rel)
	if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("%q: %w", rel, errEscapes)
	}
	flags |= unix.O_CLOEXEC
	var fd int
	var err error
	if haveOpenat2() {
		for {
			fd, err = unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				break
			}
		}
	} else {
		fd, err = walkNoFollow(int(root.Fd()), rel, flags)
	}
	if errors.Is(err, unix.EXDEV) {
		return nil, fmt.Errorf("%q: %w", rel, errEscapes)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// walkNoFollow opens rel below dirfd one component at a time, each with
// O_NOFOLLOW: a symlink anywhere on the way is EXDEV, except a last
// component the caller asked not to follow (O_NOFOLLOW in flags).
func walkNoFollow(dirfd int, rel string, flags int) (int, error) {
	if rel == "." || rel == "" {
		return unix.Openat(dirfd, ".", flags, 0)
	}
	parts := strings.Split(rel, "/")
	cur := dirfd
	closeCur := func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}
	for i, p := range parts {
		last := i == len(parts)-1
		var st unix.Stat_t
		if err := unix.Fstatat(cur, p, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK && !(last && flags&unix.O_NOFOLLOW != 0) {
			closeCur()
			return -1, unix.EXDEV
		}
		f := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			f = flags | unix.O_NOFOLLOW
		}
		fd, err := unix.Openat(cur, p, f, 0)
		closeCur()
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// entry is what lstat says of one name in an open directory.
type entry struct {
	mode uint32 // st_mode
	size int64
}

func (e entry) isDir() bool     { return e.mode&unix.S_IFMT == unix.S_IFDIR }
func (e entry) isRegular() bool { return e.mode&unix.S_IFMT == unix.S_IFREG }
func (e entry) isSymlink() bool { return e.mode&unix.S_IFMT == unix.S_IFLNK }
func (e entry) executable() bool {
	return e.mode&0o111 != 0
}

// lstatAt stats name in dir without following it.
func lstatAt(dir *os.File, name string) (entry, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return entry{}, &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	return entry{mode: st.Mode, size: st.Size}, nil
}

// readlinkAt reads the symlink name in dir.
func readlinkAt(dir *os.File, name string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		k, err := unix.Readlinkat(int(dir.Fd()), name, buf)
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		if k < n {
			return string(buf[:k]), nil
		}
	}
}

// openAt opens name in dir, never following a symlink.
func openAt(dir *os.File, name string, flags int) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// idPair is a uid and gid; a negative uid leaves ownership alone.
type idPair struct{ uid, gid int }

// mkdirBeneath creates rel and its missing parents below root (mode 0755,
// chowned to owner), resolving each existing one beneath root.
func mkdirBeneath(root *os.File, rel string, owner idPair) error {
	rel = path.Clean(rel)
	if rel == "." || rel == "" {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		parent, err := openBeneath(root, strings.Join(parts[:i], "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(int(parent.Fd()), parts[i], 0o755)
		if err == nil && owner.uid >= 0 {
			err = unix.Fchownat(int(parent.Fd()), parts[i], owner.uid, owner.gid, unix.AT_SYMLINK_NOFOLLOW)
		}
		parent.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "mkdir", Path: strings.Join(parts[:i+1], "/"), Err: err}
		}
	}
	return nil
}
