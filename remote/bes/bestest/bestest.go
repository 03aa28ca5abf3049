// Package bestest builds Bazel build event streams for tests: real
// build_event_stream.BuildEvent messages, in the order and shape of what
// Bazel 7 sends for a build or test command (not captured from Bazel), as
// PublishBuildToolEventStream requests, and a client that publishes them.
package bestest

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	bpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ferrule-build/ferrule/remote/bes/bep"
)

// Build describes the invocation a stream reports.
type Build struct {
	InvocationID, BuildID string
	Command               string   // "build" or "test"
	Pattern               []string // the target patterns
	Targets               []string // the configured targets, tests among them
	Tests                 []string // the test targets (also in Targets)
	FailedTargets         []string // targets whose TargetComplete says failure
	User, Host            string   // sent as --build_metadata USER and HOST
	Start                 time.Time
	Took                  time.Duration
	RemoteHits, Executed  int32 // "remote cache hit" and "linux-sandbox" runners
	Internal              int32
	ExitCode              int32
}

// Events returns the Bazel events of b, in the order Bazel sends them.
func Events(b Build) []*bep.BuildEvent {
	id := func(x any) *bep.BuildEventId {
		switch v := x.(type) {
		case *bep.BuildEventId_Started:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_Pattern:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_BuildMetadata:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_TargetConfigured:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_TargetCompleted:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_TestResult:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_TestSummary:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_BuildFinished:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_BuildMetrics:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_BuildToolLogs:
			return &bep.BuildEventId{Id: v}
		case *bep.BuildEventId_Progress:
			return &bep.BuildEventId{Id: v}
		}
		panic(fmt.Sprintf("bestest: id %T", x))
	}
	cfg := &bep.BuildEventId_ConfigurationId{Id: "k8-fastbuild"}
	patternID := id(&bep.BuildEventId_Pattern{Pattern: &bep.BuildEventId_PatternExpandedId{Pattern: b.Pattern}})
	isTest := map[string]bool{}
	for _, t := range b.Tests {
		isTest[t] = true
	}
	failed := map[string]bool{}
	for _, t := range b.FailedTargets {
		failed[t] = true
	}
	var evs []*bep.BuildEvent
	evs = append(evs, &bep.BuildEvent{
		Id: id(&bep.BuildEventId_Started{Started: &bep.BuildEventId_BuildStartedId{}}),
		Children: []*bep.BuildEventId{patternID,
			id(&bep.BuildEventId_BuildMetadata{BuildMetadata: &bep.BuildEventId_BuildMetadataId{}}),
			id(&bep.BuildEventId_BuildFinished{BuildFinished: &bep.BuildEventId_BuildFinishedId{}})},
		Payload: &bep.BuildEvent_Started{Started: &bep.BuildStarted{
			Uuid: b.InvocationID, StartTimeMillis: b.Start.UnixMilli(), StartTime: timestamppb.New(b.Start),
			BuildToolVersion: "7.7.1", Command: b.Command, WorkingDirectory: "/src/ws", WorkspaceDirectory: "/src/ws",
			ServerPid: 4242, Host: "bazel-host", User: "bazel-user",
		}},
	})
	evs = append(evs, &bep.BuildEvent{
		Id:      id(&bep.BuildEventId_BuildMetadata{BuildMetadata: &bep.BuildEventId_BuildMetadataId{}}),
		Payload: &bep.BuildEvent_BuildMetadata{BuildMetadata: &bep.BuildMetadata{Metadata: map[string]string{"USER": b.User, "HOST": b.Host}}},
	})
	var configured []*bep.BuildEventId
	for _, t := range b.Targets {
		configured = append(configured, id(&bep.BuildEventId_TargetConfigured{TargetConfigured: &bep.BuildEventId_TargetConfiguredId{Label: t}}))
	}
	evs = append(evs, &bep.BuildEvent{Id: patternID, Children: configured, Payload: &bep.BuildEvent_Expanded{Expanded: &bep.PatternExpanded{}}})
	for _, t := range b.Targets {
		kind := "cc_binary rule"
		if isTest[t] {
			kind = "cc_test rule"
		}
		completed := id(&bep.BuildEventId_TargetCompleted{TargetCompleted: &bep.BuildEventId_TargetCompletedId{Label: t, Configuration: cfg}})
		evs = append(evs, &bep.BuildEvent{
			Id: id(&bep.BuildEventId_TargetConfigured{TargetConfigured: &bep.BuildEventId_TargetConfiguredId{Label: t}}), Children: []*bep.BuildEventId{completed},
			Payload: &bep.BuildEvent_Configured{Configured: &bep.TargetConfigured{TargetKind: kind}},
		})
	}
	evs = append(evs, &bep.BuildEvent{
		Id:      id(&bep.BuildEventId_Progress{Progress: &bep.BuildEventId_ProgressId{OpaqueCount: 1}}),
		Payload: &bep.BuildEvent_Progress{Progress: &bep.Progress{Stderr: "INFO: Analyzed " + fmt.Sprint(len(b.Targets)) + " targets.\n"}},
	})
	for _, t := range b.Targets {
		evs = append(evs, &bep.BuildEvent{
			Id:      id(&bep.BuildEventId_TargetCompleted{TargetCompleted: &bep.BuildEventId_TargetCompletedId{Label: t, Configuration: cfg}}),
			Payload: &bep.BuildEvent_Completed{Completed: &bep.TargetComplete{Success: !failed[t]}},
		})
	}
	for _, t := range b.Tests {
		st := bep.TestStatus_PASSED
		if failed[t] {
			st = bep.TestStatus_FAILED
		}
		evs = append(evs, &bep.BuildEvent{
			Id: id(&bep.BuildEventId_TestResult{TestResult: &bep.BuildEventId_TestResultId{Label: t, Configuration: cfg, Run: 1, Shard: 1, Attempt: 1}}),
			Payload: &bep.BuildEvent_TestResult{TestResult: &bep.TestResult{
				Status: st, TestAttemptDurationMillis: 1250, TestAttemptDuration: durationpb.New(1250 * time.Millisecond),
				ExecutionInfo: &bep.TestResult_ExecutionInfo{Strategy: "remote", CachedRemotely: true},
			}},
		})
		evs = append(evs, &bep.BuildEvent{
			Id: id(&bep.BuildEventId_TestSummary{TestSummary: &bep.BuildEventId_TestSummaryId{Label: t, Configuration: cfg}}),
			Payload: &bep.BuildEvent_TestSummary{TestSummary: &bep.TestSummary{
				OverallStatus: st, TotalRunCount: 1, RunCount: 1, AttemptCount: 1, ShardCount: 1, TotalNumCached: 1,
				TotalRunDuration: durationpb.New(1250 * time.Millisecond),
			}},
		})
	}
	end := b.Start.Add(b.Took)
	name := "SUCCESS"
	if b.ExitCode != 0 {
		name = "BUILD_FAILURE"
	}
	evs = append(evs, &bep.BuildEvent{
		Id: id(&bep.BuildEventId_BuildFinished{BuildFinished: &bep.BuildEventId_BuildFinishedId{}}),
		Children: []*bep.BuildEventId{id(&bep.BuildEventId_BuildToolLogs{BuildToolLogs: &bep.BuildEventId_BuildToolLogsId{}}),
			id(&bep.BuildEventId_BuildMetrics{BuildMetrics: &bep.BuildEventId_BuildMetricsId{}})},
		Payload: &bep.BuildEvent_Finished{Finished: &bep.BuildFinished{
			OverallSuccess: b.ExitCode == 0, ExitCode: &bep.BuildFinished_ExitCode{Name: name, Code: b.ExitCode},
			FinishTimeMillis: end.UnixMilli(), FinishTime: timestamppb.New(end),
		}},
	})
	total := b.RemoteHits + b.Executed + b.Internal
	evs = append(evs, &bep.BuildEvent{
		Id: id(&bep.BuildEventId_BuildMetrics{BuildMetrics: &bep.BuildEventId_BuildMetricsId{}}),
		Payload: &bep.BuildEvent_BuildMetrics{BuildMetrics: &bep.BuildMetrics{
			ActionSummary: &bep.BuildMetrics_ActionSummary{
				ActionsCreated: int64(total) + 3, ActionsExecuted: int64(total),
				RunnerCount: []*bep.BuildMetrics_ActionSummary_RunnerCount{
					{Name: "total", Count: total},
					{Name: "remote cache hit", Count: b.RemoteHits, ExecKind: "Remote"},
					{Name: "internal", Count: b.Internal},
					{Name: "linux-sandbox", Count: b.Executed, ExecKind: "Local"},
				},
			},
			TimingMetrics: &bep.BuildMetrics_TimingMetrics{WallTimeInMs: b.Took.Milliseconds(), CriticalPathTime: durationpb.New(b.Took / 2)},
		}},
	})
	evs = append(evs, &bep.BuildEvent{
		Id: id(&bep.BuildEventId_BuildToolLogs{BuildToolLogs: &bep.BuildEventId_BuildToolLogsId{}}),
		Payload: &bep.BuildEvent_BuildToolLogs{BuildToolLogs: &bep.BuildToolLogs{Log: []*bep.File{
			{Name: "elapsed time", File: &bep.File_Contents{Contents: []byte(fmt.Sprintf("%.3f", b.Took.Seconds()))}},
			{Name: "critical path", File: &bep.File_Contents{Contents: []byte("Critical Path: " + fmt.Sprintf("%.2fs", (b.Took/2).Seconds()) + "\n  Action 'Compiling main.c' 0.40s\n  Action 'Linking app' 0.20s\n")}},
		}}},
		LastMessage: true,
	})
	return evs
}

