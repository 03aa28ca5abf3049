package auth

import (
	"context"
	"crypto/x509"
	"path"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	refv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	refv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/workerpb"
)

// Methods is the permission each gRPC method needs, by full method name.
// A method missing here is refused to everyone.
var Methods = map[string]Perm{
	repb.Capabilities_GetCapabilities_FullMethodName: Read,

	repb.ContentAddressableStorage_FindMissingBlobs_FullMethodName:     Read,
	repb.ContentAddressableStorage_BatchReadBlobs_FullMethodName:       Read,
	repb.ContentAddressableStorage_GetTree_FullMethodName:              Read,
	repb.ContentAddressableStorage_SplitBlob_FullMethodName:            Read,
	repb.ContentAddressableStorage_GetChunkMapping_FullMethodName:      Read,
	repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName:     WriteCAS,
	repb.ContentAddressableStorage_SpliceBlob_FullMethodName:           WriteCAS,
	repb.ContentAddressableStorage_RegisterChunkMapping_FullMethodName: WriteCAS,

	"/google.bytestream.ByteStream/Read":             Read,
	"/google.bytestream.ByteStream/Write":            WriteCAS,
	"/google.bytestream.ByteStream/QueryWriteStatus": WriteCAS,

	repb.ActionCache_GetActionResult_FullMethodName:    Read,
	repb.ActionCache_UpdateActionResult_FullMethodName: WriteAC,

	repb.Execution_Execute_FullMethodName:       Execute,
	repb.Execution_WaitExecution_FullMethodName: Execute,

	workerpb.Scheduler_Session_FullMethodName: Work,

	"/google.devtools.build.v1.PublishBuildEvent/PublishLifecycleEvent":       Publish,
	"/google.devtools.build.v1.PublishBuildEvent/PublishBuildToolEventStream": Publish,

	healthpb.Health_Check_FullMethodName: None,
	healthpb.Health_Watch_FullMethodName: None,
	healthpb.Health_List_FullMethodName:  None,

	refv1.ServerReflection_ServerReflectionInfo_FullMethodName:      Read,
	refv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: Read,
}

// UnaryInterceptor refuses unary calls their caller may not make.
func (p *Policy) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := p.checkGRPC(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// StreamInterceptor refuses streams their caller may not open.
func (p *Policy) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := p.checkGRPC(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if ctx != ss.Context() {
		ss = &principalStream{ServerStream: ss, ctx: ctx}
	}
	return h(srv, ss)
}

// principalStream carries the context that names the caller.
type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// permKey is the context key of what the caller may do.
type permKey struct{}

// withPrincipal records in ctx what the caller may do (Holds) and names an
// authenticated caller, so that per-client limits count it rather than its
// address.
func (p *Policy) withPrincipal(ctx context.Context, pr *Principal) context.Context {
	perm := pr.Perm
	if p.cfg.ReadOnly {
		perm &^= writes
	}
	if perm != All { // a context without the key holds everything
		ctx = context.WithValue(ctx, permKey{}, perm)
	}
	if pr.Via == "anonymous" || pr.Via == "open" || pr.Name == "" {
		return ctx
	}
	return clientlimit.WithPrincipal(ctx, pr.Name)
}

// Holds reports whether the caller of a request that passed the policy may
// do what needs perm (with --read_only no one holds a write). A context
// the policy did not see holds everything: the check is the policy's, and
// without one nothing is refused.
func Holds(ctx context.Context, perm Perm) bool {
	have, ok := ctx.Value(permKey{}).(Perm)
	return !ok || have&perm == perm
}

// checkGRPC returns ctx naming the caller, or the refusal.
func (p *Policy) checkGRPC(ctx context.Context, method string) (context.Context, error) {
	need, known := Methods[method]
	label := path.Base(method)
	if !known {
		label = "unknown"
	}
	if known && need == None {
		return ctx, nil
	}
	var header string
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		header = v[0]
	}
	var cert *x509.Certificate
	remote := ""
	if pe, ok := peer.FromContext(ctx); ok {
		if pe.Addr != nil {
			remote = pe.Addr.String()
		}
		if ti, ok := pe.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			cert = ti.State.VerifiedChains[0][0]
		}
	}
	pr, r := p.authenticate(header, cert)
	if r == nil && !known {
		r = &refusal{code: codes.PermissionDenied, reason: "permission_denied", msg: method + " is not in the server's permission table"}
	}
	if r == nil {
		r = p.authorize(pr, need, method)
	}
	if r == nil {
		return p.withPrincipal(ctx, pr), nil
	}
	p.refuse(r, pr, label, remote)
	return ctx, status.Error(r.code, r.msg)
}
