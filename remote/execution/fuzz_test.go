package execution

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/digest"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/worker"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
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

// FuzzExecute: admission of any ExecuteRequest whose Action (fuzzed, its
// command and input root digests set to stored blobs), Command and input
// root (a fuzzed Directory whose subdirectories all point at a second
// fuzzed Directory: a DAG that doubles per level) are in the CAS ends in an
// RPC error or an operation, without a panic; a finished operation carries
// a response with a status.
// Run: go test -run '^$' -fuzz '^FuzzExecute$' -fuzztime 10s ./remote/execution/
func FuzzExecute(f *testing.F) {
	cmd, _ := proto.Marshal(shCommand("true", "out"))
	sub, _ := proto.Marshal(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a"}, {Name: "b"}}})
	root, _ := proto.Marshal(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "x"}, {Name: "y"}},
		Files: []*repb.FileNode{{Name: "f", Digest: &repb.Digest{Hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}}})
	action, _ := proto.Marshal(&repb.Action{DoNotCache: true, Timeout: durationpb.New(time.Second)})
	f.Add([]byte(nil), action, cmd, root, sub)
	req, _ := proto.Marshal(&repb.ExecuteRequest{InstanceName: "a/../b", SkipCacheLookup: true, DigestFunction: repb.DigestFunction_BLAKE3})
	f.Add(req, []byte{0x32, 0x02, 0x08, 0x01}, []byte{0x0a, 0x00}, sub, []byte{0xff})
	st := memory.New(64 << 20)
	svc := New(st, Options{Logger: quietLogger(), InputLimits: worker.Limits{MaxPaths: 10_000}, MaxRetainedOperations: 100})
	ctx := context.Background()
	put := func(t *testing.T, data []byte) *repb.Digest {
		d, _ := digest.Of(fn, data)
		if err := st.Put(ctx, store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	f.Fuzz(func(t *testing.T, reqBytes, actionBytes, cmdBytes, rootBytes, subBytes []byte) {
		req := &repb.ExecuteRequest{}
		a := &repb.Action{}
		if proto.Unmarshal(reqBytes, req) != nil || proto.Unmarshal(actionBytes, a) != nil {
			return
		}
		subD := put(t, subBytes)
		if dir := (&repb.Directory{}); proto.Unmarshal(rootBytes, dir) == nil {
			for _, n := range dir.Directories {
				n.Digest = subD
			}
			rootBytes, _ = proto.Marshal(dir)
		}
		a.InputRootDigest = put(t, rootBytes)
		a.CommandDigest = put(t, cmdBytes)
		data, _ := proto.Marshal(a)
		req.ActionDigest = put(t, data)
		op, err := svc.admit(ctx, req)
		if err != nil {
			return
		}
		if op == nil {
			t.Fatal("admission returned neither an operation nor an error")
		}
		svc.mu.Lock()
		done, resp := op.done, op.response
		svc.mu.Unlock()
		if done && resp.GetStatus() == nil {
			t.Fatal("a finished operation without a status")
		}
	})
}

// sessionStream is the server side of a worker session fed from a list of
// messages; Recv ends with io.EOF after the last. A result naming lease
// "LEASE" is given the id of the lease the scheduler sent, if any.
type sessionStream struct {
	grpc.ServerStream
	ctx    context.Context
	msgs   []*workerpb.WorkerMessage
	leases chan string
	lease  string
}

func (s *sessionStream) Context() context.Context { return s.ctx }

func (s *sessionStream) Send(m *workerpb.SchedulerMessage) error {
	if l := m.GetLease(); l != nil {
		select {
		case s.leases <- l.LeaseId:
		default:
		}
	}
	return nil
}

func (s *sessionStream) Recv() (*workerpb.WorkerMessage, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	if r := m.GetResult(); r != nil && r.LeaseId == "LEASE" {
		if s.lease == "" {
			select {
			case s.lease = <-s.leases:
			case <-time.After(10 * time.Millisecond):
			}
		}
		if s.lease != "" {
			r.LeaseId = s.lease
		}
	}
	return m, nil
}

// FuzzSession: a worker session fed any sequence of WorkerMessages (the
// first one made a Hello when hello is set; each message prefixed by its
// length in one byte) ends, without a panic or a hang, once the messages
// run out; a queued action leased to it is completed or requeued.
// Run: go test -run '^$' -fuzz '^FuzzSession$' -fuzztime 10s ./remote/execution/
func FuzzSession(f *testing.F) {
	msg := func(m *workerpb.WorkerMessage) []byte {
		b, _ := proto.Marshal(m)
		return append([]byte{byte(len(b))}, b...)
	}
	hello := msg(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: &workerpb.Hello{WorkerId: "w", Concurrency: 2}}})
	okResult, _ := proto.Marshal(&repb.ActionResult{ExitCode: 0})
	result := msg(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.LeaseResult{LeaseId: "LEASE", ActionResult: okResult}}})
	beat := msg(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}})
	f.Add(false, append(append(hello, beat...), result...))
	f.Add(false, append(hello, msg(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.LeaseResult{LeaseId: "made-up"}}})...))
	f.Add(true, []byte{0x04, 0x10, 0xff, 0xff, 0x0f})
	f.Add(false, []byte{0x03, 0x1a, 0x01, 0x0a})
	st := memory.New(64 << 20)
	svc := New(st, Options{Logger: quietLogger(), MaxRetainedOperations: 100})
	// A worker that takes nothing keeps admission open for the session's.
	svc.registerWorker("idle", nil)
	ctx := context.Background()
	var ad *repb.Digest
	{
		put := func(m proto.Message) *repb.Digest {
			data, _ := proto.Marshal(m)
			d, _ := digest.Of(fn, data)
			if err := st.Put(ctx, store.Key{Kind: store.CAS, Function: fn, Hash: d.Hash, Size: d.SizeBytes}, d.SizeBytes, bytes.NewReader(data)); err != nil {
				f.Fatal(err)
			}
			return d
		}
		ad = put(&repb.Action{DoNotCache: true, CommandDigest: put(shCommand("true")), InputRootDigest: put(&repb.Directory{})})
	}
	var pending *operation
	f.Fuzz(func(t *testing.T, forceHello bool, data []byte) {
		if pending == nil || pending.isDone(svc) {
			op, err := svc.admit(ctx, &repb.ExecuteRequest{ActionDigest: ad, SkipCacheLookup: true})
			if err != nil {
				t.Fatal(err)
			}
			pending = op
		}
		var msgs []*workerpb.WorkerMessage
		for len(data) > 0 {
			n := min(int(data[0]), len(data)-1)
			m := &workerpb.WorkerMessage{}
			if proto.Unmarshal(data[1:1+n], m) == nil {
				msgs = append(msgs, m)
			}
			data = data[1+n:]
		}
		if forceHello && (len(msgs) == 0 || msgs[0].GetHello() == nil) {
			msgs = append([]*workerpb.WorkerMessage{{Kind: &workerpb.WorkerMessage_Hello{Hello: &workerpb.Hello{}}}}, msgs...)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			svc.Session(&sessionStream{ctx: sctx, msgs: msgs, leases: make(chan string, 1)})
		}()
		select {
		case <-done:
		case <-sctx.Done():
			t.Fatal("the session did not end when its messages ran out")
		}
	})
}

// isDone reports whether op has finished.
func (op *operation) isDone(s *Service) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return op.done
}
