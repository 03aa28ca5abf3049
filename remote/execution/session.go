package execution

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/worker"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// RegisterScheduler adds only the worker Scheduler service to g (for
// servers that register the Execution service themselves).
func (s *Service) RegisterScheduler(g grpc.ServiceRegistrar) {
	workerpb.RegisterSchedulerServer(g, s)
}

// ExecutionCapabilities is what the server should advertise in
// GetCapabilities when this service is registered.
func (s *Service) ExecutionCapabilities() *repb.ExecutionCapabilities {
	return &repb.ExecutionCapabilities{
		DigestFunction:  repb.DigestFunction_SHA256,
		DigestFunctions: []repb.DigestFunction_Value{repb.DigestFunction_SHA256, repb.DigestFunction_BLAKE3},
		ExecEnabled:     true,
		ExecutionPriorityCapabilities: &repb.PriorityCapabilities{Priorities: []*repb.PriorityCapabilities_PriorityRange{
			{MinPriority: -1 << 31, MaxPriority: 1<<31 - 1},
		}},
	}
}

const maxSessionConcurrency = 256

// Session implements the worker Scheduler service: see workerpb/worker.proto.
func (s *Service) Session(stream workerpb.Scheduler_SessionServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message of a session must be Hello")
	}
	conc := int(hello.Concurrency)
	if conc < 1 {
		conc = 1
	}
	if conc > maxSessionConcurrency {
		return status.Errorf(codes.InvalidArgument, "concurrency %d is above the limit of %d", conc, maxSessionConcurrency)
	}
	var props []*repb.Platform_Property
	for _, p := range hello.Platform {
		if p.Name == "" {
			return status.Error(codes.InvalidArgument, "platform property with an empty name")
		}
		props = append(props, &repb.Platform_Property{Name: p.Name, Value: p.Value})
	}
	id := hello.WorkerId
	if id == "" {
		id = newName("worker-")
	}
	if err := stream.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Welcome{Welcome: &workerpb.Welcome{
		HeartbeatIntervalMs: s.opts.HeartbeatInterval.Milliseconds(),
	}}}); err != nil {
		return err
	}
	reg := s.registerWorker(id, props)
	defer s.unregisterWorker(reg)

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()

	var mu sync.Mutex
	held := map[string]bool{}
	slots := make(chan struct{}, conc)
	for i := 0; i < conc; i++ {
		slots <- struct{}{}
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // hands out leases while the worker has free slots
		defer wg.Done()
		defer cancel()
		// Outside the handler, the server's recovery does not reach: a
		// panic ends this session (its leases are requeued), not the process.
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("worker session panicked", "worker", id, "panic", p, "stack", string(debug.Stack()))
			}
		}()
		for {
			select {
			case <-slots:
			case <-ctx.Done():
				return
			}
			j, lease, err := s.next(ctx, reg)
			if err != nil {
				return
			}
			mu.Lock()
			held[lease] = true
			mu.Unlock()
			msg, err := leaseMessage(lease, j.task)
			if err == nil {
				err = stream.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Lease{Lease: msg}})
			}
			if err != nil {
				s.log.Warn("sending a lease failed", "worker", id, "err", err)
				return
			}
		}
	}()

	msgs := make(chan *workerpb.WorkerMessage)
	recvErr := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("worker session panicked", "worker", id, "panic", p, "stack", string(debug.Stack()))
				recvErr <- fmt.Errorf("panic receiving: %v", p)
			}
		}()
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	why := "the session ended"
	var rogue error
	timeout := 3 * s.opts.HeartbeatInterval
	timer := time.NewTimer(timeout)
	defer timer.Stop()
loop:
	for {
		select {
		case m := <-msgs:
			timer.Reset(timeout)
			if r := m.GetResult(); r != nil {
				mu.Lock()
				ok := held[r.LeaseId]
				delete(held, r.LeaseId)
				mu.Unlock()
				if !ok {
					// Another session's lease, one already answered, or a
					// made-up id: nothing is recorded, and a worker that
					// answers what it was not given is not trusted with
					// the leases it holds either (they are requeued).
					s.log.Warn("worker reported a lease it does not hold; ending its session", "worker", id, "lease", r.LeaseId)
					why = fmt.Sprintf("worker %s reported lease %q, which this session does not hold", id, r.LeaseId)
					rogue = status.Errorf(codes.FailedPrecondition, "lease %q is not held by this session: a worker may only answer the actions leased to it", r.LeaseId)
					break loop
				}
				s.complete(r.LeaseId, decodeOutcome(r))
				slots <- struct{}{}
			}
		case err := <-recvErr:
			why = fmt.Sprintf("worker %s: stream broken: %v", id, err)
			break loop
		case <-timer.C:
			why = fmt.Sprintf("worker %s: no heartbeat for %v", id, timeout)
			break loop
		case <-ctx.Done():
			why = fmt.Sprintf("worker %s: session closed", id)
			break loop
		}
	}
	cancel()
	wg.Wait()
	mu.Lock()
	for lease := range held {
		s.leaseLost(lease, why)
	}
	mu.Unlock()
	if rogue != nil {
		return rogue
	}
	if ctx.Err() != nil && stream.Context().Err() == nil {
		return status.Error(codes.Unavailable, why)
	}
	return nil
}

func leaseMessage(lease string, t *worker.Task) (*workerpb.Lease, error) {
	ad, err := proto.Marshal(t.ActionDigest)
	if err != nil {
		return nil, err
	}
	action, err := proto.Marshal(t.Action)
	if err != nil {
		return nil, err
	}
	command, err := proto.Marshal(t.Command)
	if err != nil {
		return nil, err
	}
	return &workerpb.Lease{
		LeaseId: lease, InstanceName: t.Instance, DigestFunction: int32(t.Function),
		ActionDigest: ad, Action: action, Command: command, TimeoutMs: t.Timeout.Milliseconds(),
	}, nil
}

func decodeOutcome(r *workerpb.LeaseResult) worker.Outcome {
	var out worker.Outcome
	if len(r.Status) > 0 {
		st := &spb.Status{}
		if err := proto.Unmarshal(r.Status, st); err != nil {
			return worker.Outcome{Status: statusProto(codes.Internal, "worker sent an unparsable status: %v", err)}
		}
		out.Status = st
	}
	if len(r.ActionResult) > 0 {
		res := &repb.ActionResult{}
		if err := proto.Unmarshal(r.ActionResult, res); err != nil {
			return worker.Outcome{Status: statusProto(codes.Internal, "worker sent an unparsable ActionResult: %v", err)}
		}
		out.Result = res
	} else if out.Status == nil || codes.Code(out.Status.Code) == codes.OK {
		return worker.Outcome{Status: statusProto(codes.Internal, "worker sent neither a result nor an error")}
	}
	return out
}
