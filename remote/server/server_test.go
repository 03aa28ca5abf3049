package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

type running struct {
	srv  *server.Server
	conn *grpc.ClientConn
	http string
	stop func() error
}

func start(t *testing.T, cfg server.Config, before func(*server.Server)) *running {
	t.Helper()
	cfg.GRPCAddress = "127.0.0.1:0"
	cfg.HTTPAddress = "127.0.0.1:0"
	if cfg.Store == nil {
		cfg.Store = memory.New(0)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(srv)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	r := &running{srv: srv, conn: conn, http: "http://" + srv.HTTPAddr().String()}
	stopped := false
	r.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		conn.Close()
		cancel()
		return <-done
	}
	t.Cleanup(func() { r.stop() })
	return r
}

func TestServer(t *testing.T) {
	// A decorated store: stats are found through the decorator.
	r := start(t, server.Config{Version: "test", Store: store.Verifying(memory.New(0))}, nil)
	ctx := context.Background()

	h, err := healthpb.NewHealthClient(r.conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	h, err = healthpb.NewHealthClient(r.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "build.bazel.remote.execution.v2.ActionCache"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of ActionCache: %v %v", h, err)
	}
	caps, err := repb.NewCapabilitiesClient(r.conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if caps.ExecutionCapabilities != nil {
		t.Fatal("execution advertised without an execution service")
	}
	max := caps.CacheCapabilities.MaxBatchTotalSizeBytes

	// A batch of exactly the advertised size passes the gRPC receive limit.
	var reqs []*repb.BatchUpdateBlobsRequest_Request
	var total int64
	for i := 0; total < max; i++ {
		n := min(int64(100_000), max-total)
		data := bytes.Repeat([]byte{byte(i)}, int(n))
		d, _ := digest.Of(repb.DigestFunction_SHA256, data)
		reqs = append(reqs, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: data})
		total += n
	}
	cas := repb.NewContentAddressableStorageClient(r.conn)
	resp, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: reqs})
	if err != nil {
		t.Fatalf("batch of max_batch_total_size_bytes: %v", err)
	}
	for _, x := range resp.Responses {
		if x.Status.Code != 0 {
			t.Fatalf("blob: %v", x.Status)
		}
	}
	// One byte more is refused with a status, not a transport error.
	extra := []byte("x")
	d, _ := digest.Of(repb.DigestFunction_SHA256, extra)
	_, err = cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: append(reqs, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: extra})})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("oversized batch: %v", err)
	}

	// Written over gRPC, read over HTTP: one store.
	blob := []byte("shared between protocols")
	bd, _ := digest.Of(repb.DigestFunction_SHA256, blob)
	ws, err := bspb.NewByteStreamClient(r.conn).Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ws.Send(&bspb.WriteRequest{ResourceName: fmt.Sprintf("inst/uploads/u/blobs/%s/%d", bd.Hash, bd.SizeBytes), Data: blob, FinishWrite: true})
	if _, err := ws.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	// HTTP knows sizes from its own uploads and results; PUT then GET.
	req, _ := http.NewRequest("PUT", r.http+"/inst/cas/"+bd.Hash, bytes.NewReader(blob))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP PUT: %v %v", resp, err)
	}
	hr, err := http.Get(r.http + "/inst/cas/" + bd.Hash)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != 200 || !bytes.Equal(got, blob) {
		t.Fatalf("HTTP GET: %d %q", hr.StatusCode, got)
	}

	// /status and /metrics.
	sr, err := http.Get(r.http + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st server.Status
	if err := json.NewDecoder(sr.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	sr.Body.Close()
	if st.GRPCAddress != r.srv.GRPCAddr().String() || st.StoreStats.Entries < int64(len(reqs)) || st.Version != "test" || st.MaxBatchBytes != max {
		t.Fatalf("status %+v", st)
	}
	mr, err := http.Get(r.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mr.Body)
	mr.Body.Close()
	for _, want := range []string{
		`ferrule_grpc_calls_total{code="OK",method="BatchUpdateBlobs"} 1`,
		`ferrule_grpc_calls_total{code="InvalidArgument",method="BatchUpdateBlobs"} 1`,
		`ferrule_grpc_received_bytes_total{method="Write"}`,
		`ferrule_http_requests_total{code="200",kind="cas",method="GET"} 1`,
		`ferrule_http_sent_bytes_total{kind="cas"} 24`,
		`ferrule_store_entries`,
		`ferrule_store_evictions_total`,
		`ferrule_store_hits_total{kind="cas"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := r.stop(); err != nil {
		t.Fatalf("Serve after shutdown: %v", err)
	}
	if _, err := http.Get(r.http + "/status"); err == nil {
		t.Fatal("HTTP still serving after shutdown")
	}
}

type fakeExec struct {
	repb.UnimplementedExecutionServer
}

func TestRegisterExecution(t *testing.T) {
	r := start(t, server.Config{}, func(s *server.Server) {
		s.RegisterExecution(fakeExec{}, &repb.ExecutionCapabilities{DigestFunction: repb.DigestFunction_SHA256, ExecEnabled: true})
	})
	caps, err := repb.NewCapabilitiesClient(r.conn).GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	if !caps.GetExecutionCapabilities().GetExecEnabled() {
		t.Fatal("execution not advertised")
	}
	_, err = repb.NewExecutionClient(r.conn).Execute(context.Background(), &repb.ExecuteRequest{})
	if err != nil {
		t.Fatal(err) // the stream opens; the fake answers UNIMPLEMENTED on Recv
	}
}

func TestReadOnly(t *testing.T) {
	r := start(t, server.Config{ReadOnly: true}, nil)
	ctx := context.Background()
	caps, err := repb.NewCapabilitiesClient(r.conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{}, grpc.WaitForReady(true))
	if err != nil || caps.CacheCapabilities.ActionCacheUpdateCapabilities.UpdateEnabled {
		t.Fatalf("read-only server advertises updates: %v %v", caps, err)
	}
	d, _ := digest.Of(repb.DigestFunction_SHA256, []byte("a"))
	_, err = repb.NewActionCacheClient(r.conn).UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: d, ActionResult: &repb.ActionResult{}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("update on a read-only server: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := server.New(server.Config{GRPCAddress: "127.0.0.1:0"}); err == nil {
		t.Error("no store accepted")
	}
	if _, err := server.New(server.Config{Store: memory.New(0)}); err == nil {
		t.Error("no address accepted")
	}
	s, err := server.New(server.Config{Store: memory.New(0), GRPCAddress: "256.0.0.1:99999"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("bad address served")
	}
}

// panicStore panics on every call, like a buggy backend.
type panicStore struct{}

func (panicStore) Get(context.Context, store.Key, int64) (io.ReadCloser, int64, error) {
	panic("get")
}
func (panicStore) Put(context.Context, store.Key, int64, io.Reader) error { panic("put") }
func (panicStore) FindMissing(context.Context, []store.Key) ([]store.Key, error) {
	panic("find")
}

func TestPanicsBecomeInternal(t *testing.T) {
	r := start(t, server.Config{Store: panicStore{}}, nil)
	ctx := context.Background()
	d, _ := digest.Of(repb.DigestFunction_SHA256, []byte("x"))
	_, err := repb.NewContentAddressableStorageClient(r.conn).FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d}}, grpc.WaitForReady(true))
	if status.Code(err) != codes.Internal {
		t.Fatalf("FindMissingBlobs on a panicking store: %v", err)
	}
	rs, err := bspb.NewByteStreamClient(r.conn).Read(ctx, &bspb.ReadRequest{ResourceName: fmt.Sprintf("blobs/%s/1", d.Hash)})
	if err == nil {
		_, err = rs.Recv()
	}
	if status.Code(err) != codes.Internal {
		t.Fatalf("Read on a panicking store: %v", err)
	}
	// Write: the first call (FindMissing) panics in the handler; the
	// server must still be up afterwards.
	ws, _ := bspb.NewByteStreamClient(r.conn).Write(ctx)
	ws.Send(&bspb.WriteRequest{ResourceName: fmt.Sprintf("uploads/u/blobs/%s/1", d.Hash), Data: []byte("x"), FinishWrite: true})
	if _, err := ws.CloseAndRecv(); status.Code(err) != codes.Internal {
		t.Fatalf("Write on a panicking store: %v", err)
	}
	// Batches of several blobs run on goroutines of their own: a panic
	// there is an INTERNAL status too, not the end of the process.
	d2, _ := digest.Of(repb.DigestFunction_SHA256, []byte("y"))
	cas := repb.NewContentAddressableStorageClient(r.conn)
	if _, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: d, Data: []byte("x")}, {Digest: d2, Data: []byte("y")}}}); status.Code(err) != codes.Internal {
		t.Fatalf("BatchUpdateBlobs of two blobs on a panicking store: %v", err)
	}
	if _, err := cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{d, d2}}); status.Code(err) != codes.Internal {
		t.Fatalf("BatchReadBlobs of two blobs on a panicking store: %v", err)
	}
	if _, err := repb.NewCapabilitiesClient(r.conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{}); err != nil {
		t.Fatalf("server down after panics: %v", err)
	}
}

func TestReflection(t *testing.T) {
	for _, on := range []bool{false, true} {
		r := start(t, server.Config{Reflection: on}, nil)
		stream, err := rpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(context.Background(), grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
		resp, err := stream.Recv()
		if !on {
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("reflection off: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		if !slices.Contains(names, "build.bazel.remote.execution.v2.ContentAddressableStorage") || !slices.Contains(names, "grpc.health.v1.Health") {
			t.Errorf("reflection lists %v", names)
		}
	}
}

// A batch far over the limit does not even pass the gRPC receive limit:
// RESOURCE_EXHAUSTED, and the server stays up.
func TestBatchOverReceiveLimit(t *testing.T) {
	r := start(t, server.Config{MaxBatchBytes: 1 << 20}, nil)
	ctx := context.Background()
	data := bytes.Repeat([]byte("z"), 7<<20)
	d, _ := digest.Of(repb.DigestFunction_SHA256, data)
	cas := repb.NewContentAddressableStorageClient(r.conn)
	_, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}}, grpc.WaitForReady(true))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("7 MiB batch with a 1 MiB limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	small := bytes.Repeat([]byte("z"), 2<<20)
	d, _ = digest.Of(repb.DigestFunction_SHA256, small)
	_, err = cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: small}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("2 MiB batch with a 1 MiB limit: %v, want INVALID_ARGUMENT (REAPI)", err)
	}
}
