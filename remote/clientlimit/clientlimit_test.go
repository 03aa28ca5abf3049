package clientlimit_test

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/clientlimit"
)

func TestLimits(t *testing.T) {
	x, err := clientlimit.New(clientlimit.Uploads, clientlimit.Limits{MaxOpen: 3, MaxPerClient: 2}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a1, err := x.Acquire("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Acquire("a"); err != nil {
		t.Fatal(err)
	}
	_, err = x.Acquire("a")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), clientlimit.Uploads.LimitPerClient) {
		t.Fatalf("third upload of one client: %v", err)
	}
	if _, err := x.Acquire("b"); err != nil {
		t.Fatal(err)
	}
	_, err = x.Acquire("c")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), clientlimit.Uploads.LimitOpen) {
		t.Fatalf("fourth upload: %v", err)
	}
	a1()
	a1() // a second release changes nothing
	if x.Open() != 2 {
		t.Fatalf("%d open after a release, want 2", x.Open())
	}
	if _, err := x.Acquire("c"); err != nil {
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
