package ac_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

const sha = repb.DigestFunction_SHA256

func setup(t *testing.T, st store.Store, o ac.Options) repb.ActionCacheClient {
	t.Helper()
	g := grpc.NewServer()
	ac.New(st, o).Register(g)
	conn := grpctest.Dial(t, g)
	return repb.NewActionCacheClient(conn)
}

func dg(t *testing.T, data []byte) *repb.Digest {
	t.Helper()
	d, err := digest.Of(sha, data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func put(t *testing.T, st store.Store, data []byte) *repb.Digest {
	t.Helper()
	d := dg(t, data)
	k := store.Key{Kind: store.CAS, Function: sha, Hash: d.Hash, Size: d.SizeBytes}
	if err := st.Put(context.Background(), k, d.SizeBytes, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	if code != codes.OK && status.Convert(err).Message() == "" {
		t.Fatalf("%v has no message", err)
	}
}

// fixture stores the blobs of a result with an output file, an output
// directory (Tree with a nested file), stdout and stderr.
type fixture struct {
	res                        *repb.ActionResult
	file, nested, tree, out    *repb.Digest
	fileData, outData, errData []byte
}

func newFixture(t *testing.T, st store.Store) fixture {
	var f fixture
	f.fileData = []byte("object code")
	f.file = put(t, st, f.fileData)
	f.nested = put(t, st, []byte("nested file"))
	tree := &repb.Tree{
		Root:     &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: dg(t, []byte("sub"))}}},
		Children: []*repb.Directory{{Files: []*repb.FileNode{{Name: "n", Digest: f.nested}}}},
	}
	data, _ := proto.Marshal(tree)
	f.tree = put(t, st, data)
	f.outData, f.errData = []byte("stdout text"), []byte("stderr text")
	f.out = put(t, st, f.outData)
	f.res = &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "out/a.o", Digest: f.file}, {Path: "out/empty", Digest: digest.Empty(sha)}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "out/dir", TreeDigest: f.tree}},
		StdoutDigest:      f.out,
		StderrDigest:      put(t, st, f.errData),
		ExitCode:          0,
		ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: "test"},
	}
	return f
}

func TestUpdateGet(t *testing.T) {
	st := memory.New(0)
	c := setup(t, st, ac.Options{})
	ctx := context.Background()
	f := newFixture(t, st)
	action := dg(t, []byte("action"))
	_, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
	wantCode(t, err, codes.NotFound)
	if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: f.res}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, f.res) {
		t.Fatalf("got %v, want %v", got, f.res)
	}
	// Instances and digest functions are separate.
	_, err = c.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "other/inst", ActionDigest: action})
	wantCode(t, err, codes.NotFound)
	_, err = c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action, DigestFunction: repb.DigestFunction_BLAKE3})
	wantCode(t, err, codes.NotFound)
}

func TestInline(t *testing.T) {
	st := memory.New(0)
	c := setup(t, st, ac.Options{})
	ctx := context.Background()
	f := newFixture(t, st)
	action := dg(t, []byte("action"))
	if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: f.res}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action, InlineStdout: true, InlineOutputFiles: []string{"out/a.o"}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.StdoutRaw, f.outData) || got.StderrRaw != nil {
		t.Fatalf("stdout_raw %q stderr_raw %q; want only stdout", got.StdoutRaw, got.StderrRaw)
	}
	if !bytes.Equal(got.OutputFiles[0].Contents, f.fileData) || got.OutputFiles[1].Contents != nil {
		t.Fatalf("output file contents not inlined as asked")
	}
	got, err = c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action, InlineStderr: true})
	if err != nil || !bytes.Equal(got.StderrRaw, f.errData) || got.StdoutRaw != nil {
		t.Fatalf("stderr inline: %v %v", got, err)
	}
	// A tight inline budget leaves contents to the digests.
	c2 := setup(t, st, ac.Options{MaxInlineBytes: 5})
	got, err = c2.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action, InlineStdout: true})
	if err != nil || got.StdoutRaw != nil || got.StdoutDigest == nil {
		t.Fatalf("over budget: %v %v", got, err)
	}
}

