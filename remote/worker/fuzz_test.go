package worker

import (
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"google.golang.org/protobuf/proto"
)

// FuzzLease: whatever a scheduler leases decodes to a Task or an
// INVALID_ARGUMENT status; the checks Run makes before running anything
// (the action's limits from its platform, the working directory and the
// output paths) do not panic, and every path they accept stays below the
// input root.
// Run: go test -run '^$' -fuzz '^FuzzLease$' -fuzztime 10s ./remote/worker/
func FuzzLease(f *testing.F) {
	cmd, _ := proto.Marshal(&repb.Command{Arguments: []string{"/bin/true"}, WorkingDirectory: "pkg",
		OutputFiles: []string{"out/a", "../b"}, OutputPaths: []string{"c/./d", "/etc/passwd"}})
	action, _ := proto.Marshal(&repb.Action{Platform: &repb.Platform{Properties: []*repb.Platform_Property{
		{Name: PropMaxOutput, Value: "100"}, {Name: PropMaxMemory, Value: "-1"}}}})
	lease, _ := proto.Marshal(&workerpb.Lease{LeaseId: "l", Action: action, Command: cmd, TimeoutMs: 1000})
	f.Add(lease)
	cmd, _ = proto.Marshal(&repb.Command{WorkingDirectory: "a/../../x", OutputDirectories: []string{"", ".", "a\x00b"}})
	lease, _ = proto.Marshal(&workerpb.Lease{Command: cmd, TimeoutMs: -5, DigestFunction: 99})
	f.Add(lease)
	f.Add([]byte{0x1a, 0x03, 0x0a, 0x01, 0xff})
	const root = "/exec/1/root"
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &workerpb.Lease{}
		if proto.Unmarshal(data, l) != nil {
			return
		}
		task, st := taskOf(l)
		if st != nil {
			return
		}
		if _, err := (ActionLimits{}).ForAction(platformOf(task)); err != nil {
			return
		}
		below := func(what, rel string) {
			p, err := subPath(root, rel)
			if err != nil {
				return
			}
			if r, err := filepath.Rel(root, p); err != nil || r == ".." || strings.HasPrefix(r, "../") {
				t.Fatalf("%s %q accepted as %s, outside the input root", what, rel, p)
			}
		}
		below("working directory", task.Command.WorkingDirectory)
		for _, p := range outputPaths(task.Command) {
			below("output", p)
			below("output below the working directory", task.Command.WorkingDirectory+"/"+p)
		}
	})
}
