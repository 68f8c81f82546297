// Package workerkit is the worker's side of the sitter protocol, for the
// example workers: report busy or idle through the file the sitter names in
// NIGHTSHIFT_STATUS_FILE (so scale-in takes idle workers first), and notice
// a drain request through the file named in NIGHTSHIFT_DRAIN_FILE (finish
// the current item, then exit 0). Outside a sitter both are no-ops.
package workerkit

import (
	"os"
	"path/filepath"
)

// Status reports busy or idle to the sitter.
type Status struct {
	file  string
	drain string
	last  string
}

// FromEnv reads the sitter's protocol variables.
func FromEnv() *Status {
	return &Status{file: os.Getenv("NIGHTSHIFT_STATUS_FILE"), drain: os.Getenv("NIGHTSHIFT_DRAIN_FILE")}
}

// Busy reports that the worker holds work it must not lose.
func (s *Status) Busy() { s.set("busy") }

// Idle reports that the worker can be stopped without losing work.
func (s *Status) Idle() { s.set("idle") }

// set replaces the whole file at once, so the sitter never reads half a word.
func (s *Status) set(v string) {
	if s.file == "" || v == s.last {
		return
	}
	tmp := filepath.Join(filepath.Dir(s.file), "."+filepath.Base(s.file)+".tmp")
	if os.WriteFile(tmp, []byte(v+"\n"), 0o644) == nil && os.Rename(tmp, s.file) == nil {
		s.last = v
	}
}

// Draining reports whether the sitter asked this worker to finish and exit.
func (s *Status) Draining() bool {
	if s.drain == "" {
		return false
	}
	_, err := os.Stat(s.drain)
	return err == nil
}
