package sitter

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// watchTask starts watching r's task dir for writes to its status file,
// once per task. Without a watch the file is read every sample, which is
// still correct, only dearer.
func (s *Sitter) watchTask(r *runner) {
	if s.watch == nil || r.workWatched.Load() {
		return
	}
	if err := s.watch.Add(r.dir()); err != nil {
		s.log.Warn("cannot watch status file, reading it every sample", "task", r.spec.Name, "err", err)
		return
	}
	r.workDirty.Store(true)
	r.workWatched.Store(true)
}

// unwatchTask stops the watch before r's dir is removed.
func (s *Sitter) unwatchTask(r *runner) {
	if s.watch == nil || !r.workWatched.Swap(false) {
		return
	}
	if err := s.watch.Remove(r.dir()); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
		s.log.Debug("unwatch task dir", "task", r.spec.Name, "err", err)
	}
}

// watchLoop marks a task's status as due for a read when its file is
// written, created (the write-then-rename a worker should use), or
// removed. Reading happens at the next sample, so a worker that flips
// busy and idle a thousand times a second costs one read per sample.
func (s *Sitter) watchLoop(ctx context.Context, w *fsnotify.Watcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				// The task dir itself went (someone cleaned the state dir):
				// its watch went with it. Read every sample until the next
				// start makes the dir, and the watch, again.
				s.mu.Lock()
				r := s.runners[filepath.Base(ev.Name)]
				s.mu.Unlock()
				if r != nil && ev.Name == r.dir() {
					r.workWatched.Store(false)
					r.workDirty.Store(true)
					continue
				}
			}
			task := filepath.Base(filepath.Dir(ev.Name))
			if filepath.Base(ev.Name) != task+".status" {
				continue
			}
			s.mu.Lock()
			r := s.runners[task]
			s.mu.Unlock()
			if r != nil {
				r.workDirty.Store(true)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflowed queue lost events: read every file once.
			s.log.Warn("status file watch", "err", err)
			s.mu.Lock()
			for _, r := range s.runners {
				r.workDirty.Store(true)
			}
			s.mu.Unlock()
		}
	}
}
