package memory

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/digest"
	"google.golang.org/grpc/codes"

	"github.com/ferrule-build/ferrule/remote/rpcstatus"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return New(0) })
}

func TestBounded(t *testing.T) {
	storetest.RunBounded(t, func(t *testing.T, maxBytes int64) store.Store { return New(maxBytes) })
}

// stallingReader yields its bytes and then fails, as an upload that stops.
type stallingReader struct{ left int }

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, errors.New("client went away")
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

// A Put that declares 64 MiB and sends 1 KiB allocates about 1 KiB, not
// the declared size: stalled uploads cost what they sent.
func TestPutAllocatesWhatArrives(t *testing.T) {
	s := New(0)
	key := store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: strings.Repeat("ab", 32), Size: 64 << 20}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := s.Put(context.Background(), key, key.Size, &stallingReader{left: 1 << 10})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a Put whose reader fails succeeded")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Fatalf("a stalled 1 KiB upload declaring 64 MiB allocated %d bytes", got)
	}
}

// A value grown piece by piece is stored whole, without spare capacity.
func TestPutGrowsToTheDeclaredSize(t *testing.T) {
	s := New(0)
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	d, err := digest.Of(repb.DigestFunction_SHA256, data)
	if err != nil {
		t.Fatal(err)
	}
	key := store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: d.Hash, Size: d.SizeBytes}
	if err := s.Put(context.Background(), key, key.Size, iotest.OneByteReader(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Get(context.Background(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(data))
	}
	s.mu.Lock()
	c := cap(s.entries[key].Value.(*entry).data)
	s.mu.Unlock()
	if c != len(data) {
		t.Errorf("stored with capacity %d for %d bytes", c, len(data))
	}
}

// TestSize: a CAS blob's size is found from its hash alone until the blob
// is evicted.
func TestSize(t *testing.T) {
	s := New(10)
	ctx := context.Background()
	a, b := []byte("aaaaaa"), []byte("bbbbbb")
	da, _ := digest.Of(repb.DigestFunction_SHA256, a)
	db, _ := digest.Of(repb.DigestFunction_SHA256, b)
	ka := store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: da.Hash, Size: da.SizeBytes}
	kb := store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: db.Hash, Size: db.SizeBytes}
	if err := s.Put(ctx, ka, ka.Size, bytes.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size(ctx, store.Key{Kind: store.CAS, Function: ka.Function, Hash: ka.Hash}); err != nil || n != 6 {
		t.Fatalf("Size: %d %v", n, err)
	}
	if err := s.Put(ctx, kb, kb.Size, bytes.NewReader(b)); err != nil { // evicts a
		t.Fatal(err)
	}
	if _, err := s.Size(ctx, ka); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Size of an evicted blob: %v", err)
	}
}

// blockingReader yields left bytes, then closes waiting (the bytes have
// been stored: Put asks for more) and blocks until release is closed and
// fails: an upload in progress.
type blockingReader struct {
	left    int
	waiting chan struct{}
	release chan struct{}
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		close(r.waiting)
		<-r.release
		return 0, errors.New("client went away")
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

// Uploads in progress count against the bound: they evict stored entries
// to make room, and one that cannot fit beside the others is refused with
// an error naming the bound (RESOURCE_EXHAUSTED over gRPC).
func TestInProgressUploadsCountAgainstTheBound(t *testing.T) {
	const max = 1 << 20
	s := New(max)
	ctx := context.Background()
	key := func(i int, size int64) store.Key {
		h := make([]byte, 32)
		h[0], h[1] = byte(i), byte(i>>8)
		return store.Key{Kind: store.CAS, Function: repb.DigestFunction_SHA256, Hash: hex.EncodeToString(h), Size: size}
	}
	// Stored entries fill most of the bound.
	for i := range 9 {
		if err := s.Put(ctx, key(i, 100<<10), 100<<10, bytes.NewReader(make([]byte, 100<<10))); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	errs := make(chan error, 3)
	var arrived [3]chan struct{}
	for i := range 3 {
		arrived[i] = make(chan struct{})
	}
	// Three uploads of 500 KiB stall after 400 KiB: each holds 512 KiB.
	for i := range 3 {
		r := &blockingReader{left: 400 << 10, waiting: arrived[i], release: release}
		go func() { errs <- s.Put(ctx, key(100+i, 500<<10), 500<<10, r) }()
		select {
		case <-arrived[i]:
		case err := <-errs:
			if i < 2 {
				t.Fatalf("upload %d refused: %v", i, err)
			}
			if rpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "1048576") {
				t.Fatalf("upload %d: %v, want RESOURCE_EXHAUSTED naming the bound", i, err)
			}
			continue
		}
		if i == 2 {
			t.Fatal("a third upload in progress was admitted past the bound")
		}
	}
	if st := s.Stats(); st.Bytes+2*(512<<10) > max {
		t.Errorf("stored %d bytes beside 1 MiB of uploads in progress; bound %d", st.Bytes, max)
	}
	close(release)
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a failed upload succeeded")
		}
	}
	// Their room is free again.
	if err := s.Put(ctx, key(200, 900<<10), 900<<10, bytes.NewReader(make([]byte, 900<<10))); err != nil {
		t.Errorf("Put after the uploads ended: %v", err)
	}
}
