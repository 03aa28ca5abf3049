package capabilities_test

import (
	"context"
	"slices"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/capabilities"
	"github.com/ferrule-build/ferrule/remote/grpctest"
)

func TestCapabilities(t *testing.T) {
	srv := capabilities.New(capabilities.Options{MaxBatchBytes: 1234, UpdateEnabled: true})
	g := grpc.NewServer()
	srv.Register(g)
	conn := grpctest.Dial(t, g)
	c := repb.NewCapabilitiesClient(conn)
	ctx := context.Background()

	caps, err := c.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: "a/b"})
	if err != nil {
		t.Fatal(err)
	}
	cc := caps.CacheCapabilities
	if !slices.Equal(cc.DigestFunctions, []repb.DigestFunction_Value{repb.DigestFunction_SHA256, repb.DigestFunction_BLAKE3}) {
		t.Errorf("digest functions %v", cc.DigestFunctions)
	}
	if caps.LowApiVersion.Major != 2 || caps.LowApiVersion.Minor != 0 || caps.LowApiVersion.Patch != 0 {
		t.Errorf("low api %v, want 2.0", caps.LowApiVersion)
	}
	if caps.HighApiVersion.Major != 2 || caps.HighApiVersion.Minor < caps.LowApiVersion.Minor || caps.HighApiVersion.Minor >= 12 {
		t.Errorf("high api %v: must be 2.x below 2.12 (no chunking RPCs)", caps.HighApiVersion)
	}
	if cc.MaxBatchTotalSizeBytes != 1234 {
		t.Errorf("max batch %d", cc.MaxBatchTotalSizeBytes)
	}
	if !cc.ActionCacheUpdateCapabilities.UpdateEnabled {
		t.Error("updates not enabled")
	}
	if !slices.Contains(cc.SupportedCompressors, repb.Compressor_ZSTD) || !slices.Contains(cc.SupportedBatchUpdateCompressors, repb.Compressor_ZSTD) {
		t.Errorf("zstd not advertised: %v %v", cc.SupportedCompressors, cc.SupportedBatchUpdateCompressors)
	}
	if cc.CachePriorityCapabilities == nil {
		t.Error("no cache priority capabilities")
	}
	if caps.ExecutionCapabilities != nil {
		t.Errorf("execution advertised without an execution service: %v", caps.ExecutionCapabilities)
	}

	srv.SetExecution(&repb.ExecutionCapabilities{DigestFunction: repb.DigestFunction_SHA256, ExecEnabled: true})
	caps, err = c.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !caps.GetExecutionCapabilities().GetExecEnabled() {
		t.Errorf("execution capabilities not advertised after SetExecution: %v", caps.ExecutionCapabilities)
	}

	_, err = c.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: "../x"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad instance: %v", err)
	}
}
