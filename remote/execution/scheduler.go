package execution

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/ferrule-build/ferrule/remote/ac"
	"github.com/ferrule-build/ferrule/remote/worker"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// platformSet is what a worker offers: each property name with the values it
// satisfies.
type platformSet map[string]map[string]bool

func newPlatformSet(props []*repb.Platform_Property) platformSet {
	ps := platformSet{}
	for _, p := range props {
		if ps[p.Name] == nil {
			ps[p.Name] = map[string]bool{}
		}
		ps[p.Name][p.Value] = true
	}
	return ps
}

// satisfies reports whether a worker offering ps can run an action that
// requires props: every required name/value must be offered, except the
// action's resource limits, which every worker applies.
func (ps platformSet) satisfies(props []*repb.Platform_Property) bool {
	for _, p := range props {
		if !ps[p.Name][p.Value] && !worker.IsLimitProperty(p.Name) {
			return false
		}
	}
	return true
}

// platformKey is a canonical string for a required platform: one queue each.
func platformKey(props []*repb.Platform_Property) string {
	parts := make([]string, len(props))
	for i, p := range props {
		parts[i] = p.Name + "=" + p.Value
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func formatPlatform(props []*repb.Platform_Property) string {
	if len(props) == 0 {
		return "{}"
	}
	return "{" + platformKey(props) + "}"
}

// job is one queued or running execution.
type job struct {
	op         *operation
	task       *worker.Task
	dedupKey   string // "" when the action must not be merged (do_not_cache)
	doNotCache bool
	priority   int32
	platform   []*repb.Platform_Property
	seq        uint64
	attempts   int
	leaseID    string
	worker     string // the worker holding the lease
	queuedAt   time.Time
	index      int // in its queue's heap
}

// jobQueue is one platform's queue: lowest priority value first, then FIFO.
type jobQueue struct {
	platform []*repb.Platform_Property
	jobs     jobHeap
}

type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority < h[j].priority
	}
	return h[i].seq < h[j].seq
}
func (h jobHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *jobHeap) Push(x any)   { j := x.(*job); j.index = len(*h); *h = append(*h, j) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	*h = old[:len(old)-1]
	j.index = -1
	return j
}

// workerReg is a registered worker (in-process or a gRPC session).
type workerReg struct {
	id       string
	platform platformSet
}

// enqueueLocked puts j on its platform's queue and wakes waiting workers.
func (s *Service) enqueueLocked(j *job) {
	key := platformKey(j.platform)
	q := s.queues[key]
	if q == nil {
		q = &jobQueue{platform: j.platform}
		s.queues[key] = q
	}
	if j.seq == 0 { // a requeued job keeps its place among its priority
		s.seq++
		j.seq = s.seq
	}
	j.leaseID = ""
	j.queuedAt = time.Now()
	heap.Push(&q.jobs, j)
	s.setStageLocked(j.op, repb.ExecutionStage_QUEUED)
	s.wakeLocked()
}

func (s *Service) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// anyWorkerMatchesLocked reports whether a registered worker could run an
// action that requires props.
func (s *Service) anyWorkerMatchesLocked(props []*repb.Platform_Property) bool {
	for _, w := range s.workers {
		if w.platform.satisfies(props) {
			return true
		}
	}
	return false
}

func (s *Service) registerWorker(id string, props []*repb.Platform_Property) *workerReg {
	w := &workerReg{id: id, platform: newPlatformSet(props)}
	s.mu.Lock()
	s.workers[w] = w
	s.mu.Unlock()
	s.log.Info("worker joined", "worker", id, "platform", formatPlatform(props))
	return w
}

func (s *Service) unregisterWorker(w *workerReg) {
	s.mu.Lock()
	delete(s.workers, w)
	s.mu.Unlock()
	s.log.Info("worker left", "worker", w.id)
}

