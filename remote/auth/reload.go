package auth

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// recheck is how often a credential file is looked at (when a request
// needs it): a variable so that tests need not wait.
var recheck = time.Second

// watched is a credential file read again when its modification time or
// size changes. A change that fails to parse is logged (the error names
// the file and the line, never a secret) and the previous contents stay
// in use.
type watched[T any] struct {
	kind, file string
	read       func(file string) (T, error)
	log        *slog.Logger

	next atomic.Int64 // when to look again, Unix nanoseconds
	val  atomic.Pointer[T]

	mu    sync.Mutex // held while looking
	stamp stamp      // of the last version looked at, loaded or not
}

// stamp is what tells a changed file.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(fi os.FileInfo) stamp { return stamp{fi.ModTime(), fi.Size()} }

// watch reads file once; an error stops the caller (at start-up).
func watch[T any](kind, file string, read func(string) (T, error), log *slog.Logger) (*watched[T], error) {
	w := &watched[T]{kind: kind, file: file, read: read, log: log}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	v, err := read(file)
	if err != nil {
		return nil, err
	}
	w.stamp = stampOf(fi)
	w.val.Store(&v)
	w.next.Store(time.Now().Add(recheck).UnixNano())
	return w, nil
}

// get returns the contents, first reloading them if the file changed and
// it has not been looked at for recheck. A request that finds another
// looking does not wait: it gets the contents in use.
func (w *watched[T]) get() T {
	if now := time.Now(); now.UnixNano() >= w.next.Load() && w.mu.TryLock() {
		w.look(now)
		w.mu.Unlock()
	}
	return *w.val.Load()
}

// look reloads the file if it changed (w.mu held).
func (w *watched[T]) look(now time.Time) {
	if now.UnixNano() < w.next.Load() {
		return
	}
	w.next.Store(now.Add(recheck).UnixNano())
	fi, err := os.Stat(w.file)
	if err != nil {
		if w.stamp != (stamp{}) {
			w.log.Warn(w.kind+" cannot be read; keeping its previous contents", "file", w.file, "err", err)
			w.stamp = stamp{}
		}
		return
	}
	st := stampOf(fi)
	if st == w.stamp {
		return
	}
	// A version is judged once: a bad file is logged once, not every second.
	w.stamp = st
	v, err := w.read(w.file)
	if err != nil {
		w.log.Warn(w.kind+" changed but does not load; keeping its previous contents", "file", w.file, "err", err)
		return
	}
	w.val.Store(&v)
	w.log.Info(w.kind+" reloaded", "file", w.file)
}