func TestUpdateMovesInlineToCAS(t *testing.T) {
	st := memory.New(0)
	c := setup(t, st, ac.Options{})
	ctx := context.Background()
	action := dg(t, []byte("a2"))
	res := &repb.ActionResult{
		StdoutRaw:   []byte("raw out"),
		OutputFiles: []*repb.OutputFile{{Path: "f", Contents: []byte("contents"), Digest: dg(t, []byte("contents"))}},
	}
	stored, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: res})
	if err != nil {
		t.Fatal(err)
	}
	if stored.StdoutRaw != nil || stored.StdoutDigest.GetHash() != dg(t, []byte("raw out")).Hash || stored.OutputFiles[0].Contents != nil {
		t.Fatalf("stored %v", stored)
	}
	got, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action, InlineStdout: true})
	if err != nil || string(got.StdoutRaw) != "raw out" {
		t.Fatalf("get: %v %v", got, err)
	}
	// Inline contents that do not match their digest are refused.
	bad := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "f", Contents: []byte("contentz"), Digest: dg(t, []byte("contents"))}}}
	_, err = c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: dg(t, []byte("a3")), ActionResult: bad})
	wantCode(t, err, codes.InvalidArgument)
}

func TestIncompleteResultsAreNotFound(t *testing.T) {
	ctx := context.Background()
	for _, drop := range []string{"file", "nested", "tree", "stdout"} {
		st := memory.New(0)
		c := setup(t, st, ac.Options{})
		f := newFixture(t, st)
		action := dg(t, []byte("action"))
		if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: f.res}); err != nil {
			t.Fatal(err)
		}
		// Re-create the store without one blob: copy everything else.
		fresh := memory.New(0)
		keep := map[string]*repb.Digest{"file": f.file, "nested": f.nested, "tree": f.tree, "stdout": f.out}
		for name, d := range keep {
			if name == drop {
				continue
			}
			copyBlob(t, st, fresh, store.Key{Kind: store.CAS, Function: sha, Hash: d.Hash, Size: d.SizeBytes})
		}
		copyBlob(t, st, fresh, store.Key{Kind: store.CAS, Function: sha, Hash: f.res.StderrDigest.Hash, Size: f.res.StderrDigest.SizeBytes})
		copyBlob(t, st, fresh, ac.ResultKey("", sha, action.Hash))
		c2 := setup(t, fresh, ac.Options{})
		_, err := c2.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
		if status.Code(err) != codes.NotFound {
			t.Errorf("without %s: got %v, want NOT_FOUND", drop, err)
		}
	}
}

func copyBlob(t *testing.T, from, to store.Store, k store.Key) {
	t.Helper()
	rc, size, err := from.Get(context.Background(), k, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := to.Put(context.Background(), k, size, rc); err != nil {
		t.Fatal(err)
	}
}

// lruStore counts FindMissing calls per key, to see that GetActionResult
// refreshes the referenced blobs.
type lruStore struct {
	store.Store
	touched map[string]int
}

func (s *lruStore) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	for _, k := range keys {
		s.touched[k.Hash]++
	}
	return s.Store.FindMissing(ctx, keys)
}

func TestGetRefreshesBlobs(t *testing.T) {
	st := &lruStore{Store: memory.New(0), touched: map[string]int{}}
	c := setup(t, st, ac.Options{})
	ctx := context.Background()
	f := newFixture(t, st)
	action := dg(t, []byte("action"))
	if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: f.res}); err != nil {
		t.Fatal(err)
	}
	clear(st.touched)
	if _, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action}); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*repb.Digest{"file": f.file, "nested": f.nested, "stdout": f.out, "stderr": f.res.StderrDigest} {
		if st.touched[d.Hash] == 0 {
			t.Errorf("GetActionResult did not refresh the %s blob", name)
		}
	}
}

// A small LRU bound evicts the outputs: the result must then be NOT_FOUND.
func TestEvictedOutputs(t *testing.T) {
	st := memory.New(300)
	c := setup(t, st, ac.Options{})
	ctx := context.Background()
	out := put(t, st, bytes.Repeat([]byte("o"), 100))
	action := dg(t, []byte("act"))
	res := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: out}}}
	if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: res}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action}); err != nil {
		t.Fatal(err)
	}
	// Use the result entry itself, so that the output is the least
	// recently used entry, then push it out.
	acKey := ac.ResultKey("", sha, action.Hash)
	rc, _, err := st.Get(ctx, acKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	put(t, st, bytes.Repeat([]byte("x"), 150))
	if missing, _ := st.FindMissing(ctx, []store.Key{acKey}); len(missing) != 0 {
		t.Fatal("the result entry itself was evicted; the test needs a larger bound")
	}
	_, err = c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
	wantCode(t, err, codes.NotFound)
}

