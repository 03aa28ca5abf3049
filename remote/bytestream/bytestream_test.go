package bytestream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/bytestream"
	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
)

const sha = repb.DigestFunction_SHA256

type testStore interface {
	store.Store
	store.StatsReporter
}

type env struct {
	c  bspb.ByteStreamClient
	st testStore
}

// newStore makes the store the tests run on: memory, or the disk store
// under TestOnDisk.
var newStore = func(t *testing.T) testStore { return memory.New(0) }

func diskStore(t *testing.T) testStore {
	d, err := disk.Open(disk.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func setup(t *testing.T, o bytestream.Options) env {
	t.Helper()
	return setupWith(t, newStore(t), o)
}

func setupB(b *testing.B) env { return setupWith(b, memory.New(0), bytestream.Options{}) }

func nameB(b *testing.B, data []byte, upload string, compressed bool) (string, *repb.Digest) {
	d, err := digest.Of(sha, data)
	if err != nil {
		b.Fatal(err)
	}
	return resourceName("", sha, d, upload, compressed), d
}

func setupWith(t testing.TB, st testStore, o bytestream.Options) env {
	t.Helper()
	g := grpc.NewServer()
	srv := bytestream.New(st, o)
	srv.Register(g)
	t.Cleanup(srv.Close)
	conn := grpctest.Dial(t, g)
	return env{bspb.NewByteStreamClient(conn), st}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func name(t *testing.T, instance string, fn repb.DigestFunction_Value, data []byte, upload string, compressed bool) (string, *repb.Digest) {
	t.Helper()
	d, err := digest.Of(fn, data)
	if err != nil {
		t.Fatal(err)
	}
	return resourceName(instance, fn, d, upload, compressed), d
}

func resourceName(instance string, fn repb.DigestFunction_Value, d *repb.Digest, upload string, compressed bool) string {
	s := ""
	if instance != "" {
		s = instance + "/"
	}
	if upload != "" {
		s += "uploads/" + upload + "/"
	}
	if compressed {
		s += "compressed-blobs/zstd/"
	} else {
		s += "blobs/"
	}
	if fn == repb.DigestFunction_BLAKE3 {
		s += "blake3/"
	}
	return s + fmt.Sprintf("%s/%d", d.Hash, d.SizeBytes)
}

func key(instance string, fn repb.DigestFunction_Value, d *repb.Digest) store.Key {
	return store.Key{Kind: store.CAS, Instance: instance, Function: fn, Hash: d.Hash, Size: d.SizeBytes}
}

func (e env) has(t *testing.T, k store.Key) bool {
	t.Helper()
	missing, err := e.st.FindMissing(context.Background(), []store.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return len(missing) == 0
}

// write sends data in chunks of chunk bytes, the last with finish_write.
func write(ctx context.Context, c bspb.ByteStreamClient, resource string, offset int64, data []byte, chunk int, finish bool) (*bspb.WriteResponse, error) {
	stream, err := c.Write(ctx)
	if err != nil {
		return nil, err
	}
	first := true
	for len(data) > 0 || first {
		n := min(chunk, len(data))
		req := &bspb.WriteRequest{WriteOffset: offset, Data: data[:n], FinishWrite: finish && n == len(data)}
		if first {
			req.ResourceName = resource
			first = false
		}
		if err := stream.Send(req); err != nil {
			if err == io.EOF {
				break // the server ended the stream early; its answer follows
			}
			return nil, err
		}
		offset += int64(n)
		data = data[n:]
	}
	return stream.CloseAndRecv()
}

func read(ctx context.Context, c bspb.ByteStreamClient, resource string, offset, limit int64) ([]byte, error) {
	stream, err := c.Read(ctx, &bspb.ReadRequest{ResourceName: resource, ReadOffset: offset, ReadLimit: limit})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		buf.Write(r.Data)
	}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	if code != codes.OK && status.Convert(err).Message() == "" {
		t.Fatalf("error %v without a message", err)
	}
}

func unzstd(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := d.DecodeAll(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteRead(t *testing.T) {
	e := setup(t, bytestream.Options{})
	ctx := context.Background()
	data := randBytes(1<<20 + 12345)
	for _, tc := range []struct {
		instance string
		fn       repb.DigestFunction_Value
	}{{"", sha}, {"a/b/c", sha}, {"x", repb.DigestFunction_BLAKE3}} {
		up, d := name(t, tc.instance, tc.fn, data, "11111111-2222-3333-4444-555555555555", false)
		resp, err := write(ctx, e.c, up+"/meta/data", 0, data, 100_000, true)
		if err != nil {
			t.Fatal(err)
		}
		if resp.CommittedSize != d.SizeBytes {
			t.Fatalf("committed %d, want %d", resp.CommittedSize, d.SizeBytes)
		}
		if !e.has(t, key(tc.instance, tc.fn, d)) {
			t.Fatalf("%+v: blob not stored", tc)
		}
		rd, _ := name(t, tc.instance, tc.fn, data, "", false)
		got, err := read(ctx, e.c, rd, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, differing", len(got))
		}
		// Offsets and limits.
		got, err = read(ctx, e.c, rd, 1000, 5000)
		if err != nil || !bytes.Equal(got, data[1000:6000]) {
			t.Fatalf("read at 1000 limit 5000: %d bytes, %v", len(got), err)
		}
		got, err = read(ctx, e.c, rd, int64(len(data)), 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("read at the end: %d bytes, %v", len(got), err)
		}
		got, err = read(ctx, e.c, rd, int64(len(data))-10, 1000)
		if err != nil || !bytes.Equal(got, data[len(data)-10:]) {
			t.Fatalf("read past the end with a limit: %d bytes, %v", len(got), err)
		}
		// Compressed reads: offsets are in uncompressed bytes.
		zrd, _ := name(t, tc.instance, tc.fn, data, "", true)
		got, err = read(ctx, e.c, zrd, 0, 0)
		if err != nil || !bytes.Equal(unzstd(t, got), data) {
			t.Fatalf("compressed read: %v", err)
		}
		got, err = read(ctx, e.c, zrd, 777, 0)
		if err != nil || !bytes.Equal(unzstd(t, got), data[777:]) {
			t.Fatalf("compressed read at 777: %v", err)
		}
		_, err = read(ctx, e.c, zrd, 0, 10)
		wantCode(t, err, codes.InvalidArgument)
	}
	// Other instances and functions do not see the blob.
	rd, _ := name(t, "other", sha, data, "", false)
	_, err := read(ctx, e.c, rd, 0, 0)
	wantCode(t, err, codes.NotFound)
}

func TestReadErrors(t *testing.T) {
	e := setup(t, bytestream.Options{})
	ctx := context.Background()
	data := []byte("0123456789")
	up, _ := name(t, "", sha, data, "u", false)
	if _, err := write(ctx, e.c, up, 0, data, 4, true); err != nil {
		t.Fatal(err)
	}
	rd, _ := name(t, "", sha, data, "", false)
	_, err := read(ctx, e.c, rd, 11, 0)
	wantCode(t, err, codes.OutOfRange)
	_, err = read(ctx, e.c, rd, -1, 0)
	wantCode(t, err, codes.OutOfRange)
	_, err = read(ctx, e.c, rd, 0, -1)
	wantCode(t, err, codes.OutOfRange)
	for _, bad := range []string{"", "blobs/xyz/1", "../../blobs/" + rd[6:], rd + "/extra", "uploads/u/" + rd} {
		_, err = read(ctx, e.c, bad, 0, 0)
		wantCode(t, err, codes.InvalidArgument)
	}
	missing, _ := name(t, "", sha, []byte("nope"), "", false)
	_, err = read(ctx, e.c, missing, 0, 0)
	wantCode(t, err, codes.NotFound)
	// The empty blob is always there, plain and compressed.
	empty, _ := name(t, "", sha, nil, "", false)
	got, err := read(ctx, e.c, empty, 0, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty blob: %d bytes, %v", len(got), err)
	}
	zempty, _ := name(t, "inst", repb.DigestFunction_BLAKE3, nil, "", true)
	got, err = read(ctx, e.c, zempty, 0, 0)
	if err != nil || len(unzstd(t, got)) != 0 {
		t.Fatalf("compressed empty blob: %v", err)
	}
}

func TestCompressedWrite(t *testing.T) {
	e := setup(t, bytestream.Options{})
	ctx := context.Background()
	data := bytes.Repeat([]byte("compressible "), 100_000)
	z := zstdcodec.Compress(data)
	up, d := name(t, "", sha, data, "u", true)
	resp, err := write(ctx, e.c, up, 0, z, 10_000, true)
	if err != nil {
		t.Fatal(err)
	}
	if resp.CommittedSize != int64(len(z)) {
		t.Fatalf("committed %d, want the %d compressed bytes", resp.CommittedSize, len(z))
	}
	if !e.has(t, key("", sha, d)) {
		t.Fatal("not stored")
	}
	// Writing it again ends early: -1 for compressed, size for plain.
	resp, err = write(ctx, e.c, up, 0, z, 10_000, true)
	if err != nil || resp.CommittedSize != -1 {
		t.Fatalf("second compressed write: %v, %v; want committed -1", resp, err)
	}
	plain, _ := name(t, "", sha, data, "v", false)
	resp, err = write(ctx, e.c, plain, 0, data, 10_000, true)
	if err != nil || resp.CommittedSize != d.SizeBytes {
		t.Fatalf("second plain write: %v, %v; want committed %d", resp, err, d.SizeBytes)
	}
	st, err := e.c.QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: plain})
	if err != nil || !st.Complete || st.CommittedSize != d.SizeBytes {
		t.Fatalf("QueryWriteStatus of a stored blob: %v, %v", st, err)
	}
}

func TestWriteRejects(t *testing.T) {
	e := setup(t, bytestream.Options{})
	ctx := context.Background()
	data := randBytes(50_000)
	up, d := name(t, "", sha, data, "u", false)
	k := key("", sha, d)

	// Content that does not match the digest.
	other := append([]byte(nil), data...)
	other[100] ^= 1
	_, err := write(ctx, e.c, up, 0, other, 8000, true)
	wantCode(t, err, codes.InvalidArgument)
	// Too many bytes.
	_, err = write(ctx, e.c, up, 0, append(append([]byte(nil), data...), 'x'), 8000, true)
	wantCode(t, err, codes.InvalidArgument)
	// Too few bytes, finished.
	_, err = write(ctx, e.c, up, 0, data[:40_000], 8000, true)
	wantCode(t, err, codes.InvalidArgument)
	// Too few bytes, stream closed without finish_write.
	_, err = write(ctx, e.c, up, 0, data[:40_000], 8000, false)
	wantCode(t, err, codes.InvalidArgument)
	// Bad names, negative and wrong offsets.
	for _, bad := range []string{"", "uploads/u/blobs/abc/1", "blobs/" + d.Hash + "/50000", "x/../uploads/u/blobs/" + d.Hash + "/50000", "uploads/u/blobs/" + d.Hash + "/-5"} {
		_, err = write(ctx, e.c, bad, 0, data, 8000, true)
		wantCode(t, err, codes.InvalidArgument)
	}
	_, err = write(ctx, e.c, up, -1, data, 8000, true)
	wantCode(t, err, codes.InvalidArgument)
	_, err = write(ctx, e.c, up, 10, data[10:], 8000, true)
	wantCode(t, err, codes.InvalidArgument)
	// A wrong offset in a later message.
	stream, _ := e.c.Write(ctx)
	stream.Send(&bspb.WriteRequest{ResourceName: up, Data: data[:10]})
	stream.Send(&bspb.WriteRequest{WriteOffset: 20, Data: data[20:30]})
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument)
	// A different resource name in a later message.
	up2, _ := name(t, "", sha, []byte("other"), "u", false)
	stream, _ = e.c.Write(ctx)
	stream.Send(&bspb.WriteRequest{ResourceName: up, Data: data[:10]})
	stream.Send(&bspb.WriteRequest{ResourceName: up2, WriteOffset: 10, Data: data[10:20]})
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument)
	// An empty stream.
	stream, _ = e.c.Write(ctx)
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument)

	if e.has(t, k) || e.st.Stats().Entries != 0 {
		t.Fatal("a rejected write stored something")
	}
	if _, err := write(ctx, e.c, up, 0, data, 8000, true); err != nil {
		t.Fatalf("a good write after the bad ones: %v", err)
	}
}

