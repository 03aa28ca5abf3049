package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/grpctest"
)

type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// A method missing from Methods is refused to everyone, even on a server
// without credentials configured.
func TestUnknownMethodRefused(t *testing.T) {
	for _, cfg := range []Config{{}, {TokenFile: write(t, "tokens", "ci writer,executor,worker 0123456789abcdef\n")}} {
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer(grpc.ChainUnaryInterceptor(p.UnaryInterceptor), grpc.ChainStreamInterceptor(p.StreamInterceptor))
		testpb.RegisterTestServiceServer(g, testService{})
		conn := grpctest.Dial(t, g)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer 0123456789abcdef")
		_, err = testpb.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("open=%v: a method not in the table: %v", p.Open(), err)
		}
	}
}

// An authenticated caller reaches the service named in its context, so
// per-client limits count the principal, not its address; an anonymous
// one is counted by address.
func TestPrincipalInContext(t *testing.T) {
	p, err := New(Config{TokenFile: write(t, "tokens", "ci reader 0123456789abcdef\n"), AllowUnauthenticatedReads: true})
	if err != nil {
		t.Fatal(err)
	}
	method := "/build.bazel.remote.execution.v2.ActionCache/GetActionResult"
	var got string
	h := func(ctx context.Context, _ any) (any, error) { got = clientlimit.GRPCClient(ctx); return nil, nil }
	for header, want := range map[string]string{"Bearer 0123456789abcdef": "principal:ci", "": "unknown"} {
		ctx := context.Background()
		if header != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", header))
		}
		if _, err := p.UnaryInterceptor(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, h); err != nil {
			t.Fatalf("%q: %v", header, err)
		}
		if got != want {
			t.Errorf("%q: the service sees client %q, want %q", header, got, want)
		}
	}
}
