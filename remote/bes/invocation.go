package bes

import (
	"sort"
	"strings"
	"time"

	"github.com/ferrule-build/ferrule/remote/bes/bep"
)

// State is where an invocation's event stream stands.
type State string

const (
	// Running: a stream is open and the last event has not come.
	Running State = "running"
	// Finished: the stream ended with its last event and nothing is missing.
	Finished State = "finished"
	// Partial: events are missing (a broken or truncated stream, a gap in
	// the sequence numbers, events over the bound, an undecodable event).
	Partial State = "partial"
)

// Target is one top-level target as the events describe it.
type Target struct {
	Label     string
	Kind      string // "cc_binary rule", ...
	Completed bool   // a TargetComplete event came
	Success   bool
	Aborted   string // the Aborted description, if the target was aborted
}

// Test is one test target's summary and attempts.
type Test struct {
	Label     string
	Status    string // PASSED, FAILED, ... (TestSummary.overall_status)
	Runs      int32
	Cached    int32
	Duration  time.Duration
	Attempts  []TestAttempt
	summaried bool
}

// TestAttempt is one TestResult event.
type TestAttempt struct {
	Run, Shard, Attempt int32
	Status              string
	Duration            time.Duration
	CachedLocally       bool
	CachedRemotely      bool
	Strategy            string
}

// Runner is one line of Bazel's action summary ("12 remote cache hit").
type Runner struct {
	Name     string
	Count    int32
	ExecKind string
}

// Invocation is what the server keeps of one Bazel invocation: a summary
// derived from its events, and the events themselves (bounded).
type Invocation struct {
	ID      string
	BuildID string

	Command     string
	Patterns    []string
	ToolVersion string
	User, Host  string
	Metadata    map[string]string // --build_metadata
	Started     time.Time
	Finished    time.Time
	Updated     time.Time // when the last event arrived
	HasExit     bool
	ExitCode    int32
	ExitName    string

	targets map[string]*Target
	tests   map[string]*Test

	// From BuildMetrics.
	ActionsCreated   int64
	ActionsExecuted  int64
	Runners          []Runner
	CriticalPathTime time.Duration
	WallTime         time.Duration
	// CriticalPath is the "critical path" log of BuildToolLogs, if Bazel
	// sent its contents.
	CriticalPath string

	// The stream.
	Events      int   // events stored
	EventBytes  int64 // bytes of events stored
	Dropped     int   // events acknowledged but not stored (over the bound)
	Unknown     int   // events of kinds the server does not read
	nextSeq     int64 // the next sequence number expected
	finished    bool  // the stream's last event (or its BuildComponentStreamFinished) came
	streamDone  bool  // its BuildComponentStreamFinished came: nothing may follow
	openStreams int
	broken      string   // why the last stream broke, until a retry finishes it
	missing     []string // permanent reasons events are missing

	events  [][]byte // the bazel_event Any values, in sequence order
	ExecLog []byte   // an uploaded execution log, if any
}

// State says whether the invocation is running, finished or partial.
func (inv *Invocation) State() State {
	switch {
	case inv.finished && len(inv.missing) == 0 && inv.Dropped == 0:
		return Finished
	case !inv.finished && inv.openStreams > 0 && len(inv.missing) == 0 && inv.Dropped == 0:
		return Running
	}
	return Partial
}

// PartialReasons says why the invocation is partial (empty if it is not).
func (inv *Invocation) PartialReasons() []string {
	var r []string
	r = append(r, inv.missing...)
	if inv.Dropped > 0 {
		r = append(r, plural(inv.Dropped, "event")+" over the server's bound were not stored")
	}
	if !inv.finished && inv.openStreams == 0 {
		if inv.broken != "" {
			r = append(r, "the stream broke before its last event: "+inv.broken)
		} else {
			r = append(r, "the stream ended before its last event")
		}
	}
	return r
}

