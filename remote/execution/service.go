// Package execution is Ferrule's REAPI Execution service and its scheduler.
//
// Execute looks the action up in the Action Cache first (unless
// skip_cache_lookup or do_not_cache), checks that the Action, the Command and
// every blob of the input root are in the CAS, and queues the action on the
// queue of its platform (Action.platform, else Command.platform), ordered by
// ExecutionPolicy.priority (lower runs sooner) and then arrival. Identical
// actions in flight at the same time are merged into one operation (unless
// do_not_cache). Workers — in-process (StartLocalWorkers) or `ferrule worker`
// processes over the Scheduler gRPC service of package workerpb — take
// actions whose platform they satisfy; the service writes successful results
// to the Action Cache. A worker that dies, loses its stream or misses its
// heartbeats has its actions requeued for another worker.
//
// The service reads and writes through the server's store (server.Stack):
// Action, Command and Directory blobs with store.ReadBlob (capped, verified),
// cache hits through the Complete decorator, so a result whose outputs were
// evicted is run again rather than served; New adds Complete and Verifying
// when it is given a bare backend.
//
// Nothing a client or a worker sends may exhaust the service: an input root
// is checked at admission against Options.InputLimits (depth, distinct
// directories, and paths and bytes counted per path, as a worker writes
// them), and workers check the same limits and count materialising inputs
// against the action's timeout; a worker's ActionResult is validated like
// UpdateActionResult's before it is cached; finished operations are kept
// for OperationRetention, at most MaxRetainedOperations of them.
//
// Every error about an action (missing inputs, bad Command, timeouts,
// unsupported platform) is reported in ExecuteResponse.status of a done
// Operation, never in Operation.error; only a malformed ExecuteRequest itself
// (bad action digest, unknown digest function) fails the RPC.
package execution

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/clientlimit"
	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/worker"
	"github.com/ferrule-build/ferrule/remote/workerpb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// Options configure a Service. Zero values take the defaults shown.
