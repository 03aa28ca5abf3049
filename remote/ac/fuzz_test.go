package ac_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store/memory"
)

// FuzzUpdateActionResult: any UpdateActionResultRequest (with the action
// digest made valid when fix is set, so the result itself is exercised) is
// an error or stored; a stored result passes ac.Validate, and
// GetActionResult then serves a result that passes it too, or NOT_FOUND.
// Run: go test -run '^$' -fuzz '^FuzzUpdateActionResult$' -fuzztime 10s ./remote/ac/
func FuzzUpdateActionResult(f *testing.F) {
	const sha = repb.DigestFunction_SHA256
	empty, _ := digest.Of(sha, nil)
	good, _ := proto.Marshal(&repb.UpdateActionResultRequest{ActionDigest: empty, ActionResult: &repb.ActionResult{
		OutputFiles: []*repb.OutputFile{{Path: "out/a", Digest: empty, Contents: nil}},
		StdoutRaw:   []byte("hi\n"),
	}})
	f.Add(good, true)
	bad, _ := proto.Marshal(&repb.UpdateActionResultRequest{ActionResult: &repb.ActionResult{
		OutputDirectories: []*repb.OutputDirectory{{Path: "../x"}},
		OutputSymlinks:    []*repb.OutputSymlink{{Path: "l", Target: "/etc/passwd"}},
	}})
	f.Add(bad, true)
	f.Add([]byte{0x12, 0x02, 0x10, 0x01}, false)
	srv := ac.New(memory.New(64<<20), ac.Options{MaxResultBytes: 1 << 20, MaxInlineBytes: 1 << 20})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, reqBytes []byte, fix bool) {
		req := &repb.UpdateActionResultRequest{}
		if proto.Unmarshal(reqBytes, req) != nil {
			return
		}
		if fix {
			req.InstanceName, req.DigestFunction = "", sha
			req.ActionDigest, _ = digest.Of(sha, reqBytes)
		}
		stored, err := srv.UpdateActionResult(ctx, req)
		if err != nil {
			return
		}
		if err := ac.Validate(sha, stored); err != nil && req.DigestFunction == sha {
			t.Fatalf("stored a result Validate refuses: %v", err)
		}
		got, err := srv.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: req.InstanceName, DigestFunction: req.DigestFunction,
			ActionDigest: req.ActionDigest, InlineStdout: true, InlineStderr: true, InlineOutputFiles: []string{"out/a"}})
		if err != nil {
			return // NOT_FOUND while a referenced blob is missing
		}
		fn, _ := digest.Resolve(req.DigestFunction, req.ActionDigest.GetHash())
		if err := ac.Validate(fn, got); err != nil {
			t.Fatalf("served a result Validate refuses: %v", err)
		}
	})
}
