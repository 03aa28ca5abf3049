package tiered_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/httpcache"
	"github.com/ferrule-build/ferrule/remote/rpcstatus"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/s3"
	"github.com/ferrule-build/ferrule/remote/store/s3/s3test"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
	"github.com/ferrule-build/ferrule/remote/store/tiered"
)

func shared(t testing.TB, srv *s3test.Server, bucket, prefix string) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s3.Open(ctx, srv.Options(bucket, prefix))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// frontend is one `ferrule serve`'s store: its own disk in front of the
// shared bucket.
func frontend(t testing.TB, srv *s3test.Server, bucket, prefix string, opts tiered.Options) *tiered.Store {
	t.Helper()
	d, err := disk.Open(disk.Options{Dir: t.TempDir(), Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	ts := tiered.New(d, shared(t, srv, bucket, prefix), opts)
	t.Cleanup(func() { ts.Close() })
	return ts
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "tiered")
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		return frontend(t, srv, "tiered", "run"+string(rune('a'+n)), tiered.Options{})
	})
}

// resultFor stores an output blob and an ActionResult naming it through
// st, and returns the AC key and the output.
func resultFor(t *testing.T, st store.Store, name string) (store.Key, []byte, store.Key) {
	t.Helper()
	out := storetest.Blob(uint64(len(name)), 100<<10)
	ok := storetest.CASKey("", repb.DigestFunction_SHA256, out)
	storetest.MustPut(t, st, ok, out)
	res, _ := proto.Marshal(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: &repb.Digest{Hash: ok.Hash, SizeBytes: ok.Size}}}})
	ak := storetest.ACKey("", name)
	storetest.MustPut(t, st, ak, res)
	return ak, out, ok
}

// Two frontends with their own disks on one bucket: what A writes, B
// reads, and B's completeness check finds A's outputs in the bucket.
func TestTwoFrontends(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "shared")
	a := frontend(t, srv, "shared", "p", tiered.Options{})
	b := frontend(t, srv, "shared", "p", tiered.Options{})
	ak, out, ok := resultFor(t, a, "two")

	if m, err := b.Unwrap().FindMissing(context.Background(), []store.Key{ok}); err != nil || len(m) != 1 {
		t.Fatalf("B's disk already holds A's blob (%v, %v)", m, err)
	}
	if m, err := b.FindMissing(context.Background(), []store.Key{ok, ak}); err != nil || len(m) != 0 {
		t.Errorf("B's FindMissing: missing %v, %v; want none", m, err)
	}
	// Over the HTTP cache protocol, which names blobs by hash alone, B
	// finds the size of A's blob in the bucket.
	web := httptest.NewServer(httpcache.New(store.Complete(b), httpcache.Options{}))
	defer web.Close()
	resp, err := http.Get(web.URL + "/cas/" + ok.Hash)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, out) {
		t.Errorf("HTTP GET through B of a blob only the bucket holds: %s, %d bytes", resp.Status, len(body))
	}
	cb := store.Complete(b)
	if _, err := store.ReadBlob(context.Background(), cb, ak, 1<<20); err != nil {
		t.Fatalf("B's completeness-checked AC read of A's result: %v", err)
	}
	if got := storetest.MustGet(t, b, ok); !bytes.Equal(got, out) {
		t.Fatal("B reads A's blob differently")
	}
	// The read filled B's disk.
	if got := storetest.MustGet(t, b.Unwrap(), ok); !bytes.Equal(got, out) {
		t.Error("B's disk does not hold the blob after the read")
	}
	// Compressed reads go through the local tier.
	ok2 := out[:50<<10]
	k2 := storetest.CASKey("", repb.DigestFunction_SHA256, ok2)
	storetest.MustPut(t, a, k2, ok2)
	rc, size, err := store.GetCompressed(context.Background(), b, k2)
	if err != nil {
		t.Fatalf("B's GetCompressed of a blob only A's disk and the bucket hold: %v", err)
	}
	rc.Close()
	if size != k2.Size {
		t.Errorf("GetCompressed size %d, want %d", size, k2.Size)
	}
}

// A corrupt object in the bucket is missing, never served, and not kept.
func TestCorruptShared(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "corrupt")
	a := frontend(t, srv, "corrupt", "", tiered.Options{})
	data := storetest.Blob(7, 5000)
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	bad := append([]byte(nil), data...)
	bad[100] ^= 1
	if _, err := srv.Client(t).PutObject(context.Background(), "corrupt", "cas/"+k.Hash, bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, err := a.Get(context.Background(), k, 0)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a corrupt shared object: %v, want ErrNotFound", err)
	}
	storetest.AssertMissing(t, a.Unwrap(), k)
	if v := metric(t, a, "ferrule_shared_fills_total", "corrupt"); v != 1 {
		t.Errorf("corrupt fills counted %v, want 1", v)
	}
	// An upload repairs it.
	storetest.MustPut(t, a, k, data)
	b := frontend(t, srv, "corrupt", "", tiered.Options{})
	if got := storetest.MustGet(t, b, k); !bytes.Equal(got, data) {
		t.Error("the re-uploaded blob reads back different")
	}
}

