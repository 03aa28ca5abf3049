package worker

import (
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
	return l
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

// TreeSize is what an input root would create, from its distinct Directory
// blobs by hash. It returns a *LimitError for the first limit exceeded;
// counts stop growing once past a limit, so a DAG with 2^512 paths costs
// one visit per distinct Directory. A Directory missing from dirs counts as
// empty (the caller reports missing blobs separately).
func TreeSize(root string, dirs map[string]*repb.Directory, l Limits) error {
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
		var s size
		s.paths = int64(len(d.GetFiles()) + len(d.GetSymlinks()) + len(d.GetDirectories()))
		for _, f := range d.GetFiles() {
			s.bytes = min(s.bytes+max(f.GetDigest().GetSizeBytes(), 0), l.MaxBytes+1)
		}
		for _, sub := range d.GetDirectories() {
			ss, err := walk(sub.GetDigest().GetHash(), depth+1)
			if err != nil {
				return size{}, err
			}
			s.paths = min(s.paths+ss.paths, l.MaxPaths+1)
			s.bytes = min(s.bytes+ss.bytes, l.MaxBytes+1)
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
