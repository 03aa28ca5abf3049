package execution

import (
	"sort"
	"strconv"
	"time"
)

// QueueState is one platform's queue in a Snapshot.
type QueueState struct {
	Platform string // "{OSFamily=linux}"
	Queued   int
	Oldest   time.Duration // how long the longest-waiting action has waited
}

// WorkerState is one registered worker in a Snapshot.
type WorkerState struct {
	ID       string
	Platform string   // the properties it offers
	Running  []string // digests of the actions it holds leases for
}

// Snapshot is a read-only view of the scheduler for status pages.
type Snapshot struct {
	Queues  []QueueState
	Workers []WorkerState
	Queued  int
	Running int
}

// Snapshot returns the queues and workers as they are now.
func (s *Service) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var snap Snapshot
	for _, q := range s.queues {
		if len(q.jobs) == 0 {
			continue
		}
		qs := QueueState{Platform: formatPlatform(q.platform), Queued: len(q.jobs)}
		for _, j := range q.jobs {
			if d := now.Sub(j.queuedAt); d > qs.Oldest {
				qs.Oldest = d
			}
		}
		snap.Queued += len(q.jobs)
		snap.Queues = append(snap.Queues, qs)
	}
	running := map[string][]string{}
	for _, j := range s.leases {
		running[j.worker] = append(running[j.worker], j.task.ActionDigest.Hash+"/"+strconv.FormatInt(j.task.ActionDigest.SizeBytes, 10))
		snap.Running++
	}
	for w := range s.workers {
		ws := WorkerState{ID: w.id, Platform: w.platform.String(), Running: running[w.id]}
		sort.Strings(ws.Running)
		snap.Workers = append(snap.Workers, ws)
	}
	sort.Slice(snap.Queues, func(i, j int) bool { return snap.Queues[i].Platform < snap.Queues[j].Platform })
	sort.Slice(snap.Workers, func(i, j int) bool { return snap.Workers[i].ID < snap.Workers[j].ID })
	return snap
}

// String lists the properties a worker offers, sorted: "{a=1,b=2}".
func (ps platformSet) String() string {
	var parts []string
	for name, vals := range ps {
		for v := range vals {
			parts = append(parts, name+"="+v)
		}
	}
	sort.Strings(parts)
	out := "{"
	for i, p := range parts {
		if i > 0 {
			out += ","
		}
		out += p
	}
	return out + "}"
}
