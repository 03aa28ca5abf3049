package cas_test

import (
	"context"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/cas"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// BenchmarkFindMissingBlobs measures the service's own cost for a call of
// 1000 digests, half present (no gRPC in between).
func BenchmarkFindMissingBlobs(b *testing.B) {
	st := memory.New(0)
	srv := cas.New(st, cas.Options{})
	ctx := context.Background()
	req := &repb.FindMissingBlobsRequest{}
	for i := range 1000 {
		data := []byte(fmt.Sprint("blob ", i))
		d := dgB(b, data)
		if i%2 == 0 {
			if _, err := srv.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}}); err != nil {
				b.Fatal(err)
			}
		}
		req.BlobDigests = append(req.BlobDigests, d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := srv.FindMissingBlobs(ctx, req)
		if err != nil || len(resp.MissingBlobDigests) != 500 {
			b.Fatal(err, len(resp.MissingBlobDigests))
		}
	}
}

// BenchmarkBatchReadBlobs reads 100 blobs of 4 KiB a call.
func BenchmarkBatchReadBlobs(b *testing.B) {
	st := memory.New(0)
	srv := cas.New(st, cas.Options{})
	ctx := context.Background()
	req := &repb.BatchReadBlobsRequest{}
	for i := range 100 {
		data := make([]byte, 4096)
		copy(data, fmt.Sprint("blob ", i))
		d := dgB(b, data)
		if _, err := srv.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}}); err != nil {
			b.Fatal(err)
		}
		req.Digests = append(req.Digests, d)
	}
	b.ReportAllocs()
	b.SetBytes(100 * 4096)
	for b.Loop() {
		if _, err := srv.BatchReadBlobs(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func dgB(b *testing.B, data []byte) *repb.Digest {
	d, err := digestOf(data)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func digestOf(data []byte) (*repb.Digest, error) { return digest.Of(repb.DigestFunction_SHA256, data) }