type Options struct {
	// DefaultTimeout applies to actions without Action.timeout (15m).
	DefaultTimeout time.Duration
	// MaxTimeout is the largest Action.timeout accepted (3h); larger ones
	// are INVALID_ARGUMENT.
	MaxTimeout time.Duration
	// MaxAttempts is how often an action is given to a worker before it
	// fails with UNAVAILABLE because its workers kept dying (3).
	MaxAttempts int
	// HeartbeatInterval is how often remote workers must send a message;
	// a session silent for 3 intervals is dropped (10s).
	HeartbeatInterval time.Duration
	// OperationRetention is how long finished operations stay available to
	// WaitExecution (10m).
	OperationRetention time.Duration
	// MaxRetainedOperations bounds how many finished operations are kept
	// for WaitExecution; past it the oldest are forgotten first (10000).
	MaxRetainedOperations int
	// ProgressInterval is how often an Execute/WaitExecution stream is sent
	// the current state of a still-running operation as a keepalive (30s).
	ProgressInterval time.Duration
	// InputLimits bound the input root of an action, checked at admission
	// and by in-process workers; refusals are INVALID_ARGUMENT naming the
	// limit and counted in ferrule_execution_refusals_total{limit}, as
	// are actions a worker fails for their outputs' size
	// (worker.LimitOutputBytes, RESOURCE_EXHAUSTED).
	InputLimits worker.Limits
	// Streams caps the Execute and WaitExecution streams open at once, in
	// all and per client (RESOURCE_EXHAUSTED past them); zero values take
	// clientlimit.ExecuteStreams' defaults.
	Streams clientlimit.Limits
	// Registerer, if set, is where the service's metrics are registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Service implements the REAPI Execution service and the worker Scheduler
// service. Create it with New.
type Service struct {
	repb.UnimplementedExecutionServer
	workerpb.UnimplementedSchedulerServer

	st   store.Store
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	ops      map[string]*operation
	finished list.List       // finished operations, oldest first
	inflight map[string]*job // dedup key -> job
	queues   map[string]*jobQueue
	leases   map[string]*job
	workers  map[*workerReg]*workerReg
	wake     chan struct{}
	seq      uint64

	refusals *prometheus.CounterVec
	streams  *clientlimit.Limiter
}

// New returns an execution service over st. It runs nothing until workers
// join: call StartLocalWorkers for in-process workers, and/or register the
// service on a gRPC server (Register) for `ferrule worker` processes.
func New(st store.Store, opts Options) *Service {
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = 15 * time.Minute
	}
	if opts.MaxTimeout <= 0 {
		opts.MaxTimeout = 3 * time.Hour
	}
	if opts.DefaultTimeout > opts.MaxTimeout {
		opts.DefaultTimeout = opts.MaxTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 3
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 10 * time.Second
	}
	if opts.OperationRetention <= 0 {
		opts.OperationRetention = 10 * time.Minute
	}
	if opts.MaxRetainedOperations <= 0 {
		opts.MaxRetainedOperations = 10_000
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Service{
		st: store.WithCompleteness(store.WithVerification(st)), opts: opts, log: log.With("service", "execution"),
		ops: map[string]*operation{}, inflight: map[string]*job{}, queues: map[string]*jobQueue{},
		leases: map[string]*job{}, workers: map[*workerReg]*workerReg{}, wake: make(chan struct{}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrule_execution_refusals_total",
			Help: "Execute requests refused because their input root exceeds a limit (at admission or by a worker), or whose outputs exceed a worker's limit, by limit.",
		}, []string{"limit"}),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.refusals); err != nil {
			s.log.Warn("registering execution metrics", "err", err)
		}
	}
	streams, err := clientlimit.New(clientlimit.ExecuteStreams, opts.Streams, opts.Registerer)
	if err != nil {
		s.log.Warn("registering execution metrics", "err", err)
		streams, _ = clientlimit.New(clientlimit.ExecuteStreams, opts.Streams, nil)
	}
	s.streams = streams
	return s
}