// Targets returns the targets sorted by label.
func (inv *Invocation) Targets() []Target {
	out := make([]Target, 0, len(inv.targets))
	for _, t := range inv.targets {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}

// Tests returns the tests sorted by label.
func (inv *Invocation) Tests() []Test {
	out := make([]Test, 0, len(inv.tests))
	for _, t := range inv.tests {
		c := *t
		c.Attempts = append([]TestAttempt(nil), t.Attempts...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}

// TargetCount is the number of top-level targets.
func (inv *Invocation) TargetCount() int { return len(inv.targets) }

// Duration is the wall time from start to finish, or 0 if unknown.
func (inv *Invocation) Duration() time.Duration {
	if inv.Started.IsZero() || inv.Finished.IsZero() {
		return 0
	}
	return inv.Finished.Sub(inv.Started)
}

// Result is "success", "failed (NAME)" or "" while unknown.
func (inv *Invocation) Result() string {
	if !inv.HasExit {
		return ""
	}
	if inv.ExitCode == 0 {
		return "success"
	}
	if inv.ExitName != "" {
		return "failed (" + inv.ExitName + ")"
	}
	return "failed"
}

// RemoteHits is the number of actions served by the remote cache, from the
// action summary's "remote cache hit" runner.
func (inv *Invocation) RemoteHits() int64 {
	var n int64
	for _, r := range inv.Runners {
		if r.Name == "remote cache hit" {
			n += int64(r.Count)
		}
	}
	return n
}

// Misses is the number of processes that had to run (locally or remotely):
// every runner of the action summary except "total", "internal" and the
// cache hits.
func (inv *Invocation) Misses() int64 {
	var n int64
	for _, r := range inv.Runners {
		switch {
		case r.Name == "total", r.Name == "internal", strings.HasSuffix(r.Name, "cache hit"):
		default:
			n += int64(r.Count)
		}
	}
	return n
}

// HasMetrics reports whether BuildMetrics came (the action counts are known).
func (inv *Invocation) HasMetrics() bool { return inv.ActionsExecuted > 0 || len(inv.Runners) > 0 }

func (inv *Invocation) target(label string) *Target {
	t := inv.targets[label]
	if t == nil {
		t = &Target{Label: label}
		inv.targets[label] = t
	}
	return t
}

func (inv *Invocation) test(label string) *Test {
	t := inv.tests[label]
	if t == nil {
		t = &Test{Label: label}
		inv.tests[label] = t
	}
	return t
}

// apply folds one Bazel event into the summary.
func (inv *Invocation) apply(ev *bep.BuildEvent) {
	id := ev.GetId()
	switch p := ev.Payload.(type) {
	case *bep.BuildEvent_Started:
		s := p.Started
		inv.Command = s.GetCommand()
		inv.ToolVersion = s.GetBuildToolVersion()
		if s.GetUser() != "" {
			inv.User = s.GetUser()
		}
		if s.GetHost() != "" {
			inv.Host = s.GetHost()
		}
		switch {
		case s.GetStartTime() != nil:
			inv.Started = s.GetStartTime().AsTime()
		case s.GetStartTimeMillis() != 0:
			inv.Started = time.UnixMilli(s.GetStartTimeMillis())
		}
	case *bep.BuildEvent_Expanded:
		if pat := id.GetPattern(); pat != nil {
			inv.Patterns = append(inv.Patterns, pat.GetPattern()...)
		}
	case *bep.BuildEvent_WorkspaceStatus:
		for _, it := range p.WorkspaceStatus.GetItem() {
			switch it.GetKey() {
			case "BUILD_USER":
				if inv.User == "" {
					inv.User = it.GetValue()
				}
			case "BUILD_HOST":
				if inv.Host == "" {
					inv.Host = it.GetValue()
				}
			}
		}
	case *bep.BuildEvent_BuildMetadata:
		if inv.Metadata == nil {
			inv.Metadata = map[string]string{}
		}
		for k, v := range p.BuildMetadata.GetMetadata() {
			inv.Metadata[k] = v
		}
		// Build metadata names the user and host when the build says so
		// (--build_metadata=USER=... / HOST=...); it wins over Bazel's own.
		if v := inv.Metadata["USER"]; v != "" {
			inv.User = v
		}
		if v := inv.Metadata["HOST"]; v != "" {
			inv.Host = v
		}
	case *bep.BuildEvent_Configured:
		if tc := id.GetTargetConfigured(); tc != nil && tc.GetAspect() == "" {
			inv.target(tc.GetLabel()).Kind = p.Configured.GetTargetKind()
		}
	case *bep.BuildEvent_Completed:
		if tc := id.GetTargetCompleted(); tc != nil && tc.GetAspect() == "" {
			t := inv.target(tc.GetLabel())
			t.Completed = true
			t.Success = p.Completed.GetSuccess()
		}
	case *bep.BuildEvent_Aborted:
		desc := p.Aborted.GetReason().String()
		if d := p.Aborted.GetDescription(); d != "" {
			desc += ": " + d
		}
		switch {
		case id.GetTargetCompleted() != nil:
			inv.target(id.GetTargetCompleted().GetLabel()).Aborted = desc
		case id.GetTargetConfigured() != nil:
			inv.target(id.GetTargetConfigured().GetLabel()).Aborted = desc
		}
	case *bep.BuildEvent_TestResult:
		rid := id.GetTestResult()
		if rid == nil {
			break
		}
		r := p.TestResult
		a := TestAttempt{
			Run: rid.GetRun(), Shard: rid.GetShard(), Attempt: rid.GetAttempt(),
			Status:         r.GetStatus().String(),
			CachedLocally:  r.GetCachedLocally(),
			CachedRemotely: r.GetExecutionInfo().GetCachedRemotely(),
			Strategy:       r.GetExecutionInfo().GetStrategy(),
		}
		if d := r.GetTestAttemptDuration(); d != nil {
			a.Duration = d.AsDuration()
		} else {
			a.Duration = time.Duration(r.GetTestAttemptDurationMillis()) * time.Millisecond
		}
		t := inv.test(rid.GetLabel())
		t.Attempts = append(t.Attempts, a)
		if !t.summaried {
			t.Status = a.Status
		}
	case *bep.BuildEvent_TestSummary:
		sid := id.GetTestSummary()
		if sid == nil {
			break
		}
		t := inv.test(sid.GetLabel())
		t.summaried = true
		t.Status = p.TestSummary.GetOverallStatus().String()
		t.Runs = p.TestSummary.GetTotalRunCount()
		t.Cached = p.TestSummary.GetTotalNumCached()
		t.Duration = p.TestSummary.GetTotalRunDuration().AsDuration()
	case *bep.BuildEvent_Finished:
		f := p.Finished
		inv.HasExit = true
		if ec := f.GetExitCode(); ec != nil {
			inv.ExitCode, inv.ExitName = ec.GetCode(), ec.GetName()
		} else if !f.GetOverallSuccess() {
			inv.ExitCode = 1
		}
		switch {
		case f.GetFinishTime() != nil:
			inv.Finished = f.GetFinishTime().AsTime()
		case f.GetFinishTimeMillis() != 0:
			inv.Finished = time.UnixMilli(f.GetFinishTimeMillis())
		}
	case *bep.BuildEvent_BuildMetrics:
		m := p.BuildMetrics
		as := m.GetActionSummary()
		inv.ActionsCreated = as.GetActionsCreated()
		inv.ActionsExecuted = as.GetActionsExecuted()
		inv.Runners = inv.Runners[:0]
		for _, rc := range as.GetRunnerCount() {
			inv.Runners = append(inv.Runners, Runner{Name: rc.GetName(), Count: rc.GetCount(), ExecKind: rc.GetExecKind()})
		}
		inv.CriticalPathTime = m.GetTimingMetrics().GetCriticalPathTime().AsDuration()
		inv.WallTime = time.Duration(m.GetTimingMetrics().GetWallTimeInMs()) * time.Millisecond
	case *bep.BuildEvent_BuildToolLogs:
		for _, f := range p.BuildToolLogs.GetLog() {
			if f.GetName() == "critical path" && len(f.GetContents()) > 0 {
				inv.CriticalPath = truncate(string(f.GetContents()), 16<<10)
			}
		}
	case nil:
		inv.Unknown++
	}
	if ev.GetLastMessage() {
		inv.finished = true
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n…"
}

func plural(n int, what string) string {
	s := itoa(n) + " " + what
	if n != 1 {
		s += "s"
	}
	return s
}
