package worker

import (
	"math"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// Limits bound what one action's input root may make a worker create. The
// Execution service checks them at admission (on the DAG of distinct
// Directory blobs); the worker checks them again as it materialises, per
// path, since a DAG that reuses one Directory under two names is written
// twice. Zero fields take the defaults shown.
type Limits struct {
	// MaxDepth is the deepest Directory nesting accepted (256).
	MaxDepth int
	// MaxDirectories is the number of distinct Directory blobs (1,000,000).
	MaxDirectories int
	// MaxPaths is the number of files, symlinks and directories one input
	// root may create (4,000,000).
	MaxPaths int64
	// MaxBytes is the total size of the files one input root may create,
	// counted per path (64 GiB).
	MaxBytes int64
}

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = 256
	}
	if l.MaxDirectories <= 0 {
		l.MaxDirectories = 1_000_000
	}
	if l.MaxPaths <= 0 {
		l.MaxPaths = 4_000_000
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = 64 << 30
	}
	// Counts stop at a limit plus one; keep that from overflowing.
	l.MaxPaths = min(l.MaxPaths, math.MaxInt64-1)
	l.MaxBytes = min(l.MaxBytes, math.MaxInt64-1)
	return l
}

// addSize adds two non-negative counts, saturating at math.MaxInt64.
func addSize(a, b int64) int64 {
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

// LimitError is an input root beyond one of the Limits. Limit is the name
// of the limit as the server's flags spell it.
type LimitError struct {
	Limit string
	Msg   string
}

func (e *LimitError) Error() string { return e.Msg + " (limit " + e.Limit + ")" }

// Names of the limits, as `ferrule serve` spells its flags and as
// /metrics labels refusals.
const (
	LimitDepth       = "max_input_depth"
	LimitDirectories = "max_input_directories"
	LimitPaths       = "max_input_paths"
	LimitBytes       = "max_input_bytes"
)

// DirNode is what TreeSize needs of one Directory: much less to hold than
// the Directory while a whole input root is checked.
type DirNode struct {
	Entries int64    // files, symlinks and subdirectories
	Bytes   int64    // total size of its files
	Subdirs []string // hash of each subdirectory, one per edge
}

// NodeOf summarises d for TreeSize.
func NodeOf(d *repb.Directory) DirNode {
	n := DirNode{Entries: int64(len(d.Files) + len(d.Symlinks) + len(d.Directories))}
	for _, f := range d.Files {
		n.Bytes = addSize(n.Bytes, max(f.GetDigest().GetSizeBytes(), 0))
	}
	for _, sub := range d.Directories {
		n.Subdirs = append(n.Subdirs, sub.GetDigest().GetHash())
	}
	return n
}

// TreeSize checks what an input root would create against l, from its
// distinct Directory blobs by hash. It returns a *LimitError for the first limit exceeded;
// counts stop growing once past a limit, so a DAG with 2^512 paths costs
// one visit per distinct Directory. A Directory missing from dirs counts as
// empty (the caller reports missing blobs separately).
func TreeSize(root string, dirs map[string]DirNode, l Limits) error {
	l = l.WithDefaults()
	if len(dirs) > l.MaxDirectories {
		return &LimitError{Limit: LimitDirectories, Msg: "input root has more than " + strconv.FormatInt(int64(l.MaxDirectories), 10) + " distinct directories"}
	}
	type size struct {
		paths, bytes int64
		height       int // levels of directories below
	}
	memo := map[string]size{}
	deep := func() error {
		return &LimitError{Limit: LimitDepth, Msg: "input root is nested deeper than " + strconv.FormatInt(int64(l.MaxDepth), 10) + " directories"}
	}
	var walk func(hash string, depth int) (size, error)
	walk = func(hash string, depth int) (size, error) {
		if depth > l.MaxDepth {
			return size{}, deep()
		}
		if s, ok := memo[hash]; ok {
			if depth+s.height > l.MaxDepth {
				return size{}, deep()
			}
			return s, nil
		}
		d := dirs[hash]
		s := size{paths: min(d.Entries, l.MaxPaths+1), bytes: min(d.Bytes, l.MaxBytes+1)}
		for _, sub := range d.Subdirs {
			ss, err := walk(sub, depth+1)
			if err != nil {
				return size{}, err
			}
			s.paths = min(addSize(s.paths, ss.paths), l.MaxPaths+1)
			s.bytes = min(addSize(s.bytes, ss.bytes), l.MaxBytes+1)
			s.height = max(s.height, ss.height+1)
		}
		if s.paths > l.MaxPaths {
			return size{}, &LimitError{Limit: LimitPaths, Msg: "input root has more than " + strconv.FormatInt(l.MaxPaths, 10) + " files, directories and symlinks"}
		}
		if s.bytes > l.MaxBytes {
			return size{}, &LimitError{Limit: LimitBytes, Msg: "input root has more than " + strconv.FormatInt(l.MaxBytes, 10) + " bytes of files"}
		}
		memo[hash] = s
		return s, nil
	}
	_, err := walk(root, 0)
	return err
}
