package disk

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// With Options.Fsync a Put is acknowledged only when a power loss can no
// longer undo it: its blob file was fsynced before the rename that
// publishes it, and then the directory holding it and the index journal
// holding its add record are fsynced. Those two syncs are group-committed:
// a Put takes a ticket for the next sync round (registering its
// directory), and whichever waiting Put finds no round running starts one,
// which syncs the journal once for every record written before it began
// and each registered directory once. Concurrent Puts thus share fsyncs
// instead of queueing for one each.
//
// Removals are journaled but not synced: a power loss can at worst bring
// back an entry whose file is gone (the sweep drops it) or leave a file the
// journal forgot (the sweep checks and adopts it).
type durability struct {
	written atomic.Uint64 // journal records written (Store.writeJournalLocked)

	mu       sync.Mutex
	cond     *sync.Cond
	file     *os.File // the journal the next round syncs
	syncing  bool
	started  uint64 // rounds started
	done     uint64 // rounds finished
	failed   uint64 // last round that failed
	failErr  error
	synced   uint64 // journal records known durable
	dirs     map[string]struct{}
	syncFile func(*os.File) error // f.Sync; tests slow it down or count calls
}

func (d *durability) init() {
	d.cond = sync.NewCond(&d.mu)
	d.dirs = map[string]struct{}{}
	d.syncFile = (*os.File).Sync
}

// ticket returns the round whose end makes the journal records written so
// far (and dir, if not empty) durable; 0 (nothing to wait for) if !fsync or
// everything written is durable already. Store.mu must be held, so that
// the caller's record was written before the round starts.
func (d *durability) ticket(fsync bool, dir string) uint64 {
	if !fsync {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dir != "" {
		d.dirs[dir] = struct{}{}
	} else if d.written.Load() == d.synced && len(d.dirs) == 0 {
		return 0
	}
	return d.started + 1
}

// wait returns when round t has finished, running rounds itself while none
// is running, with the error of a failed round at or after t.
func (d *durability) wait(t uint64, s *Store) error {
	if t == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.done < t {
		if d.syncing {
			d.cond.Wait()
			continue
		}
		d.syncing = true
		d.started++
		round, upTo, f, dirs := d.started, d.written.Load(), d.file, d.dirs
		d.dirs = map[string]struct{}{}
		d.mu.Unlock()
		err := d.syncRound(f, dirs)
		d.mu.Lock()
		d.syncing = false
		d.done = round
		if err != nil {
			d.failed, d.failErr = round, err
			s.log.Error("making writes durable failed", "err", err)
		} else {
			d.synced = max(d.synced, upTo)
		}
		d.cond.Broadcast()
	}
	if d.failed >= t {
		return d.failErr
	}
	return nil
}

// syncRound syncs the journal f and the directories dirs, all at once
// (the file system can often commit them together).
func (d *durability) syncRound(f *os.File, dirs map[string]struct{}) error {
	errs := make(chan error, len(dirs))
	for dir := range dirs {
		go func() { errs <- syncDir(dir) }()
	}
	err := d.syncFile(f)
	if err != nil {
		err = fmt.Errorf("syncing the index journal: %w", err)
	}
	for range dirs {
		if derr := <-errs; err == nil {
			err = derr
		}
	}
	return err
}

// switchJournal makes next the journal that rounds sync, once no round is
// running; with fsync it first syncs old, which holds records that rounds
// still waiting were counting on. Store.mu must be held (so no record is
// written meanwhile).
func (d *durability) switchJournal(old, next *os.File, fsync bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.syncing {
		d.cond.Wait()
	}
	var err error
	if fsync && old != nil {
		if err = d.syncFile(old); err != nil {
			err = fmt.Errorf("syncing the index journal: %w", err)
			// Fail whoever waits for the next round: their records may
			// be lost.
			d.failed, d.failErr = d.started+1, err
		} else {
			d.synced = d.written.Load()
		}
	}
	d.file = next
	return err
}

// syncDir fsyncs a directory, making the entries renamed or created in it
// durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