// metric returns the value of the counter name{result=result} of ts.
func metric(t *testing.T, ts *tiered.Store, name, result string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(ts); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if mf.GetName() == name && l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{result=%q}", name, result)
	return 0
}

// S3 stopped: reads fall back to the local tier, what only the bucket
// held is missing (not an error, not corrupt), synchronous writes are
// refused as UNAVAILABLE with the cause, and all is well when S3 is back.
func TestOutage(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "outage")
	a := frontend(t, srv, "outage", "", tiered.Options{})
	b := frontend(t, srv, "outage", "", tiered.Options{})
	ak, out, ok := resultFor(t, a, "outage")
	ctx := context.Background()

	srv.Stop()
	if got := storetest.MustGet(t, a, ok); !bytes.Equal(got, out) {
		t.Error("A's local read differs with S3 down")
	}
	if _, err := store.ReadBlob(ctx, store.Complete(a), ak, 1<<20); err != nil {
		t.Errorf("A's completeness-checked AC read with S3 down: %v", err)
	}
	_, _, err := b.Get(ctx, ok, 0)
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("B's read of a blob only the bucket holds, S3 down: %v; want not found, naming the outage", err)
	}
	if m, err := b.FindMissing(ctx, []store.Key{ok}); err != nil || len(m) != 1 {
		t.Errorf("B's FindMissing with S3 down: %v, %v; want the local answer (missing)", m, err)
	}
	if _, err := store.ReadBlob(ctx, store.Complete(b), ak, 1<<20); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("B's AC read with S3 down: %v, want NOT_FOUND", err)
	}
	data := []byte("written while S3 is down")
	k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
	err = b.Put(ctx, k, k.Size, bytes.NewReader(data))
	if c := rpcstatus.Code(err); c != codes.Unavailable || !strings.Contains(err.Error(), "local tier only") {
		t.Errorf("sync write with S3 down: %v (%v), want UNAVAILABLE saying it is stored locally only", err, c)
	}
	if h := b.Health(); h.Healthy || h.Cause == "" {
		t.Errorf("B's health with S3 down: %+v", h)
	}

	srv.Restart(t)
	s3test.WaitHealthy(t, b.Health)
	if got := storetest.MustGet(t, b, ok); !bytes.Equal(got, out) {
		t.Error("B's read after recovery differs")
	}
	if _, err := store.ReadBlob(ctx, store.Complete(b), ak, 1<<20); err != nil {
		t.Errorf("B's AC read after recovery: %v", err)
	}
	storetest.MustPut(t, b, k, data)
	if got := storetest.MustGet(t, a, k); !bytes.Equal(got, data) {
		t.Error("A reads B's write after recovery differently")
	}
}

// gate holds the shared store's Puts until opened, so that the upload
// queue fills up.
type gate struct {
	store.Store
	open chan struct{}
}

func (g *gate) Put(ctx context.Context, k store.Key, size int64, r io.Reader) error {
	<-g.open
	return g.Store.Put(ctx, k, size, r)
}

// Asynchronous uploads: the queue is bounded, what does not fit is
// counted as lost, what fits reaches the bucket by Close.
func TestAsyncQueue(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "async")
	d, err := disk.Open(disk.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Store: shared(t, srv, "async", ""), open: make(chan struct{})}
	a := tiered.New(d, g, tiered.Options{Async: true, MaxQueuedUploads: 2, Uploaders: 1})
	const n = 10
	var keys []store.Key
	for i := range n {
		data := storetest.Blob(uint64(i), 1000)
		k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
		storetest.MustPut(t, a, k, data) // never waits for S3
		keys = append(keys, k)
	}
	h := a.Health()
	if h.LostUploads < n-3 || h.LostUploads > n-2 {
		t.Errorf("lost %d uploads of %d with a queue of 2 and one blocked uploader, want %d or %d", h.LostUploads, n, n-3, n-2)
	}
	if v := metric(t, a, "ferrule_shared_uploads_total", "dropped"); v != float64(h.LostUploads) {
		t.Errorf("dropped uploads metric %v, health says %d", v, h.LostUploads)
	}
	close(g.open)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := frontend(t, srv, "async", "", tiered.Options{})
	missing, err := b.FindMissing(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(missing)) != h.LostUploads {
		t.Errorf("%d of %d blobs missing from the bucket after Close, but %d uploads were lost", len(missing), n, h.LostUploads)
	}
}
