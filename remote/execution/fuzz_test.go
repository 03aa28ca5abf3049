package execution

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// FuzzWorkerResult: whatever a worker reports for a lease decodes, without
// a panic, to a result or an error, and the result check complete applies
// (ac.Validate) does not panic on it either.
// Run: go test -run '^$' -fuzz FuzzWorkerResult -fuzztime 10s ./remote/execution/
func FuzzWorkerResult(f *testing.F) {
	good, _ := proto.Marshal(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}}})
	bad, _ := proto.Marshal(&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out"}}})
	f.Add(good, []byte(nil))
	f.Add(bad, []byte(nil))
	f.Add([]byte{0xff, 0x01}, []byte{0x08, 0x03})
	f.Fuzz(func(t *testing.T, result, st []byte) {
		out := decodeOutcome(&workerpb.LeaseResult{LeaseId: "l", ActionResult: result, Status: st})
		if out.Result == nil && (out.Status == nil || codes.Code(out.Status.Code) == codes.OK) {
			t.Fatalf("neither a result nor an error from %x / %x", result, st)
		}
		if out.Result != nil {
			ac.Validate(repb.DigestFunction_SHA256, out.Result)
		}
	})
}