func TestZstdBomb(t *testing.T) {
	e := setup(t, bytestream.Options{})
	ctx := context.Background()
	small := []byte("tiny")
	up, d := name(t, "", sha, small, "u", true)
	bomb := zstdcodec.Compress(make([]byte, 64<<20)) // 64 MiB of zeros claiming to be 4 bytes
	_, err := write(ctx, e.c, up, 0, bomb, 64<<10, true)
	wantCode(t, err, codes.InvalidArgument)
	_, err = write(ctx, e.c, up, 0, []byte("this is not a zstd stream at all"), 64<<10, true)
	wantCode(t, err, codes.InvalidArgument)
	// Valid zstd of the wrong content.
	_, err = write(ctx, e.c, up, 0, zstdcodec.Compress([]byte("tinY")), 64<<10, true)
	wantCode(t, err, codes.InvalidArgument)
	if e.has(t, key("", sha, d)) {
		t.Fatal("stored")
	}
}

// committed returns the committed size of an unfinished upload, or -1 if
// the server does not know it (yet).
func committed(t *testing.T, c bspb.ByteStreamClient, resource string) int64 {
	t.Helper()
	r, err := c.QueryWriteStatus(context.Background(), &bspb.QueryWriteStatusRequest{ResourceName: resource})
	if status.Code(err) == codes.NotFound {
		return -1
	}
	if err != nil {
		t.Fatalf("QueryWriteStatus: %v", err)
	}
	if r.Complete {
		t.Fatal("interrupted upload reported complete")
	}
	return r.CommittedSize
}

