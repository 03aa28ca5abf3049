package bes_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	bpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ferrule-build/ferrule/remote/bes"
	"github.com/ferrule-build/ferrule/remote/bes/bep"
	"github.com/ferrule-build/ferrule/remote/bes/bestest"
	"github.com/ferrule-build/ferrule/remote/grpctest"
)

func start(t *testing.T, lim bes.Limits, readOnly bool) (*bes.Store, bpb.PublishBuildEventClient) {
	t.Helper()
	st := bes.NewStore(lim)
	g := grpc.NewServer()
	bes.New(st, bes.Options{ReadOnly: readOnly}).Register(g)
	conn := grpctest.Dial(t, g)
	return st, bpb.NewPublishBuildEventClient(conn)
}

func build(id string) bestest.Build {
	return bestest.Build{
		InvocationID: id, BuildID: "build-" + id, Command: "test",
		Pattern: []string{"//app/..."}, Targets: []string{"//app:bin", "//app:lib", "//app:test"}, Tests: []string{"//app:test"},
		User: "alice", Host: "ci-7", Start: time.Unix(1_790_000_000, 0), Took: 42 * time.Second,
		RemoteHits: 9, Executed: 3, Internal: 2,
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("got %v, want %v containing %q", err, code, substr)
	}
}

func TestWholeStream(t *testing.T) {
	st, c := start(t, bes.Limits{}, false)
	b := build("inv-1")
	evs := bestest.Events(b)
	reqs := bestest.Requests(b.InvocationID, b.BuildID, evs)
	acked, err := bestest.Publish(ctx(t), c, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) != len(reqs) {
		t.Fatalf("%d acks for %d events", len(acked), len(reqs))
	}
	for i, s := range acked {
		if s != int64(i+1) {
			t.Fatalf("ack %d is sequence number %d", i, s)
		}
	}
	inv, ok := st.Get("inv-1")
	if !ok {
		t.Fatal("invocation not stored")
	}
	if inv.State != bes.Finished || len(inv.PartialReasons) != 0 {
		t.Errorf("state %s %v, want finished", inv.State, inv.PartialReasons)
	}
	if inv.Command != "test" || inv.User != "alice" || inv.Host != "ci-7" || inv.BuildID != "build-inv-1" {
		t.Errorf("command %q user %q host %q build %q", inv.Command, inv.User, inv.Host, inv.BuildID)
	}
	if len(inv.TargetList) != 3 || inv.TargetList[0].Kind != "cc_binary rule" || !inv.TargetList[0].Success {
		t.Errorf("targets %+v", inv.TargetList)
	}
	if len(inv.TestList) != 1 || inv.TestList[0].Status != "PASSED" || len(inv.TestList[0].Attempts) != 1 || !inv.TestList[0].Attempts[0].CachedRemotely {
		t.Errorf("tests %+v", inv.TestList)
	}
	if inv.RemoteHits() != 9 || inv.Misses() != 3 || inv.ActionsExecuted != 14 {
		t.Errorf("hits %d misses %d executed %d", inv.RemoteHits(), inv.Misses(), inv.ActionsExecuted)
	}
	if inv.Duration() != 42*time.Second || inv.Result() != "success" || !strings.Contains(inv.CriticalPath, "Critical Path: 21.00s") {
		t.Errorf("duration %v result %q critical path %q", inv.Duration(), inv.Result(), inv.CriticalPath)
	}
	if inv.Events != len(evs) {
		t.Errorf("%d events stored, want %d", inv.Events, len(evs))
	}
}

// A retry after lost acknowledgements sends events again: they are
// acknowledged and kept once.
func TestRetryResendsAckedEvents(t *testing.T) {
	st, c := start(t, bes.Limits{}, false)
	b := build("inv-r")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	half := len(reqs) / 2
	if _, err := bestest.Publish(ctx(t), c, reqs[:half]); err != nil {
		t.Fatal(err)
	}
	if inv, _ := st.Get("inv-r"); inv.State != bes.Partial {
		t.Errorf("after half a stream: %s, want partial", inv.State)
	}
	acked, err := bestest.Publish(ctx(t), c, reqs[half-3:])
	if err != nil {
		t.Fatal(err)
	}
	if acked[0] != int64(half-2) || len(acked) != len(reqs)-half+3 {
		t.Errorf("acks %v", acked)
	}
	inv, _ := st.Get("inv-r")
	if inv.State != bes.Finished || inv.Events != len(reqs)-1 || len(inv.TargetList) != 3 {
		t.Errorf("state %s %v, %d events, %d targets", inv.State, inv.PartialReasons, inv.Events, len(inv.TargetList))
	}
}

