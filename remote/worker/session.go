package worker

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Serve connects r to a scheduler over conn and runs the leases it gets
// until ctx ends or the session breaks (then it returns the error; callers
// reconnect). platform is what the worker offers; concurrency how many
// actions it runs at once.
func Serve(ctx context.Context, conn grpc.ClientConnInterface, r *Runner, platform []*repb.Platform_Property, concurrency int) error {
	if concurrency < 1 {
		concurrency = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := workerpb.NewSchedulerClient(conn).Session(ctx)
	if err != nil {
		return err
	}
	hello := &workerpb.Hello{WorkerId: r.ID(), Concurrency: int32(concurrency)}
	for _, p := range platform {
		hello.Platform = append(hello.Platform, &workerpb.Property{Name: p.Name, Value: p.Value})
	}
	var sendMu sync.Mutex
	send := func(m *workerpb.WorkerMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		if errors.Is(err, io.EOF) { // the server ended the stream: Recv has its status
			_, err = stream.Recv()
		}
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	interval := time.Duration(first.GetWelcome().GetHeartbeatIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = 10 * time.Second
	}
	r.log.Info("connected to the scheduler", "concurrency", concurrency)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}}); err != nil {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		m, err := stream.Recv()
		if err != nil {
			cancel()
			return err
		}
		l := m.GetLease()
		if l == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := r.runLease(ctx, l)
			res := &workerpb.LeaseResult{LeaseId: l.LeaseId}
			if out.Result != nil {
				res.ActionResult, _ = proto.Marshal(out.Result)
			}
			if out.Status != nil {
				res.Status, _ = proto.Marshal(out.Status)
			}
			if err := send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: res}}); err != nil {
				r.log.Warn("reporting a result failed", "lease", l.LeaseId, "err", err)
				cancel()
			}
		}()
	}
}

// taskOf decodes the Task a lease carries; a malformed one is an
// INVALID_ARGUMENT status.
func taskOf(l *workerpb.Lease) (*Task, *spb.Status) {
	t := &Task{Instance: l.InstanceName, Function: repb.DigestFunction_Value(l.DigestFunction),
		ActionDigest: &repb.Digest{}, Action: &repb.Action{}, Command: &repb.Command{},
		Timeout: time.Duration(l.TimeoutMs) * time.Millisecond}
	if err := proto.Unmarshal(l.ActionDigest, t.ActionDigest); err != nil {
		return nil, statusOf(codes.InvalidArgument, "lease: action digest: %v", err)
	}
	if err := proto.Unmarshal(l.Action, t.Action); err != nil {
		return nil, statusOf(codes.InvalidArgument, "lease: action: %v", err)
	}
	if err := proto.Unmarshal(l.Command, t.Command); err != nil {
		return nil, statusOf(codes.InvalidArgument, "lease: command: %v", err)
	}
	return t, nil
}

func (r *Runner) runLease(ctx context.Context, l *workerpb.Lease) Outcome {
	t, st := taskOf(l)
	if st != nil {
		return Outcome{Status: st}
	}
	r.log.Info("running action", "action", t.ActionDigest.Hash, "lease", l.LeaseId)
	out := r.Run(ctx, t)
	r.log.Info("action done", "action", t.ActionDigest.Hash, "exit", out.Result.GetExitCode(), "status", codes.Code(out.Status.GetCode()))
	return out
}
