package clientlimit_test

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/clientlimit"
)

func TestLimits(t *testing.T) {
	ctx := context.Background()
	x, err := clientlimit.New(clientlimit.Uploads, clientlimit.Limits{MaxOpen: 3, MaxPerClient: 2, Wait: -1}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a1, err := x.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Acquire(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = x.Acquire(ctx, "a")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), clientlimit.Uploads.LimitPerClient) {
		t.Fatalf("third upload of one client: %v", err)
	}
	if _, err := x.Acquire(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	_, err = x.Acquire(ctx, "c")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), clientlimit.Uploads.LimitOpen) {
		t.Fatalf("fourth upload: %v", err)
	}
	a1()
	a1() // a second release changes nothing
	if x.Open() != 2 {
		t.Fatalf("%d open after a release, want 2", x.Open())
	}
	if _, err := x.Acquire(ctx, "c"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if x.Admitted() != 4 || x.Refused(clientlimit.Uploads.LimitOpen) != 1 || x.Refused(clientlimit.Uploads.LimitPerClient) != 1 {
		t.Errorf("counts: %v admitted, %v/%v refused", x.Admitted(), x.Refused(clientlimit.Uploads.LimitOpen), x.Refused(clientlimit.Uploads.LimitPerClient))
	}
}

func TestClients(t *testing.T) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4567}})
	if c := clientlimit.GRPCClient(ctx); c != "10.1.2.3" {
		t.Errorf("gRPC client %q, want the peer's IP", c)
	}
	if c := clientlimit.GRPCClient(clientlimit.WithPrincipal(ctx, "ci")); c != "principal:ci" {
		t.Errorf("gRPC client with a principal: %q", c)
	}
	r := httptest.NewRequest("PUT", "/cas/x", nil)
	r.RemoteAddr = "[::1]:999"
	if c := clientlimit.HTTPClient(r); c != "::1" {
		t.Errorf("HTTP client %q", c)
	}
}

// A request past a cap waits for a slot: it is admitted when one frees,
// refused when none frees within the wait, and ends with its context.
func TestWait(t *testing.T) {
	ctx := context.Background()
	x, err := clientlimit.New(clientlimit.Uploads, clientlimit.Limits{MaxOpen: 10, MaxPerClient: 1, Wait: time.Hour}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	first, err := x.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	admitted := make(chan error)
	go func() {
		release, err := x.Acquire(ctx, "a")
		if err == nil {
			release()
		}
		admitted <- err
	}()
	for x.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	first()
	if err := <-admitted; err != nil {
		t.Fatalf("a waiting request after the release: %v", err)
	}

	held, _ := x.Acquire(ctx, "a")
	defer held()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := x.Acquire(cctx, "a"); status.Code(err) != codes.Canceled {
		t.Errorf("a cancelled wait: %v, want CANCELLED", err)
	}
	short, err := clientlimit.New(clientlimit.Uploads, clientlimit.Limits{MaxOpen: 10, MaxPerClient: 1, Wait: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := short.Acquire(ctx, "a")
	defer h()
	if _, err := short.Acquire(ctx, "a"); status.Code(err) != codes.ResourceExhausted || short.Refused(clientlimit.Uploads.LimitPerClient) != 1 {
		t.Errorf("no slot within the wait: %v", err)
	}
	if x.Waiting() != 0 || short.Waiting() != 0 {
		t.Errorf("%d and %d still waiting", x.Waiting(), short.Waiting())
	}
}