func TestFinishedInvocationRefusesNewEvents(t *testing.T) {
	st, c := start(t, bes.Limits{}, false)
	b := build("inv-f")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	if _, err := bestest.Publish(ctx(t), c, reqs); err != nil {
		t.Fatal(err)
	}
	// Sent again whole, as by a client that lost every ack: acknowledged.
	if _, err := bestest.Publish(ctx(t), c, reqs); err != nil {
		t.Fatalf("resending a finished stream: %v", err)
	}
	more := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	for _, r := range more {
		r.OrderedBuildEvent.SequenceNumber += int64(len(reqs))
	}
	_, err := bestest.Publish(ctx(t), c, more)
	wantCode(t, err, codes.FailedPrecondition, "already finished")
	if inv, _ := st.Get("inv-f"); inv.State != bes.Finished || inv.Events != len(reqs)-1 {
		t.Errorf("state %s, %d events", inv.State, inv.Events)
	}
}

// A gap in the sequence numbers is recorded and the stream goes on.
func TestOutOfOrderGap(t *testing.T) {
	st, c := start(t, bes.Limits{}, false)
	b := build("inv-g")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	gapped := append(append([]*bpb.PublishBuildToolEventStreamRequest{}, reqs[:2]...), reqs[4:]...)
	acked, err := bestest.Publish(ctx(t), c, gapped)
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) != len(gapped) || acked[2] != 5 {
		t.Errorf("acks %v", acked)
	}
	inv, _ := st.Get("inv-g")
	if inv.State != bes.Partial || len(inv.PartialReasons) != 1 || inv.PartialReasons[0] != "events 3 to 4 never came" {
		t.Errorf("state %s %q", inv.State, inv.PartialReasons)
	}
}

func TestMalformed(t *testing.T) {
	st, c := start(t, bes.Limits{}, false)
	b := build("inv-m")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))

	t.Run("no stream id", func(t *testing.T) {
		_, err := bestest.Publish(ctx(t), c, []*bpb.PublishBuildToolEventStreamRequest{{OrderedBuildEvent: &bpb.OrderedBuildEvent{SequenceNumber: 1}}})
		wantCode(t, err, codes.InvalidArgument, "invocation_id")
	})
	t.Run("no event", func(t *testing.T) {
		_, err := bestest.Publish(ctx(t), c, []*bpb.PublishBuildToolEventStreamRequest{{}})
		wantCode(t, err, codes.InvalidArgument, "ordered_build_event")
	})
	t.Run("sequence zero", func(t *testing.T) {
		r := bestest.Requests("inv-zero", "b", bestest.Events(build("inv-zero")))[0]
		r.OrderedBuildEvent.SequenceNumber = 0
		_, err := bestest.Publish(ctx(t), c, []*bpb.PublishBuildToolEventStreamRequest{r})
		wantCode(t, err, codes.InvalidArgument, "start at 1")
	})
	t.Run("stream id changes", func(t *testing.T) {
		other := bestest.Requests("inv-other", "b", bestest.Events(build("inv-other")))
		_, err := bestest.Publish(ctx(t), c, []*bpb.PublishBuildToolEventStreamRequest{other[0], reqs[1]})
		wantCode(t, err, codes.InvalidArgument, "stream_id changed")
	})
	t.Run("undecodable bazel event", func(t *testing.T) {
		bad := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))[:4]
		bad[3].OrderedBuildEvent.Event.Event = &bpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{
			TypeUrl: "type.googleapis.com/build_event_stream.BuildEvent", Value: []byte{0x0a, 0xff, 0x01}}}
		acked, err := bestest.Publish(ctx(t), c, bad)
		wantCode(t, err, codes.InvalidArgument, "not a valid build_event_stream.BuildEvent")
		if len(acked) != 3 {
			t.Errorf("acks %v, want the 3 good ones", acked)
		}
		inv, _ := st.Get("inv-m")
		if inv.State != bes.Partial || inv.Events != 3 || !strings.Contains(strings.Join(inv.PartialReasons, ";"), "event 4 could not be decoded") {
			t.Errorf("state %s %q, %d events", inv.State, inv.PartialReasons, inv.Events)
		}
	})
}

