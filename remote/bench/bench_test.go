package bench_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ferrule-build/ferrule/remote/bench"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// serve starts g on an in-process listener and returns the dial option that
// reaches it.
func serve(t *testing.T, g *grpc.Server) grpc.DialOption {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
}

// tiny is a configuration small enough for a unit test: every workload is
// bounded by a handful of requests.
func tiny(workloads ...string) bench.Config {
	c := bench.DefaultConfig()
	c.Addr = "bufnet"
	c.Workloads = workloads
	c.Concurrency = 3
	c.Count = 12
	c.Duration = time.Minute // only a safety bound; Count ends each workload
	c.SmallSize = 512
	c.BatchBlobs = 10
	c.SmallPool = 50
	c.LargeSize = 300 << 10
	c.LargePool = 2
	c.ChunkSize = 64 << 10
	c.FindDigests = 100
	c.ActionResults = 5
	c.Seed = 7
	return c
}

// TestRunAgainstFerruleServer runs every workload against Ferrule's own
// server (what `ferrule serve` runs) over an in-memory store, in process,
// on a loopback port.
func TestRunAgainstFerruleServer(t *testing.T) {
	st := memory.New(0)
	srv, err := server.New(server.Config{
		GRPCAddress: "127.0.0.1:0",
		Store:       st,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cfg := tiny()
	cfg.Addr = srv.GRPCAddr().String()
	// The chunked workloads have a test of their own.
	for _, w := range bench.AllWorkloads {
		if w != bench.ChunkedWrite && w != bench.ChunkedRead {
			cfg.Workloads = append(cfg.Workloads, w)
		}
	}

	var progress bytes.Buffer
	rep, err := bench.Run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if len(rep.Workloads) != len(cfg.Workloads) {
		t.Fatalf("got %d workload results, want %d", len(rep.Workloads), len(cfg.Workloads))
	}
	if !rep.Server.ByteStreamZstd {
		t.Error("Ferrule's capabilities were not read as offering zstd")
	}
	for _, w := range rep.Workloads {
		if w.Status != "ok" || w.Errors != 0 {
			t.Errorf("%s: status %s, %d errors %v %s", w.Name, w.Status, w.Errors, w.ErrorSamples, w.Note)
			continue
		}
		if w.Ops != 12 {
			t.Errorf("%s: %d ops, want exactly the count of 12", w.Name, w.Ops)
		}
		if w.OpsPerSec <= 0 || w.P50Ms <= 0 || w.P99Ms < w.P50Ms || w.MaxMs < w.P99Ms {
			t.Errorf("%s: implausible figures %+v", w.Name, w)
		}
	}
	byName := map[string]bench.Result{}
	for _, w := range rep.Workloads {
		byName[w.Name] = w
	}
	if got := byName[bench.FindMissing].Items; got != 12*100 {
		t.Errorf("findmissing looked up %d digests, want 1200", got)
	}
	if got := byName[bench.BatchWrite].Bytes; got != 12*10*512 {
		t.Errorf("batch-write moved %d bytes, want %d", got, 12*10*512)
	}
	if w := byName[bench.ZstdWrite]; w.WireBytes >= w.Bytes {
		t.Errorf("bs-write-zstd sent %d bytes for %d: not compressed", w.WireBytes, w.Bytes)
	}
	// What the run wrote must really be in the store: the small pool (50),
	// batch-write (12 calls x 10 blobs), the large pool (2), bs-write and
	// bs-write-zstd (12 each), and for ac-get 5 results with 3 blobs each.
	if got, want := st.Stats().Entries, int64(50+120+2+12+12+5*3+5); got != want {
		t.Errorf("store holds %d entries after the run, want %d", got, want)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if rep.Failed() {
		t.Errorf("report says failed:\n%s", table.String())
	}
}

// liar is a fake CAS that accepts uploads but answers lookups and reads
// wrongly, and offers no ByteStream and no zstd.
type liar struct {
	repb.UnimplementedContentAddressableStorageServer
	repb.UnimplementedCapabilitiesServer
}

func (liar) GetCapabilities(context.Context, *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	return &repb.ServerCapabilities{CacheCapabilities: &repb.CacheCapabilities{
		DigestFunctions: []repb.DigestFunction_Value{repb.DigestFunction_SHA256},
	}}, nil
}

func (liar) BatchUpdateBlobs(_ context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	resp := &repb.BatchUpdateBlobsResponse{}
	for _, r := range req.Requests {
		resp.Responses = append(resp.Responses, &repb.BatchUpdateBlobsResponse_Response{Digest: r.Digest, Status: status.New(codes.OK, "").Proto()})
	}
	return resp, nil
}

// FindMissingBlobs says everything is missing.
func (liar) FindMissingBlobs(_ context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	return &repb.FindMissingBlobsResponse{MissingBlobDigests: req.BlobDigests}, nil
}

// BatchReadBlobs returns bytes that do not match the digests.
func (liar) BatchReadBlobs(_ context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	resp := &repb.BatchReadBlobsResponse{}
	for _, d := range req.Digests {
		resp.Responses = append(resp.Responses, &repb.BatchReadBlobsResponse_Response{
			Digest: d, Data: make([]byte, d.SizeBytes), Status: status.New(codes.OK, "").Proto()})
	}
	return resp, nil
}

// TestRunCountsWrongAnswersAndMissingServices checks that the benchmark
// verifies what it reads, and copes with a server lacking services.
func TestRunCountsWrongAnswersAndMissingServices(t *testing.T) {
	g := grpc.NewServer()
	repb.RegisterContentAddressableStorageServer(g, liar{})
	repb.RegisterCapabilitiesServer(g, liar{})
	dial := serve(t, g)

	cfg := tiny(bench.FindMissing, bench.BatchRead, bench.ByteStreamWrite, bench.ZstdRead, bench.ActionCacheGet)
	cfg.Count = 60 // more than the abort threshold
	rep, err := bench.Run(context.Background(), cfg, nil, dial)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]string{
		bench.FindMissing:     "aborted", // wrong answers every time
		bench.BatchRead:       "aborted", // corrupt data every time
		bench.ByteStreamWrite: "aborted", // Unimplemented
		bench.ZstdRead:        "skipped", // not advertised
		bench.ActionCacheGet:  "failed",  // set-up cannot store results
	}
	for _, w := range rep.Workloads {
		if w.Status != want[w.Name] {
			t.Errorf("%s: status %q, want %q (%+v)", w.Name, w.Status, want[w.Name], w)
		}
		if w.Ops != 0 {
			t.Errorf("%s: %d operations counted as successful", w.Name, w.Ops)
		}
	}
	samples := func(name string) string {
		for _, w := range rep.Workloads {
			if w.Name == name && len(w.ErrorSamples) > 0 {
				return w.ErrorSamples[0].Error
			}
		}
		return ""
	}
	if s := samples(bench.FindMissing); !strings.Contains(s, "wrong answer") {
		t.Errorf("findmissing error = %q, want a wrong answer", s)
	}
	if s := samples(bench.BatchRead); !strings.Contains(s, "does not match digest") {
		t.Errorf("batch-read error = %q, want a digest mismatch", s)
	}
	if s := samples(bench.ByteStreamWrite); !strings.HasPrefix(s, "Unimplemented") {
		t.Errorf("bs-write error = %q, want Unimplemented", s)
	}
	if !rep.Failed() {
		t.Error("report not marked failed")
	}
}

func TestRunUnreachableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	cfg := tiny()
	cfg.Addr = addr
	_, err = bench.Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), addr) {
		t.Errorf("Run against a closed port: err = %v, want 'cannot reach ... %s'", err, addr)
	}
}