// TestUpdateValidationNamesField: output paths "." (and empty, absolute,
// escaping) and symlink targets with a NUL byte are INVALID_ARGUMENT
// naming the field.
func TestUpdateValidationNamesField(t *testing.T) {
	c := setup(t, memory.New(0), ac.Options{})
	ctx := context.Background()
	good := dg(t, []byte("x"))
	action := dg(t, []byte("action"))
	tree := dg(t, []byte("tree"))
	for _, tc := range []struct {
		res   *repb.ActionResult
		field string
	}{
		{&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "ok", Digest: good}, {Path: ".", Digest: good}}}, "output_files[1].path"},
		{&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: ".", TreeDigest: tree}}}, "output_directories[0].path"},
		{&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "", TreeDigest: tree}}}, "output_directories[0].path"},
		{&repb.ActionResult{OutputSymlinks: []*repb.OutputSymlink{{Path: ".", Target: "x"}}}, "output_symlinks[0].path"},
		{&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "/abs", Digest: good}}}, "output_files[0].path"},
		{&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "..", Digest: good}}}, "output_files[0].path"},
		{&repb.ActionResult{OutputSymlinks: []*repb.OutputSymlink{{Path: "l", Target: "a\x00b"}}}, "output_symlinks[0].target"},
		{&repb.ActionResult{OutputFileSymlinks: []*repb.OutputSymlink{{Path: "l", Target: "ok"}, {Path: "m", Target: "\x00"}}}, "output_file_symlinks[1].target"},
		{&repb.ActionResult{OutputDirectorySymlinks: []*repb.OutputSymlink{{Path: "d", Target: "x\x00"}}}, "output_directory_symlinks[0].target"},
	} {
		_, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: tc.res})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("%v: got %v, want INVALID_ARGUMENT naming %s", tc.res, err, tc.field)
		}
	}
}

func TestUpdateValidation(t *testing.T) {
	st := memory.New(0)
	c := setup(t, st, ac.Options{})
	ctx := context.Background()
	good := dg(t, []byte("x"))
	action := dg(t, []byte("action"))
	bad := []*repb.ActionResult{
		{OutputFiles: []*repb.OutputFile{{Path: "/abs", Digest: good}}},
		{OutputFiles: []*repb.OutputFile{{Path: "../up", Digest: good}}},
		{OutputFiles: []*repb.OutputFile{{Path: "a/./b", Digest: good}}},
		{OutputFiles: []*repb.OutputFile{{Path: "", Digest: good}}},
		{OutputFiles: []*repb.OutputFile{{Path: "f"}}},
		{OutputFiles: []*repb.OutputFile{{Path: "f", Digest: &repb.Digest{Hash: "zz", SizeBytes: 1}}}},
		{OutputFiles: []*repb.OutputFile{{Path: "f", Digest: &repb.Digest{Hash: good.Hash, SizeBytes: -1}}}},
		{OutputFiles: []*repb.OutputFile{{Path: "f", Digest: good}, {Path: "f", Digest: good}}},
		{OutputDirectories: []*repb.OutputDirectory{{Path: "d"}}},
		{StdoutDigest: &repb.Digest{Hash: "short"}},
		{OutputSymlinks: []*repb.OutputSymlink{{Path: "l"}}},
	}
	for i, res := range bad {
		_, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: res})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("bad result %d (%v): got %v, want INVALID_ARGUMENT", i, res, err)
		}
	}
	_, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: &repb.Digest{Hash: "x"}, ActionResult: &repb.ActionResult{}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: "../etc", ActionDigest: action, ActionResult: &repb.ActionResult{}})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: &repb.Digest{Hash: good.Hash, SizeBytes: -3}})
	wantCode(t, err, codes.InvalidArgument)
	if n := st.Stats().Entries; n != 0 {
		t.Fatalf("%d entries stored by rejected updates", n)
	}
	// Symlinks listed in both the new and the legacy fields are fine.
	ok := &repb.ActionResult{
		OutputSymlinks:     []*repb.OutputSymlink{{Path: "l", Target: "t"}},
		OutputFileSymlinks: []*repb.OutputSymlink{{Path: "l", Target: "t"}},
	}
	if _, err := c.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: ok}); err != nil {
		t.Fatal(err)
	}
	ro := setup(t, st, ac.Options{ReadOnly: true})
	_, err = ro.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: ok})
	wantCode(t, err, codes.PermissionDenied)
}