// Refusals is how many Execute requests were refused for limit.
func (s *Service) Refusals(limit string) float64 {
	m := &dto.Metric{}
	if err := s.refusals.WithLabelValues(limit).Write(m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// Register adds the Execution service and the worker Scheduler service to s.
func (s *Service) Register(srv *grpc.Server) {
	repb.RegisterExecutionServer(srv, s)
	workerpb.RegisterSchedulerServer(srv, s)
}

// operation is one long-running execution as clients see it.
type operation struct {
	name     string
	digest   *repb.Digest
	stage    repb.ExecutionStage_Value
	done     bool
	response *repb.ExecuteResponse
	doneAt   time.Time
	changed  chan struct{} // closed and replaced on every change
}

func newName(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func statusProto(code codes.Code, format string, args ...any) *spb.Status {
	return status.Newf(code, format, args...).Proto()
}

// newOpLocked creates an operation and forgets finished ones past retention.
func (s *Service) newOpLocked(d *repb.Digest) *operation {
	s.forgetLocked(time.Now())
	op := &operation{name: newName("operations/"), digest: d, stage: repb.ExecutionStage_CACHE_CHECK, changed: make(chan struct{})}
	s.ops[op.name] = op
	return op
}

func (s *Service) setStageLocked(op *operation, stage repb.ExecutionStage_Value) {
	if op.done || op.stage == stage {
		return
	}
	op.stage = stage
	close(op.changed)
	op.changed = make(chan struct{})
}

func (s *Service) completeOpLocked(op *operation, resp *repb.ExecuteResponse) {
	if op.done {
		return
	}
	if resp.Status == nil {
		resp.Status = &spb.Status{}
	}
	op.done = true
	op.stage = repb.ExecutionStage_COMPLETED
	op.response = resp
	op.doneAt = time.Now()
	close(op.changed)
	op.changed = make(chan struct{})
	s.finished.PushBack(op)
	s.forgetLocked(op.doneAt)
}

// forgetLocked drops finished operations older than the retention, and the
// oldest beyond the count bound. Operations finish in time order, so this
// only looks at the front of s.finished.
func (s *Service) forgetLocked(now time.Time) {
	for el := s.finished.Front(); el != nil; el = s.finished.Front() {
		op := el.Value.(*operation)
		if s.finished.Len() <= s.opts.MaxRetainedOperations && now.Sub(op.doneAt) <= s.opts.OperationRetention {
			return
		}
		s.finished.Remove(el)
		delete(s.ops, op.name)
	}
}

// snapshotLocked renders op as a longrunning Operation.
func (s *Service) snapshotLocked(op *operation) (*longrunningpb.Operation, error) {
	md, err := anypb.New(&repb.ExecuteOperationMetadata{Stage: op.stage, ActionDigest: op.digest})
	if err != nil {
		return nil, err
	}
	out := &longrunningpb.Operation{Name: op.name, Metadata: md, Done: op.done}
	if op.done {
		resp, err := anypb.New(op.response)
		if err != nil {
			return nil, err
		}
		out.Result = &longrunningpb.Operation_Response{Response: resp}
	}
	return out, nil
}

type opStream interface {
	Send(*longrunningpb.Operation) error
	Context() context.Context
}

// follow streams op's states until it is done or the client goes away.
func (s *Service) follow(op *operation, stream opStream) error {
	ctx := stream.Context()
	var lastStage repb.ExecutionStage_Value = -1
	ticker := time.NewTicker(s.opts.ProgressInterval)
	defer ticker.Stop()
	force := false
	for {
		s.mu.Lock()
		snap, err := s.snapshotLocked(op)
		stage, done, changed := op.stage, op.done, op.changed
		s.mu.Unlock()
		if err != nil {
			return status.Errorf(codes.Internal, "encoding operation: %v", err)
		}
		if stage != lastStage || done || force {
			if err := stream.Send(snap); err != nil {
				return err
			}
			lastStage = stage
			force = false
		}
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ticker.C:
			force = true
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// Execute implements REAPI Execution.Execute.
func (s *Service) Execute(req *repb.ExecuteRequest, stream repb.Execution_ExecuteServer) error {
	release, err := s.streams.Acquire(stream.Context(), clientlimit.GRPCClient(stream.Context()))
	if err != nil {
		return err
	}
	defer release()
	op, err := s.admit(stream.Context(), req)
	if err != nil {
		return err
	}
	return s.follow(op, stream)
}

// WaitExecution implements REAPI Execution.WaitExecution.
func (s *Service) WaitExecution(req *repb.WaitExecutionRequest, stream repb.Execution_WaitExecutionServer) error {
	release, err := s.streams.Acquire(stream.Context(), clientlimit.GRPCClient(stream.Context()))
	if err != nil {
		return err
	}
	defer release()
	s.mu.Lock()
	op, ok := s.ops[req.GetName()]
	s.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "operation %q not found (unknown or expired)", req.GetName())
	}
	return s.follow(op, stream)
}

// failedOp returns a done operation whose response carries st.
func (s *Service) failedOp(d *repb.Digest, st *spb.Status) *operation {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.newOpLocked(d)
	s.completeOpLocked(op, &repb.ExecuteResponse{Status: st})
	return op
}

// Stats is a snapshot of the scheduler for /status pages and tests.
type Stats struct {
	Queued, Running, Workers, Operations int
}

// Stats reports the scheduler's current load.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Running: len(s.leases), Workers: len(s.workers), Operations: len(s.ops)}
	for _, q := range s.queues {
		st.Queued += len(q.jobs)
	}
	return st
}

func keyString(instance string, fn repb.DigestFunction_Value, d *repb.Digest) string {
	return fmt.Sprintf("%s\x00%s\x00%s/%d", instance, fn, d.Hash, d.SizeBytes)
}
