// Package instlock owns the per-instance locks a worker driver takes so
// that a launch and a terminate of the same instance never run at once in
// one process. Locks are never freed: a provisioner handles a bounded
// number of instances per run, and freeing one safely would need a count
// of its waiters.
package instlock

import "sync"

// Set is a lock per instance id. The zero value is ready to use; a Set
// must not be copied after first use.
type Set struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Lock blocks until id's lock is held and returns the function that
// releases it, so callers can write `defer s.Lock(id)()`.
func (s *Set) Lock(id string) (unlock func()) {
	s.mu.Lock()
	m, ok := s.locks[id]
	if !ok {
		if s.locks == nil {
			s.locks = map[string]*sync.Mutex{}
		}
		m = &sync.Mutex{}
		s.locks[id] = m
	}
	s.mu.Unlock()
	m.Lock()
	return m.Unlock
}