// rawCodec sends bytes as they are: a client that sends a truncated message.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

var _ encoding.Codec = rawCodec{}

func TestTruncatedMessage(t *testing.T) {
	st := bes.NewStore(bes.Limits{})
	g := grpc.NewServer()
	bes.New(st, bes.Options{}).Register(g)
	conn := grpctest.Dial(t, g)
	b := build("inv-t")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	desc := &grpc.StreamDesc{StreamName: "PublishBuildToolEventStream", ServerStreams: true, ClientStreams: true}
	cs, err := conn.NewStream(ctx(t), desc, "/google.devtools.build.v1.PublishBuildEvent/PublishBuildToolEventStream", grpc.ForceCodecV2(nil), grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		m, _ := protoMarshal(reqs[i])
		if err := cs.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := protoMarshal(reqs[2])
	m = m[:len(m)/2]
	cs.SendMsg(&m)
	cs.CloseSend()
	var got []byte
	var acks int
	for {
		if err = cs.RecvMsg(&got); err != nil {
			break
		}
		acks++
	}
	if status.Code(err) == codes.OK {
		t.Fatalf("a truncated message ended the stream with %v", err)
	}
	// The client may see the stream's status before the handler's deferred
	// bookkeeping has marked the invocation: wait for it (bounded).
	inv, _ := st.Get("inv-t")
	for end := time.Now().Add(10 * time.Second); inv.State != bes.Partial && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		inv, _ = st.Get("inv-t")
	}
	if acks != 2 || inv.Events != 2 || inv.State != bes.Partial || !strings.Contains(strings.Join(inv.PartialReasons, ";"), "stream broke") {
		t.Errorf("%d acks, %d events, state %s %q (stream error %v)", acks, inv.Events, inv.State, inv.PartialReasons, err)
	}
}

func TestUnknownEventKinds(t *testing.T) {
	st, c := start(t, bes.Limits{}, false)
	b := build("inv-u")
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	// Another tool's event, console output and a Bazel event of a payload
	// this server does not read (as from a newer Bazel) are acknowledged.
	odd, _ := anypb.New(wrapperspb.String("not a build event"))
	unread := &bep.BuildEvent{Id: &bep.BuildEventId{Id: &bep.BuildEventId_Unknown{Unknown: &bep.BuildEventId_UnknownBuildEventId{Details: "x"}}}}
	unreadAny, _ := anypb.New(unread)
	unreadAny.Value = append(unreadAny.Value, 0xfa, 0x07, 0x02, 0x08, 0x01) // field 127, a message
	reqs[1].OrderedBuildEvent.Event.Event = &bpb.BuildEvent_BuildExecutionEvent{BuildExecutionEvent: odd}
	reqs[2].OrderedBuildEvent.Event.Event = &bpb.BuildEvent_ConsoleOutput_{ConsoleOutput: &bpb.BuildEvent_ConsoleOutput{}}
	reqs[3].OrderedBuildEvent.Event.Event = &bpb.BuildEvent_BazelEvent{BazelEvent: odd}
	reqs[4].OrderedBuildEvent.Event.Event = &bpb.BuildEvent_BazelEvent{BazelEvent: unreadAny}
	acked, err := bestest.Publish(ctx(t), c, reqs)
	if err != nil || len(acked) != len(reqs) {
		t.Fatalf("%d acks of %d: %v", len(acked), len(reqs), err)
	}
	inv, _ := st.Get("inv-u")
	if inv.Unknown != 4 || inv.State != bes.Finished {
		t.Errorf("%d unknown, state %s %q", inv.Unknown, inv.State, inv.PartialReasons)
	}
}

