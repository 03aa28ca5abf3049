package worker

import (
	"fmt"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ActionLimits bound what a running action may use; the sandbox sets them
// as rlimits of its first process (inherited by every process it starts).
// Zero fields take the defaults shown. An action may ask for lower limits
// with the platform properties below; a higher value is capped at the
// worker's.
type ActionLimits struct {
	// MemoryBytes is the address space of each process, RLIMIT_AS (16 GiB).
	MemoryBytes int64
	// Processes is the number of processes of the action's uid,
	// RLIMIT_NPROC (4096). Under a root worker every action runs as
	// ActionUID, so the count is shared by the actions running at once.
	Processes int64
	// FileBytes is the largest file an action may write, RLIMIT_FSIZE
	// (16 GiB): a process writing past it gets SIGXFSZ.
	FileBytes int64
	// OutputBytes is the total size of the outputs one action may make the
	// worker upload: its output files (counted per path, files of output
	// directories included), the Tree messages of its output directories,
	// and its stdout and stderr (64 GiB). An action
	// past it fails with RESOURCE_EXHAUSTED and nothing is uploaded.
	OutputBytes int64
}

// Platform properties an action sets its limits with; values are decimal
// integers (bytes, processes). The scheduler does not match workers on
// them.
const (
	PropMaxMemory    = "ferrule-max-memory-bytes"
	PropMaxProcesses = "ferrule-max-processes"
	PropMaxFileSize  = "ferrule-max-file-bytes"
	PropMaxOutput    = "ferrule-max-output-bytes"
)

// LimitOutputBytes names ActionLimits.OutputBytes, as the flags spell it
// and as /metrics labels its refusals.
const LimitOutputBytes = "action_max_output_bytes"

// IsLimitProperty reports whether a platform property name is one of the
// action limits rather than something a worker offers.
func IsLimitProperty(name string) bool {
	return name == PropMaxMemory || name == PropMaxProcesses || name == PropMaxFileSize || name == PropMaxOutput
}

// WithDefaults returns l with its zero fields set to the defaults.
func (l ActionLimits) WithDefaults() ActionLimits {
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = 16 << 30
	}
	if l.Processes <= 0 {
		l.Processes = 4096
	}
	if l.FileBytes <= 0 {
		l.FileBytes = 16 << 30
	}
	if l.OutputBytes <= 0 {
		l.OutputBytes = 64 << 30
	}
	return l
}

// ForAction returns the limits for an action with the given platform
// properties: the worker's, lowered where a property asks.
func (l ActionLimits) ForAction(props []*repb.Platform_Property) (ActionLimits, error) {
	l = l.WithDefaults()
	for _, p := range props {
		var field *int64
		switch p.Name {
		case PropMaxMemory:
			field = &l.MemoryBytes
		case PropMaxProcesses:
			field = &l.Processes
		case PropMaxFileSize:
			field = &l.FileBytes
		case PropMaxOutput:
			field = &l.OutputBytes
		default:
			continue
		}
		v, err := strconv.ParseInt(p.Value, 10, 64)
		if err != nil || v <= 0 {
			return l, invalidf("platform property %s=%q: want a positive integer", p.Name, p.Value)
		}
		*field = min(*field, v)
	}
	return l, nil
}

func (l ActionLimits) apply() error {
	for _, r := range []struct {
		res  int
		name string
		v    int64
	}{{unix.RLIMIT_AS, "RLIMIT_AS", l.MemoryBytes}, {unix.RLIMIT_NPROC, "RLIMIT_NPROC", l.Processes}, {unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", l.FileBytes}} {
		if r.v <= 0 {
			continue
		}
		v := uint64(r.v)
		// Without CAP_SYS_RESOURCE (a worker that is not root) a hard
		// limit cannot be raised: stay below the current one.
		var cur unix.Rlimit
		if err := unix.Getrlimit(r.res, &cur); err == nil && cur.Max < v {
			v = cur.Max
		}
		if err := unix.Setrlimit(r.res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("%s %d: %w", r.name, r.v, err)
		}
	}
	return nil
}

// platformOf is the platform an action runs with: Action.platform, else
// Command.platform (as the scheduler routes it).
func platformOf(t *Task) []*repb.Platform_Property {
	if p := t.Action.GetPlatform().GetProperties(); len(p) > 0 {
		return p
	}
	return t.Command.GetPlatform().GetProperties()
}

// limitDomain is the ErrorInfo domain of a status refusing an action for
// one of the worker's limits; its metadata "limit" names the limit.
const limitDomain = "ferrule.worker"

// OutputLimitStatus is the status of an action whose outputs exceed
// ActionLimits.OutputBytes: RESOURCE_EXHAUSTED with msg, and an ErrorInfo
// naming the limit so the execution service can count the refusal
// (RefusedLimit) whichever worker reports it.
func OutputLimitStatus(msg string) *spb.Status {
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "LIMIT_EXCEEDED", Domain: limitDomain,
		Metadata: map[string]string{"limit": LimitOutputBytes}}); err == nil {
		st = d
	}
	return st.Proto()
}

// RefusedLimit returns the limit a worker's status names (see
// OutputLimitStatus), or "".
func RefusedLimit(st *spb.Status) string {
	if st == nil {
		return ""
	}
	for _, d := range status.FromProto(st).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.Domain == limitDomain {
			return ei.Metadata["limit"]
		}
	}
	return ""
}