// Requests wraps events as the ordered requests of one stream, numbered
// from 1, ending with BuildComponentStreamFinished as Bazel does.
func Requests(invocationID, buildID string, evs []*bep.BuildEvent) []*bpb.PublishBuildToolEventStreamRequest {
	sid := &bpb.StreamId{BuildId: buildID, InvocationId: invocationID, Component: bpb.StreamId_TOOL}
	var reqs []*bpb.PublishBuildToolEventStreamRequest
	for i, ev := range evs {
		a, err := anypb.New(ev)
		if err != nil {
			panic(err)
		}
		reqs = append(reqs, &bpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: &bpb.OrderedBuildEvent{
			StreamId: sid, SequenceNumber: int64(i + 1),
			Event: &bpb.BuildEvent{EventTime: timestamppb.Now(), Event: &bpb.BuildEvent_BazelEvent{BazelEvent: a}},
		}})
	}
	reqs = append(reqs, &bpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: &bpb.OrderedBuildEvent{
		StreamId: sid, SequenceNumber: int64(len(evs) + 1),
		Event: &bpb.BuildEvent{EventTime: timestamppb.Now(), Event: &bpb.BuildEvent_ComponentStreamFinished{
			ComponentStreamFinished: &bpb.BuildEvent_BuildComponentStreamFinished{Type: bpb.BuildEvent_BuildComponentStreamFinished_FINISHED}}},
	}})
	return reqs
}

// Publish sends reqs on one stream, reads the acknowledgements and checks
// that they name the requests' sequence numbers in order. It returns the
// stream's final error (nil for a stream the server ended with OK).
func Publish(ctx context.Context, c bpb.PublishBuildEventClient, reqs []*bpb.PublishBuildToolEventStreamRequest) (acked []int64, err error) {
	stream, err := c.PublishBuildToolEventStream(ctx)
	if err != nil {
		return nil, err
	}
	sendErr := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := stream.Send(r); err != nil {
				sendErr <- nil // the error comes from Recv
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			if err := <-sendErr; err != nil {
				return acked, err
			}
			return acked, nil
		}
		if err != nil {
			<-sendErr
			return acked, err
		}
		acked = append(acked, resp.GetSequenceNumber())
	}
}

// Registrar is a service that registers itself on a gRPC server.
type Registrar interface{ Register(*grpc.Server) }

// Serve serves svc over an in-process connection and returns a client and a
// function that stops both.
func Serve(t testing.TB, svc Registrar) (bpb.PublishBuildEventClient, func()) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	svc.Register(g)
	go g.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		g.Stop()
		t.Fatal(err)
	}
	return bpb.NewPublishBuildEventClient(conn), func() { conn.Close(); g.Stop() }
}
