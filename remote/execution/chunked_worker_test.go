package execution

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/capabilities"
	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/chunkclient"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/split"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/chunked"
	"github.com/ferrule-build/ferrule/remote/store/grpcstore"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/worker"
)

// A remote worker over a CAS with split and splice uploads its large output
// by chunks and fetches a large input that differs from it in one line by
// the few chunks it lacks.
func TestWorkerMovesLargeFilesByChunks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := chunked.New(memory.New(1<<30), chunked.Options{})
	svc := New(ch, Options{Logger: quietLogger()})
	g := grpc.NewServer()
	svc.Register(g)
	sp, err := split.New(cas.New(ch, cas.Options{}), ch, split.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp.Register(g)
	bytestream.New(ch, bytestream.Options{}).Register(g)
	capabilities.New(capabilities.Options{Chunking: sp}).Register(g)
	conn := grpctest.Dial(t, g)
	e := &env{t: t, st: ch, svc: svc, exec: repb.NewExecutionClient(conn), conn: conn, ctx: ctx, props: worker.DefaultPlatform()}

	cc, err := chunkclient.New(ctx, conn, "", grpcstore.New(conn), chunkclient.Options{Local: store.Verifying(memory.New(0))})
	if err != nil || cc == nil {
		t.Fatalf("chunking client: %v, %v", cc, err)
	}
	r, err := worker.New(worker.Options{ID: "chunking", Dir: t.TempDir(), Store: cc, NoNamespaces: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	go worker.Serve(ctx, conn, r, e.props, 1)
	waitFor(t, "the worker to join", func() bool { return svc.Stats().Workers == 1 })

	// seq 1 400000 is 2,888,895 bytes, over FastCDC's 2 MiB threshold.
	_, resp := e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("seq 1 400000 > big", "big"), nil, nil)})
	if resp.Status.GetCode() != 0 || len(resp.Result.GetOutputFiles()) != 1 {
		t.Fatalf("status %v, result %v", resp.Status, resp.Result)
	}
	big := resp.Result.OutputFiles[0].Digest
	if cc.Stats.UploadBlobs.Load() != 1 || cc.Stats.UploadSent.Load() != big.SizeBytes {
		t.Fatalf("output went up as %d chunked blobs, %d bytes", cc.Stats.UploadBlobs.Load(), cc.Stats.UploadSent.Load())
	}
	if _, err := ch.Mapping(ctx, store.Key{Kind: store.CAS, Function: fn, Hash: big.Hash, Size: big.SizeBytes}); err != nil {
		t.Fatalf("no chunk mapping recorded for the output: %v", err)
	}

	var text []byte
	for i := 1; i <= 400000; i++ {
		text = fmt.Appendf(text, "%d\n", i)
	}
	if d, _ := digest.Of(fn, text); d.Hash != big.Hash || !bytes.Equal(e.get(big), text) {
		t.Fatal("the spliced output does not read as seq's output")
	}
	runWC := func(d *repb.Digest) string {
		root := &repb.Directory{Files: []*repb.FileNode{{Name: "in", Digest: d}}}
		_, resp := e.run(&repb.ExecuteRequest{ActionDigest: e.action(shCommand("wc -c < in > n", "n"), root, nil)})
		if resp.Status.GetCode() != 0 || len(resp.Result.GetOutputFiles()) != 1 {
			t.Fatalf("status %v, result %v", resp.Status, resp.Result)
		}
		return strings.TrimSpace(string(e.get(resp.Result.OutputFiles[0].Digest)))
	}
	if n := runWC(big); n != fmt.Sprint(big.SizeBytes) {
		t.Fatalf("wc says %s", n)
	}
	first := cc.Stats.DownloadRecv.Load()

	// The same text with one line edited, uploaded by another client.
	edited := bytes.Replace(text, []byte("\n200000\n"), []byte("\ntwo hundred thousand\n"), 1)
	ed, _ := digest.Of(fn, edited)
	up := cc.WithLocal(memory.New(0))
	if err := up.Put(ctx, store.Key{Kind: store.CAS, Function: fn, Hash: ed.Hash, Size: ed.SizeBytes}, ed.SizeBytes, bytes.NewReader(edited)); err != nil {
		t.Fatal(err)
	}
	if n := runWC(ed); n != fmt.Sprint(ed.SizeBytes) {
		t.Fatalf("wc says %s", n)
	}
	second := cc.Stats.DownloadRecv.Load() - first
	if cc.Stats.DownloadBlobs.Load() != 2 || first != big.SizeBytes || second <= 0 || second > ed.SizeBytes/2 {
		t.Fatalf("%d chunked downloads: %d bytes for the first input of %d, %d for the edited one of %d",
			cc.Stats.DownloadBlobs.Load(), first, big.SizeBytes, second, ed.SizeBytes)
	}
}