func TestDisconnectAndResume(t *testing.T) {
	e := setup(t, bytestream.Options{})
	data := randBytes(300_000)
	up, d := name(t, "", sha, data, "resume-me", false)
	k := key("", sha, d)

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := e.c.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for sent < 150_000 {
		req := &bspb.WriteRequest{WriteOffset: int64(sent), Data: data[sent : sent+10_000]}
		if sent == 0 {
			req.ResourceName = up
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		sent += 10_000
	}
	// Wait until the server has committed something, then drop the
	// connection mid-write.
	for i := 0; ; i++ {
		if committed(t, e.c, up) > 0 {
			break
		}
		if i > 10000 {
			t.Fatal("server never committed any byte")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if e.has(t, k) {
		t.Fatal("partial blob visible after disconnect")
	}
	// Resume from the committed offset. The dead stream may still hold the
	// upload for a moment (ABORTED) and commit more before it notices the
	// disconnect (then our offset is stale: INVALID_ARGUMENT); a client
	// asks QueryWriteStatus again and retries.
	for i := 0; ; i++ {
		off := committed(t, e.c, up)
		if off <= 0 || off > int64(sent) {
			t.Fatalf("committed %d after sending %d", off, sent)
		}
		resp, err := write(context.Background(), e.c, up, off, data[off:], 50_000, true)
		if c := status.Code(err); (c == codes.Aborted || c == codes.InvalidArgument) && i < 10000 {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("resume at %d: %v", off, err)
		}
		if resp.CommittedSize != d.SizeBytes {
			t.Fatalf("committed %d", resp.CommittedSize)
		}
		break
	}
	rd, _ := name(t, "", sha, data, "", false)
	got, err := read(context.Background(), e.c, rd, 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after resume: %v", err)
	}
}

func TestAbandonedUploadExpires(t *testing.T) {
	e := setup(t, bytestream.Options{IdleTimeout: time.Millisecond})
	data := randBytes(100_000)
	up, d := name(t, "", sha, data, "gone", false)
	ctx, cancel := context.WithCancel(context.Background())
	stream, _ := e.c.Write(ctx)
	stream.Send(&bspb.WriteRequest{ResourceName: up, Data: data[:50_000]})
	for i := 0; committed(t, e.c, up) <= 0; i++ {
		if i > 10000 {
			t.Fatal("nothing committed")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	// Wait for the upload to be dropped.
	for i := 0; ; i++ {
		_, err := e.c.QueryWriteStatus(context.Background(), &bspb.QueryWriteStatusRequest{ResourceName: up})
		if status.Code(err) == codes.NotFound {
			break
		}
		if i > 10000 {
			t.Fatalf("abandoned upload never dropped: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if e.has(t, key("", sha, d)) {
		t.Fatal("abandoned upload stored")
	}
	_, err := write(context.Background(), e.c, up, 50_000, data[50_000:], 10_000, true)
	wantCode(t, err, codes.InvalidArgument)
	if _, err := write(context.Background(), e.c, up, 0, data, 10_000, true); err != nil {
		t.Fatalf("fresh upload after expiry: %v", err)
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	e := setup(t, bytestream.Options{})
	data := randBytes(2 << 20)
	rd, d := name(t, "", sha, data, "", false)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			up, _ := name(t, "", sha, data, fmt.Sprint("writer-", i), i%2 == 1)
			payload := data
			if i%2 == 1 {
				payload = zstdcodec.Compress(data)
			}
			resp, err := write(context.Background(), e.c, up, 0, payload, 64<<10, true)
			if err != nil {
				errs <- fmt.Errorf("writer %d: %w", i, err)
				return
			}
			if i%2 == 0 && resp.CommittedSize != d.SizeBytes || i%2 == 1 && resp.CommittedSize != -1 && resp.CommittedSize != int64(len(payload)) {
				errs <- fmt.Errorf("writer %d: committed %d", i, resp.CommittedSize)
			}
		}()
	}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				got, err := read(context.Background(), e.c, rd, 0, 0)
				if status.Code(err) == codes.NotFound {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("reader %d: %w", i, err)
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("reader %d saw %d bytes that are not the blob", i, len(got))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !e.has(t, key("", sha, d)) {
		t.Fatal("blob not stored")
	}
}

func TestSameUploadTwoStreams(t *testing.T) {
	e := setup(t, bytestream.Options{})
	data := randBytes(100_000)
	up, _ := name(t, "", sha, data, "dup", false)
	s1, _ := e.c.Write(context.Background())
	s1.Send(&bspb.WriteRequest{ResourceName: up, Data: data[:1000]})
	for i := 0; committed(t, e.c, up) <= 0; i++ {
		if i > 10000 {
			t.Fatal("nothing committed")
		}
		time.Sleep(time.Millisecond)
	}
	_, err := write(context.Background(), e.c, up, 1000, data[1000:], 10_000, true)
	wantCode(t, err, codes.Aborted)
	s1.Send(&bspb.WriteRequest{WriteOffset: 1000, Data: data[1000:], FinishWrite: true})
	if _, err := s1.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
}

func TestHugeDeclaredSize(t *testing.T) {
	e := setup(t, bytestream.Options{})
	ctx := context.Background()
	h := strings.Repeat("ab", 32)
	for _, res := range []string{
		"uploads/u/blobs/" + h + "/9223372036854775807",
		"uploads/u/compressed-blobs/zstd/" + h + "/9223372036854775807",
	} {
		payload := []byte("some bytes")
		if strings.Contains(res, "zstd") {
			payload = zstdcodec.Compress(payload)
		}
		_, err := write(ctx, e.c, res, 0, payload, 100, true)
		if status.Code(err) != codes.InvalidArgument && status.Code(err) != codes.ResourceExhausted {
			t.Errorf("%s: %v", res, err)
		}
	}
	_, err := read(ctx, e.c, "blobs/"+h+"/9223372036854775807", 9223372036854775807, 0)
	wantCode(t, err, codes.NotFound)
}

// TestOnDisk runs the tests that matter most for atomicity on the disk
// store as well.
func TestOnDisk(t *testing.T) {
	saved := newStore
	newStore = diskStore
	defer func() { newStore = saved }()
	t.Run("WriteRejects", TestWriteRejects)
	t.Run("ZstdBomb", TestZstdBomb)
	t.Run("DisconnectAndResume", TestDisconnectAndResume)
	t.Run("ConcurrentWritersAndReaders", TestConcurrentWritersAndReaders)
	t.Run("WriteRead", TestWriteRead)
}

func TestParkedUploadsBounded(t *testing.T) {
	e := setup(t, bytestream.Options{MaxParked: 1})
	var names []string
	for i := range 2 {
		data := randBytes(10_000)
		up, _ := name(t, "", sha, data, fmt.Sprint("p", i), false)
		names = append(names, up)
		ctx, cancel := context.WithCancel(context.Background())
		stream, _ := e.c.Write(ctx)
		stream.Send(&bspb.WriteRequest{ResourceName: up, Data: data[:5000]})
		for j := 0; committed(t, e.c, up) <= 0; j++ {
			if j > 10000 {
				t.Fatal("nothing committed")
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		// Wait until the server has noticed the disconnect: a resume
		// attempt is no longer ABORTED.
		for j := 0; ; j++ {
			_, err := write(context.Background(), e.c, up, 1, nil, 1, false)
			if status.Code(err) != codes.Aborted {
				break
			}
			if j > 10000 {
				t.Fatal("upload never parked")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if c := committed(t, e.c, names[0]); c != 5000 {
		t.Errorf("first interrupted upload: committed %d, want it kept at 5000", c)
	}
	if c := committed(t, e.c, names[1]); c != -1 {
		t.Errorf("second interrupted upload kept (committed %d) beyond MaxParked 1", c)
	}
}

// TestUploadLimit: a Write stream past max_open_uploads is refused with
// RESOURCE_EXHAUSTED before its first message is read; an interrupted
// upload kept for resumption does not hold an admission, so it can be
// resumed at the cap.
func TestUploadLimit(t *testing.T) {
	lim, err := clientlimit.New(clientlimit.Uploads, clientlimit.Limits{MaxOpen: 1, Wait: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := setup(t, bytestream.Options{Uploads: lim})
	data := randBytes(100_000)
	up, d := name(t, "", sha, data, "held", false)

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := e.c.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bspb.WriteRequest{ResourceName: up, Data: data[:10_000]}); err != nil {
		t.Fatal(err)
	}
	for i := 0; committed(t, e.c, up) == 0; i++ {
		if i > 10000 {
			t.Fatal("server never committed any byte")
		}
		time.Sleep(time.Millisecond)
	}
	other := randBytes(10)
	on, _ := name(t, "", sha, other, "other", false)
	_, err = write(context.Background(), e.c, on, 0, other, 10, true)
	wantCode(t, err, codes.ResourceExhausted)
	if !strings.Contains(status.Convert(err).Message(), clientlimit.Uploads.LimitOpen) {
		t.Errorf("refusal does not name the limit: %v", err)
	}

	cancel() // the upload is parked and its admission given back
	for i := 0; ; i++ {
		off := committed(t, e.c, up)
		resp, err := write(context.Background(), e.c, up, off, data[off:], 50_000, true)
		if c := status.Code(err); (c == codes.Aborted || c == codes.InvalidArgument || c == codes.ResourceExhausted) && i < 10000 {
			time.Sleep(time.Millisecond) // the cut stream has not ended yet
			continue
		}
		if err != nil || resp.CommittedSize != d.SizeBytes {
			t.Fatalf("resume at the cap: %v %v", resp, err)
		}
		break
	}
	// The handler gives its admission back as it returns, just after its
	// answer.
	for i := 0; lim.Open() != 0; i++ {
		if i > 10000 {
			t.Fatalf("%d uploads open after the last one finished", lim.Open())
		}
		time.Sleep(time.Millisecond)
	}
}