// A flood beyond the per-invocation bound keeps the first events, still
// learns the result, and shows the invocation as partial; beyond the count
// of invocations, the oldest go.
func TestFloodBeyondBounds(t *testing.T) {
	st, c := start(t, bes.Limits{MaxEvents: 50, MaxInvocations: 3}, false)
	b := build("inv-flood")
	for i := 0; i < 500; i++ {
		b.Targets = append(b.Targets, fmt.Sprintf("//flood:t%03d", i))
	}
	reqs := bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b))
	acked, err := bestest.Publish(ctx(t), c, reqs)
	if err != nil || len(acked) != len(reqs) {
		t.Fatalf("%d acks of %d: %v", len(acked), len(reqs), err)
	}
	inv, _ := st.Get("inv-flood")
	if inv.Events != 50 || inv.Dropped != len(reqs)-1-50 || inv.State != bes.Partial {
		t.Errorf("%d events stored, %d dropped, state %s", inv.Events, inv.Dropped, inv.State)
	}
	if inv.Result() != "success" || inv.RemoteHits() != 9 || inv.CriticalPath == "" {
		t.Errorf("result %q hits %d: the essential events over the bound were lost", inv.Result(), inv.RemoteHits())
	}
	for i := 0; i < 4; i++ {
		ob := build(fmt.Sprintf("inv-%d", i))
		if _, err := bestest.Publish(ctx(t), c, bestest.Requests(ob.InvocationID, ob.BuildID, bestest.Events(ob))); err != nil {
			t.Fatal(err)
		}
	}
	list := st.List(0)
	if len(list) != 3 || list[0].ID != "inv-3" || list[2].ID != "inv-1" {
		t.Errorf("list %v", list)
	}
	if _, ok := st.Get("inv-flood"); ok {
		t.Error("the oldest invocation was kept beyond MaxInvocations")
	}
	if s := st.Stats(); s.Evicted != 2 || s.Invocations != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadOnly(t *testing.T) {
	st, c := start(t, bes.Limits{}, true)
	b := build("inv-ro")
	_, err := bestest.Publish(ctx(t), c, bestest.Requests(b.InvocationID, b.BuildID, bestest.Events(b)))
	wantCode(t, err, codes.PermissionDenied, "read-only")
	_, err = c.PublishLifecycleEvent(ctx(t), &bpb.PublishLifecycleEventRequest{BuildEvent: &bpb.OrderedBuildEvent{StreamId: &bpb.StreamId{BuildId: "b"}}})
	wantCode(t, err, codes.PermissionDenied, "read-only")
	if len(st.List(0)) != 0 {
		t.Error("a read-only server stored an invocation")
	}
}

func TestLifecycle(t *testing.T) {
	st, c := start(t, bes.Limits{}, false)
	_, err := c.PublishLifecycleEvent(ctx(t), &bpb.PublishLifecycleEventRequest{})
	wantCode(t, err, codes.InvalidArgument, "build_id")
	if _, err := c.PublishLifecycleEvent(ctx(t), &bpb.PublishLifecycleEventRequest{BuildEvent: &bpb.OrderedBuildEvent{
		StreamId: &bpb.StreamId{BuildId: "b1", InvocationId: "inv-l", Component: bpb.StreamId_CONTROLLER}, SequenceNumber: 1,
		Event: &bpb.BuildEvent{Event: &bpb.BuildEvent_InvocationAttemptStarted_{InvocationAttemptStarted: &bpb.BuildEvent_InvocationAttemptStarted{AttemptNumber: 1}}},
	}}); err != nil {
		t.Fatal(err)
	}
	if inv, ok := st.Get("inv-l"); !ok || inv.BuildID != "b1" {
		t.Errorf("lifecycle event not recorded: %+v", inv)
	}
}

// BenchmarkInvocationMemory reports the heap one stored invocation costs:
// the sample build (3 targets, 1 test, 15 events) and one of 500 targets.
func BenchmarkInvocationMemory(b *testing.B) {
	for _, targets := range []int{3, 500} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			const n = 200
			var perInv, eventBytes float64
			for i := 0; i < b.N; i++ {
				st := bes.NewStore(bes.Limits{})
				c, stop := bestest.Serve(b, bes.New(st, bes.Options{}))
				reqs := make([][]*bpb.PublishBuildToolEventStreamRequest, n)
				for k := range reqs {
					bd := build(fmt.Sprintf("inv-%d", k))
					for j := 3; j < targets; j++ {
						bd.Targets = append(bd.Targets, fmt.Sprintf("//pkg%d:target_%d", j/20, j))
					}
					reqs[k] = bestest.Requests(bd.InvocationID, bd.BuildID, bestest.Events(bd))
				}
				before := heap()
				for _, r := range reqs {
					if _, err := bestest.Publish(context.Background(), c, r); err != nil {
						b.Fatal(err)
					}
				}
				after := heap()
				runtime.KeepAlive(reqs)
				perInv = (float64(after) - float64(before)) / n
				eventBytes = float64(st.Stats().Bytes) / n
				stop()
			}
			b.ReportMetric(perInv, "heap-B/inv")
			b.ReportMetric(eventBytes, "event-B/inv")
		})
	}
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
