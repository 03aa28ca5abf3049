package worker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// doubling stores a DAG of levels Directories, each holding a file and two
// edges to the one below, and returns its root: 2^levels paths from
// levels+1 distinct Directory blobs.
func (f *fixture) doubling(levels int) *repb.Directory {
	file := f.put([]byte("leaf"))
	d := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file}}}
	for i := 0; i < levels; i++ {
		sub := f.putMsg(d)
		d = &repb.Directory{
			Directories: []*repb.DirectoryNode{{Name: "a", Digest: sub}, {Name: "b", Digest: sub}},
			Files:       []*repb.FileNode{{Name: "f", Digest: file}},
		}
	}
	return d
}

// A 64-level DAG with two edges per level (2^64 paths) is refused by the
// path limit after creating at most that many paths, naming the limit.
func TestDoublingTreeIsRefused(t *testing.T) {
	f := newFixture(t)
	f.r.opts.Limits = Limits{MaxPaths: 10_000}
	out := f.run(sh("true"), f.doubling(64), time.Minute)
	if codes.Code(out.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(out.Status.GetMessage(), LimitPaths) {
		t.Fatalf("status %v, want INVALID_ARGUMENT naming %s", out.Status, LimitPaths)
	}
	if n := countFiles(t, f.r.execDir); n != 0 {
		t.Errorf("%d paths left behind in the execution directory", n)
	}
}

func TestInputLimits(t *testing.T) {
	f := newFixture(t)
	deep := &repb.Directory{}
	for i := 0; i < 40; i++ {
		deep = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: f.putMsg(deep)}}}
	}
	big := &repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: f.put(make([]byte, 600))}, {Name: "b", Digest: f.put(make([]byte, 500))}}}
	for _, tc := range []struct {
		limits Limits
		root   *repb.Directory
		limit  string
	}{
		{Limits{MaxDepth: 30}, deep, LimitDepth},
		{Limits{MaxBytes: 1000}, big, LimitBytes},
		{Limits{MaxDirectories: 5}, f.doubling(8), LimitDirectories},
	} {
		f.r.opts.Limits = tc.limits
		out := f.run(sh("true"), tc.root, time.Minute)
		if codes.Code(out.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(out.Status.GetMessage(), tc.limit) {
			t.Errorf("%+v: status %v, want INVALID_ARGUMENT naming %s", tc.limits, out.Status, tc.limit)
		}
		// The same tree within the limits runs.
		f.r.opts.Limits = Limits{}
		if out := f.run(sh("true"), tc.root, time.Minute); out.Status.GetCode() != 0 {
			t.Errorf("%s within default limits: %v", tc.limit, out.Status)
		}
	}
}

// The action's timeout covers materialising its input root: a tree that
// takes longer to write than the timeout ends in DEADLINE_EXCEEDED.
func TestTimeoutCoversMaterialisation(t *testing.T) {
	f := newFixture(t)
	root := f.doubling(18) // 2^19 files
	start := time.Now()
	out := f.run(sh("true"), root, 50*time.Millisecond)
	if codes.Code(out.Status.GetCode()) != codes.DeadlineExceeded || !strings.Contains(out.Status.GetMessage(), "materialising") {
		t.Fatalf("status %v after %v, want DEADLINE_EXCEEDED while materialising", out.Status, time.Since(start))
	}
}

// The TreeSize check on distinct Directories agrees with the worker.
func TestTreeSize(t *testing.T) {
	f := newFixture(t)
	dirs := map[string]DirNode{}
	file := f.put([]byte("leaf"))
	d := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file}}}
	var hash string
	for i := 0; i <= 512; i++ {
		dg := f.putMsg(d)
		dirs[dg.Hash] = NodeOf(d)
		hash = dg.Hash
		d = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: dg}, {Name: "b", Digest: dg}}}
	}
	var le *LimitError
	if err := TreeSize(hash, dirs, Limits{MaxDepth: 1000}); !errors.As(err, &le) || le.Limit != LimitPaths {
		t.Errorf("2^512 paths: %v, want %s", err, LimitPaths)
	}
	if err := TreeSize(hash, dirs, Limits{MaxPaths: 1 << 62, MaxBytes: 1 << 62}); !errors.As(err, &le) || le.Limit != LimitDepth {
		t.Errorf("513 levels: %v, want %s", err, LimitDepth)
	}
	small := f.doubling(3)
	sd := f.putMsg(small)
	if err := TreeSize(sd.Hash, map[string]DirNode{sd.Hash: NodeOf(small)}, Limits{}); err != nil {
		t.Errorf("a small tree: %v", err)
	}
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dir {
			n++
		}
		return nil
	})
	return n
}

// Sizes near the int64 limit saturate instead of wrapping to a small count.
func TestTreeSizeSaturates(t *testing.T) {
	huge := &repb.Digest{Hash: strings.Repeat("0", 64), SizeBytes: 1<<63 - 1}
	d := &repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: huge}, {Name: "b", Digest: huge}}}
	var le *LimitError
	err := TreeSize("r", map[string]DirNode{"r": NodeOf(d)}, Limits{MaxBytes: 1<<63 - 1})
	if !errors.As(err, &le) || le.Limit != LimitBytes {
		t.Fatalf("two files of MaxInt64 bytes: %v, want %s", err, LimitBytes)
	}
}

// The output limit's status names the limit in its message and, through a
// remote worker's encoding of it, in its details.
func TestOutputLimitStatusRoundTrip(t *testing.T) {
	st := OutputLimitStatus("collecting outputs: too much (limit " + LimitOutputBytes + ")")
	data, err := proto.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	back := &spb.Status{}
	if err := proto.Unmarshal(data, back); err != nil {
		t.Fatal(err)
	}
	if codes.Code(back.Code) != codes.ResourceExhausted || RefusedLimit(back) != LimitOutputBytes {
		t.Errorf("status %v: code %v, limit %q", back, codes.Code(back.Code), RefusedLimit(back))
	}
	if RefusedLimit(nil) != "" || RefusedLimit(statusOf(codes.ResourceExhausted, "other")) != "" {
		t.Error("a status without the detail names a limit")
	}
}
