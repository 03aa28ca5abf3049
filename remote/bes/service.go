// Package bes is Ferrule's Build Event Service: it implements
// google.devtools.build.v1.PublishBuildEvent, the service Bazel streams its
// build events to with --bes_backend=grpc://HOST:PORT, and keeps each
// invocation's events and a summary of them in a bounded Store for the web
// page (package web) to show.
//
// Bazel numbers the events of an invocation's stream from 1 and expects
// each to be acknowledged in order; after a broken stream it opens a new one
// and sends again every event not yet acknowledged. The service therefore
// acknowledges an event it already has without storing it twice, records a
// gap in the sequence numbers as missing events (and goes on), refuses new
// events for an invocation whose stream already finished
// (FAILED_PRECONDITION), and marks an invocation whose stream broke, lost
// events or went over the bound as partial.
package bes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	bpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ferrule-build/ferrule/remote/bes/bep"
)

// bazelEventType is the type URL suffix of Bazel's events in bazel_event.
const bazelEventType = "build_event_stream.BuildEvent"

// Options configure a Service.
type Options struct {
	// ReadOnly refuses publishing with PERMISSION_DENIED.
	ReadOnly bool
	Logger   *slog.Logger
}

// Service implements PublishBuildEvent onto a Store.
type Service struct {
	st   *Store
	opts Options
	log  *slog.Logger
}

// New returns a service that keeps what it is sent in st.
func New(st *Store, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{st: st, opts: opts, log: opts.Logger}
}

// Register registers the service on g.
func (s *Service) Register(g *grpc.Server) { bpb.RegisterPublishBuildEventServer(g, s) }

// ServiceName is the full gRPC name of the service.
const ServiceName = "google.devtools.build.v1.PublishBuildEvent"

var errReadOnly = status.Error(codes.PermissionDenied, "this server is read-only (--read_only): it does not accept build events")

// PublishLifecycleEvent records the lifecycle events Bazel sends besides the
// stream (--bes_lifecycle_events): they name the build an invocation
// belongs to; the results come from the stream.
func (s *Service) PublishLifecycleEvent(ctx context.Context, req *bpb.PublishLifecycleEventRequest) (*emptypb.Empty, error) {
	if s.opts.ReadOnly {
		return nil, errReadOnly
	}
	obe := req.GetBuildEvent()
	if obe == nil || obe.GetStreamId() == nil || obe.GetStreamId().GetBuildId() == "" {
		return nil, status.Error(codes.InvalidArgument, "lifecycle event without a build_event.stream_id.build_id")
	}
	if id := obe.GetStreamId().GetInvocationId(); id != "" {
		s.st.lifecycle(id, obe.GetStreamId().GetBuildId())
	}
	return &emptypb.Empty{}, nil
}

// PublishBuildToolEventStream receives one invocation's ordered events and
// acknowledges each in order.
func (s *Service) PublishBuildToolEventStream(stream bpb.PublishBuildEvent_PublishBuildToolEventStreamServer) (err error) {
	if s.opts.ReadOnly {
		return errReadOnly
	}
	var sid *bpb.StreamId
	defer func() {
		if sid != nil {
			s.st.closeStream(sid.GetInvocationId(), err)
			if err != nil {
				s.log.Warn("build event stream broke", "invocation", sid.GetInvocationId(), "error", err)
			}
		}
	}()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return err
			}
			return status.Errorf(codes.Unknown, "receiving build events: %v", err)
		}
		obe := req.GetOrderedBuildEvent()
		if obe == nil {
			return status.Error(codes.InvalidArgument, "request without ordered_build_event")
		}
		id := obe.GetStreamId()
		if id.GetInvocationId() == "" {
			return status.Error(codes.InvalidArgument, "ordered_build_event without stream_id.invocation_id")
		}
		if sid == nil {
			sid = id
			s.st.openStream(id.GetInvocationId(), id.GetBuildId())
		} else if id.GetInvocationId() != sid.GetInvocationId() || id.GetBuildId() != sid.GetBuildId() {
			return status.Errorf(codes.InvalidArgument, "stream_id changed within a stream: invocation %q build %q, then invocation %q build %q",
				sid.GetInvocationId(), sid.GetBuildId(), id.GetInvocationId(), id.GetBuildId())
		}
		if err := s.st.accept(id.GetInvocationId(), obe.GetSequenceNumber(), obe.GetEvent()); err != nil {
			return err
		}
		if err := stream.Send(&bpb.PublishBuildToolEventStreamResponse{StreamId: id, SequenceNumber: obe.GetSequenceNumber()}); err != nil {
			return err
		}
	}
}

