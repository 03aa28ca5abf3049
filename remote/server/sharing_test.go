package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/server"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/disk"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

func httpDo(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, got
}

func openDisk(t *testing.T, dir string) *disk.Store {
	t.Helper()
	st, err := disk.Open(disk.Options{Dir: dir, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestHTTPReadsGRPCBlobs: GET /cas/HASH finds blobs uploaded over gRPC,
// on the memory and the disk store, and (disk) blobs uploaded over either
// protocol before a restart.
func TestHTTPReadsGRPCBlobs(t *testing.T) {
	grpcBlob := []byte("uploaded over gRPC")
	httpBlob := bytes.Repeat([]byte("uploaded over HTTP "), 4000) // compressed at rest
	gd, _ := digest.Of(repb.DigestFunction_SHA256, grpcBlob)
	hd, _ := digest.Of(repb.DigestFunction_SHA256, httpBlob)
	upload := func(t *testing.T, r *running) {
		cas := repb.NewContentAddressableStorageClient(r.conn)
		resp, err := cas.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: gd, Data: grpcBlob}}})
		if err != nil || resp.Responses[0].Status.GetCode() != 0 {
			t.Fatalf("gRPC upload: %v %v", resp, err)
		}
		if code, _ := httpDo(t, "PUT", r.http+"/cas/"+hd.Hash, httpBlob); code != 200 {
			t.Fatalf("HTTP PUT: %d", code)
		}
	}
	check := func(t *testing.T, r *running, what string) {
		if code, got := httpDo(t, "GET", r.http+"/cas/"+gd.Hash, nil); code != 200 || !bytes.Equal(got, grpcBlob) {
			t.Errorf("%s: GET of a blob uploaded over gRPC: %d %q", what, code, got)
		}
		if code, got := httpDo(t, "GET", r.http+"/cas/"+hd.Hash, nil); code != 200 || !bytes.Equal(got, httpBlob) {
			t.Errorf("%s: GET of a blob uploaded over HTTP: %d, %d bytes", what, code, len(got))
		}
		if code, _ := httpDo(t, "HEAD", r.http+"/cas/"+gd.Hash, nil); code != 200 {
			t.Errorf("%s: HEAD of a blob uploaded over gRPC: %d", what, code)
		}
	}
	t.Run("memory", func(t *testing.T) {
		r := start(t, server.Config{Store: memory.New(0)}, nil)
		cas := repb.NewContentAddressableStorageClient(r.conn)
		resp, err := cas.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: gd, Data: grpcBlob}}})
		if err != nil || resp.Responses[0].Status.GetCode() != 0 {
			t.Fatalf("gRPC upload: %v %v", resp, err)
		}
		if code, got := httpDo(t, "GET", r.http+"/cas/"+gd.Hash, nil); code != 200 || !bytes.Equal(got, grpcBlob) {
			t.Errorf("GET of a blob uploaded over gRPC: %d %q", code, got)
		}
	})
	t.Run("disk and restart", func(t *testing.T) {
		dir := t.TempDir()
		st := openDisk(t, dir)
		r := start(t, server.Config{Store: st}, nil)
		upload(t, r)
		if t.Failed() {
			return
		}
		check(t, r, "same server")
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		st.Close()

		st = openDisk(t, dir)
		defer st.Close()
		check(t, start(t, server.Config{Store: st}, nil), "after a restart")
	})
}

// TestActionCacheAcrossProtocols: a result written over HTTP is served
// over gRPC and the reverse.
func TestActionCacheAcrossProtocols(t *testing.T) {
	r := start(t, server.Config{Store: memory.New(0)}, nil)
	ctx := context.Background()
	acc := repb.NewActionCacheClient(r.conn)
	stdout := []byte("hello\n")
	sd, _ := digest.Of(repb.DigestFunction_SHA256, stdout)
	if code, _ := httpDo(t, "PUT", r.http+"/cas/"+sd.Hash, stdout); code != 200 {
		t.Fatalf("PUT stdout: %d", code)
	}

	// HTTP -> gRPC.
	res := &repb.ActionResult{ExitCode: 3, StdoutDigest: sd}
	data, _ := proto.Marshal(res)
	action := []byte("an Action written over HTTP")
	ad, _ := digest.Of(repb.DigestFunction_SHA256, action)
	if code, body := httpDo(t, "PUT", r.http+"/ac/"+ad.Hash, data); code != 200 {
		t.Fatalf("PUT /ac: %d %s", code, body)
	}
	got, err := acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: ad})
	if err != nil || got.ExitCode != 3 {
		t.Fatalf("gRPC read of an HTTP-written result: %v %v", got, err)
	}

	// gRPC -> HTTP.
	action2 := []byte("an Action written over gRPC")
	ad2, _ := digest.Of(repb.DigestFunction_SHA256, action2)
	if _, err := acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: ad2, ActionResult: &repb.ActionResult{ExitCode: 4, StdoutDigest: sd}}); err != nil {
		t.Fatal(err)
	}
	code, body := httpDo(t, "GET", r.http+"/ac/"+ad2.Hash, nil)
	back := &repb.ActionResult{}
	if code != 200 || proto.Unmarshal(body, back) != nil || back.ExitCode != 4 {
		t.Fatalf("HTTP read of a gRPC-written result: %d %v", code, back)
	}
	// Both live under one key, without the Action's size.
	missing, err := r.srv.Store().FindMissing(ctx, []store.Key{{Kind: store.AC, Function: repb.DigestFunction_SHA256, Hash: ad2.Hash}})
	if err != nil || len(missing) != 0 {
		t.Fatalf("the result is not under its hash alone: %v %v", missing, err)
	}
}
