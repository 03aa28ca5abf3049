package bes

import (
	"sort"
	"strconv"
	"sync"
	"time"
)

// Limits bound what the server keeps. Zero values take the defaults shown.
type Limits struct {
	// MaxInvocations is how many invocations are kept (1000); the oldest
	// go first.
	MaxInvocations int
	// MaxEvents is how many events one invocation keeps (20000); later
	// ones are acknowledged, folded into the summary only if they carry
	// the build's result or metrics, and counted as dropped.
	MaxEvents int
	// MaxEventBytes bounds the bytes of one invocation's events (8 MiB),
	// the same way.
	MaxEventBytes int64
	// MaxTotalBytes bounds the events and execution logs of all
	// invocations together (256 MiB); the oldest invocations go first.
	MaxTotalBytes int64
	// MaxExecLogBytes bounds an uploaded execution log (32 MiB).
	MaxExecLogBytes int64
	// Retention is how long an invocation is kept after its last event
	// (7 days).
	Retention time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxInvocations <= 0 {
		l.MaxInvocations = 1000
	}
	if l.MaxEvents <= 0 {
		l.MaxEvents = 20000
	}
	if l.MaxEventBytes <= 0 {
		l.MaxEventBytes = 8 << 20
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = 256 << 20
	}
	if l.MaxExecLogBytes <= 0 {
		l.MaxExecLogBytes = 32 << 20
	}
	if l.Retention <= 0 {
		l.Retention = 7 * 24 * time.Hour
	}
	return l
}

// Store keeps invocations in memory, within Limits.
type Store struct {
	lim Limits
	now func() time.Time

	mu         sync.Mutex
	invs       map[string]*Invocation
	created    map[string]uint64 // insertion order, for eviction
	seq        uint64
	totalBytes int64
	evicted    int64
}

// NewStore returns an empty store.
func NewStore(lim Limits) *Store {
	return &Store{lim: lim.withDefaults(), now: time.Now, invs: map[string]*Invocation{}, created: map[string]uint64{}}
}

// Limits returns the store's limits, defaults filled in.
func (s *Store) Limits() Limits { return s.lim }

// getLocked returns the invocation id, creating it if create is set.
func (s *Store) getLocked(id string, create bool) *Invocation {
	inv := s.invs[id]
	if inv == nil && create {
		inv = &Invocation{ID: id, nextSeq: 1, targets: map[string]*Target{}, tests: map[string]*Test{}, Updated: s.now()}
		s.invs[id] = inv
		s.seq++
		s.created[id] = s.seq
		s.evictLocked(id)
	}
	return inv
}

// evictLocked drops expired invocations and the oldest ones beyond the
// count and byte bounds, never keep.
func (s *Store) evictLocked(keep string) {
	cutoff := s.now().Add(-s.lim.Retention)
	for id, inv := range s.invs {
		if id != keep && inv.openStreams == 0 && inv.Updated.Before(cutoff) {
			s.dropLocked(id)
		}
	}
	if len(s.invs) <= s.lim.MaxInvocations && s.totalBytes <= s.lim.MaxTotalBytes {
		return
	}
	ids := make([]string, 0, len(s.invs))
	for id := range s.invs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return s.created[ids[i]] < s.created[ids[j]] })
	for _, id := range ids {
		if len(s.invs) <= s.lim.MaxInvocations && s.totalBytes <= s.lim.MaxTotalBytes {
			break
		}
		if id != keep && s.invs[id].openStreams == 0 {
			s.dropLocked(id)
		}
	}
}

func (s *Store) dropLocked(id string) {
	inv := s.invs[id]
	s.totalBytes -= inv.EventBytes + int64(len(inv.ExecLog))
	delete(s.invs, id)
	delete(s.created, id)
	s.evicted++
}

// Snapshot is a copy of an invocation, safe to read while events arrive.
type Snapshot struct {
	*Invocation
	State          State
	PartialReasons []string
	TargetList     []Target
	TestList       []Test
}

func (s *Store) snapshotLocked(inv *Invocation) Snapshot {
	c := *inv
	c.Patterns = append([]string(nil), inv.Patterns...)
	c.Runners = append([]Runner(nil), inv.Runners...)
	c.Metadata = make(map[string]string, len(inv.Metadata))
	for k, v := range inv.Metadata {
		c.Metadata[k] = v
	}
	c.events = nil
	c.ExecLog = nil
	c.targets, c.tests = nil, nil
	return Snapshot{Invocation: &c, State: inv.State(), PartialReasons: inv.PartialReasons(), TargetList: inv.Targets(), TestList: inv.Tests()}
}

// Get returns a snapshot of invocation id.
func (s *Store) Get(id string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.invs[id]
	if inv == nil {
		return Snapshot{}, false
	}
	return s.snapshotLocked(inv), true
}

// Summary is one line of the invocation list.
type Summary struct {
	ID, Command, User, Host, Result string
	Patterns                        []string
	State                           State
	Started                         time.Time
	Duration                        time.Duration
	Targets                         int
	ActionsExecuted                 int64
	RemoteHits, Misses              int64
	HasMetrics                      bool
	HasExecLog                      bool
	updated                         uint64
}

// List returns the invocations, newest first, at most limit of them (all if
// limit <= 0).
func (s *Store) List(limit int) []Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evictLocked("")
	out := make([]Summary, 0, len(s.invs))
	for id, inv := range s.invs {
		out = append(out, Summary{
			ID: id, Command: inv.Command, User: inv.User, Host: inv.Host, Result: inv.Result(),
			Patterns: inv.Patterns, State: inv.State(), Started: inv.Started, Duration: inv.Duration(),
			Targets: len(inv.targets), ActionsExecuted: inv.ActionsExecuted,
			RemoteHits: inv.RemoteHits(), Misses: inv.Misses(), HasMetrics: inv.HasMetrics(),
			HasExecLog: len(inv.ExecLog) > 0, updated: s.created[id],
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].updated > out[j].updated })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Events returns a copy of the stored bazel events of invocation id.
func (s *Store) Events(id string) ([][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.invs[id]
	if inv == nil {
		return nil, false
	}
	return append([][]byte(nil), inv.events...), true
}

// ErrExecLogTooLarge is returned by SetExecLog for a log over the bound.
type ErrExecLogTooLarge struct{ Size, Max int64 }

func (e ErrExecLogTooLarge) Error() string {
	return "execution log of " + strconv.FormatInt(e.Size, 10) + " bytes is over the bound of " + strconv.FormatInt(e.Max, 10)
}

// SetExecLog stores an execution log for invocation id, which must exist.
func (s *Store) SetExecLog(id string, log []byte) (bool, error) {
	if int64(len(log)) > s.lim.MaxExecLogBytes {
		return false, ErrExecLogTooLarge{int64(len(log)), s.lim.MaxExecLogBytes}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.invs[id]
	if inv == nil {
		return false, nil
	}
	s.totalBytes += int64(len(log)) - int64(len(inv.ExecLog))
	inv.ExecLog = log
	s.evictLocked(id)
	return true, nil
}

// ExecLog returns invocation id's execution log, if one was uploaded.
func (s *Store) ExecLog(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inv := s.invs[id]; inv != nil {
		return inv.ExecLog
	}
	return nil
}

// StoreStats describe the store as a whole.
type StoreStats struct {
	Invocations int
	Bytes       int64
	Evicted     int64
}

// Stats returns the store's fill and evictions.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StoreStats{Invocations: len(s.invs), Bytes: s.totalBytes, Evicted: s.evicted}
}

func itoa(n int) string { return strconv.Itoa(n) }