func (s *Store) lifecycle(id, buildID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.getLocked(id, true)
	inv.BuildID = buildID
	inv.Updated = s.now()
}

func (s *Store) openStream(id, buildID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.getLocked(id, true)
	inv.openStreams++
	if buildID != "" {
		inv.BuildID = buildID
	}
	inv.Updated = s.now()
}

func (s *Store) closeStream(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.invs[id]
	if inv == nil {
		return
	}
	if inv.openStreams > 0 {
		inv.openStreams--
	}
	if inv.finished {
		inv.broken = ""
	} else if err != nil {
		inv.broken = status.Convert(err).Message()
	}
}

// accept takes event number seq of invocation id. A nil error means the
// event may be acknowledged.
func (s *Store) accept(id string, seq int64, ev *bpb.BuildEvent) error {
	if seq <= 0 {
		return status.Errorf(codes.InvalidArgument, "sequence_number %d: sequence numbers start at 1", seq)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.getLocked(id, true)
	if seq < inv.nextSeq {
		return nil // sent again after a retry: acknowledged again, kept once
	}
	if inv.streamDone {
		return status.Errorf(codes.FailedPrecondition, "invocation %s already finished its stream at sequence number %d; event %d refused", id, inv.nextSeq-1, seq)
	}
	var be *bep.BuildEvent
	var raw []byte
	switch e := ev.GetEvent().(type) {
	case *bpb.BuildEvent_ComponentStreamFinished:
		inv.finished, inv.streamDone = true, true
	case *bpb.BuildEvent_BazelEvent:
		if !strings.HasSuffix(e.BazelEvent.GetTypeUrl(), "/"+bazelEventType) {
			inv.Unknown++
			break
		}
		raw = e.BazelEvent.GetValue()
		be = &bep.BuildEvent{}
		if err := proto.Unmarshal(raw, be); err != nil {
			inv.missing = append(inv.missing, fmt.Sprintf("event %d could not be decoded", seq))
			return status.Errorf(codes.InvalidArgument, "event %d of invocation %s: bazel_event is not a valid %s: %v", seq, id, bazelEventType, err)
		}
	default:
		inv.Unknown++ // console output, lifecycle kinds, other tools' events
	}
	if seq > inv.nextSeq {
		inv.missing = append(inv.missing, fmt.Sprintf("events %d to %d never came", inv.nextSeq, seq-1))
	}
	inv.nextSeq = seq + 1
	inv.Updated = s.now()
	if be == nil {
		return nil
	}
	if inv.Events >= s.lim.MaxEvents || inv.EventBytes+int64(len(raw)) > s.lim.MaxEventBytes {
		inv.Dropped++
		if essential(be) {
			inv.apply(be)
		}
		return nil
	}
	inv.events = append(inv.events, append([]byte(nil), raw...))
	inv.Events++
	inv.EventBytes += int64(len(raw))
	s.totalBytes += int64(len(raw))
	inv.apply(be)
	if s.totalBytes > s.lim.MaxTotalBytes {
		s.evictLocked(id)
	}
	return nil
}

// essential says whether an event over the bound still goes into the
// summary: the ones that say who built what and how it ended.
func essential(be *bep.BuildEvent) bool {
	if be.GetLastMessage() {
		return true
	}
	switch be.Payload.(type) {
	case *bep.BuildEvent_Started, *bep.BuildEvent_Finished, *bep.BuildEvent_BuildMetrics,
		*bep.BuildEvent_BuildMetadata, *bep.BuildEvent_BuildToolLogs:
		return true
	}
	return false
}