func TestRunServerWithoutCapabilities(t *testing.T) {
	g := grpc.NewServer()
	repb.RegisterContentAddressableStorageServer(g, liar{}) // but no Capabilities
	dial := serve(t, g)
	_, err := bench.Run(context.Background(), tiny(), nil, dial)
	if err == nil || !strings.Contains(err.Error(), "Capabilities") {
		t.Errorf("err = %v, want one about the missing Capabilities service", err)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := bench.Run(ctx, tiny(), nil, grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
		return nil, errors.New("no network in this test")
	}))
	if err == nil {
		t.Error("Run with a cancelled context succeeded")
	}
}

// The chunked workloads move only the chunks around each edit.
func TestChunkedWorkloads(t *testing.T) {
	srv, err := server.New(server.Config{
		GRPCAddress: "127.0.0.1:0",
		Store:       memory.New(0),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg := tiny()
	cfg.Addr = srv.GRPCAddr().String()
	cfg.Workloads = []string{bench.ChunkedWrite, bench.ChunkedRead}
	var progress bytes.Buffer
	rep, err := bench.Run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if !rep.Server.SplitSplice {
		t.Error("Ferrule's capabilities were not read as offering split and splice")
	}
	for _, w := range rep.Workloads {
		if w.Status != "ok" || w.Errors != 0 || w.Ops != 12 {
			t.Errorf("%s: status %s, %d ops, %d errors %v %s", w.Name, w.Status, w.Ops, w.Errors, w.ErrorSamples, w.Note)
			continue
		}
		if w.WireBytes <= 0 || w.WireBytes > w.Bytes/4 {
			t.Errorf("%s: %d bytes on the wire for %d bytes of blobs", w.Name, w.WireBytes, w.Bytes)
		}
	}
}