// next blocks until a queued job that w can run is available and leases it
// to w. It returns ctx's error when ctx ends first.
func (s *Service) next(ctx context.Context, w *workerReg) (*job, string, error) {
	s.mu.Lock()
	for {
		var best *jobQueue
		for _, q := range s.queues {
			if len(q.jobs) == 0 || !w.platform.satisfies(q.platform) {
				continue
			}
			if best == nil || q.jobs.Less2(best.jobs) {
				best = q
			}
		}
		if best != nil {
			j := heap.Pop(&best.jobs).(*job)
			j.attempts++
			j.leaseID = newName("leases/")
			j.worker = w.id
			s.leases[j.leaseID] = j
			s.setStageLocked(j.op, repb.ExecutionStage_EXECUTING)
			s.mu.Unlock()
			s.log.Debug("leased", "action", j.task.ActionDigest.Hash, "worker", w.id, "attempt", j.attempts)
			return j, j.leaseID, nil
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
		s.mu.Lock()
	}
}

// Less2 compares the heads of two non-empty queues.
func (h jobHeap) Less2(other jobHeap) bool {
	a, b := h[0], other[0]
	if a.priority != b.priority {
		return a.priority < b.priority
	}
	return a.seq < b.seq
}

// leaseLost puts a leased job back on the queue (its worker died, lost its
// stream or missed heartbeats), or fails it after MaxAttempts.
func (s *Service) leaseLost(leaseID string, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.leases[leaseID]
	if !ok {
		return
	}
	delete(s.leases, leaseID)
	if j.attempts >= s.opts.MaxAttempts {
		s.log.Warn("action failed on every attempt", "action", j.task.ActionDigest.Hash, "attempts", j.attempts, "why", why)
		s.finishLocked(j, &repb.ExecuteResponse{Status: statusProto(codes.Unavailable,
			"action lost its worker %d times (last: %s)", j.attempts, why)})
		return
	}
	s.log.Warn("lease lost, requeueing action", "action", j.task.ActionDigest.Hash, "attempt", j.attempts, "why", why)
	s.enqueueLocked(j)
}

// complete records the outcome of a lease. An outcome for a lease that is no
// longer current (it was already given up and requeued) is ignored.
func (s *Service) complete(leaseID string, out worker.Outcome) {
	s.mu.Lock()
	j, ok := s.leases[leaseID]
	if ok {
		delete(s.leases, leaseID)
	}
	s.mu.Unlock()
	if !ok {
		s.log.Info("ignoring the outcome of a lease that is no longer current", "lease", leaseID)
		return
	}
	st := out.Status
	if st == nil {
		st = &spb.Status{}
	}
	if limit := worker.RefusedLimit(st); limit != "" {
		s.refusals.WithLabelValues(limit).Inc()
	}
	res := out.Result
	if res != nil {
		// A worker's result is checked as UpdateActionResult checks a
		// client's: a malformed one is neither cached nor served.
		if err := ac.Validate(j.task.Function, res); err != nil {
			s.log.Warn("worker sent a malformed ActionResult", "action", j.task.ActionDigest.Hash, "err", err)
			if codes.Code(st.Code) == codes.OK {
				st = statusProto(codes.Internal, "the worker sent a malformed ActionResult: %v", err)
			}
			res = nil
		}
	}
	if res != nil {
		if res.ExecutionMetadata == nil {
			res.ExecutionMetadata = &repb.ExecutedActionMetadata{}
		}
		res.ExecutionMetadata.QueuedTimestamp = timestamppb.New(j.queuedAt)
	}
	resp := &repb.ExecuteResponse{Result: res, Status: st}
	if codes.Code(st.Code) == codes.OK && res != nil && res.ExitCode == 0 && !j.doNotCache {
		if err := s.writeActionResult(j.task, res); err != nil {
			s.log.Error("writing the action cache", "action", j.task.ActionDigest.Hash, "err", err)
			resp.Message = fmt.Sprintf("the result could not be cached: %v", err)
		}
	}
	s.mu.Lock()
	s.finishLocked(j, resp)
	s.mu.Unlock()
}

// finishLocked completes j's operation and forgets j.
func (s *Service) finishLocked(j *job, resp *repb.ExecuteResponse) {
	if j.dedupKey != "" && s.inflight[j.dedupKey] == j {
		delete(s.inflight, j.dedupKey)
	}
	s.completeOpLocked(j.op, resp)
}
