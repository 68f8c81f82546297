package sshservice

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// tailLines is how many lines of output a StepResult keeps for error reports.
const tailLines = 20

// maxLineLen caps one remembered line so that output without newlines
// cannot grow memory without bound; the log file still gets every byte.
const maxLineLen = 4096

// tailWriter copies remote output to the step log and remembers the last
// lines. ssh copies stdout and stderr from two goroutines, hence the mutex.
type tailWriter struct {
	mu      sync.Mutex
	out     io.Writer
	lines   []string
	partial []byte
	err     error // first failure to write the log; output keeps flowing
	closed  bool  // set when the step is over: late output is dropped
}

func newTailWriter(out io.Writer) *tailWriter {
	if out == nil {
		out = io.Discard
	}
	return &tailWriter{out: out}
}

func (w *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return n, nil
	}
	if w.err == nil {
		if _, err := w.out.Write(p); err != nil {
			w.err = err
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.addPartial(p)
			break
		}
		w.addPartial(p[:i])
		w.push(strings.TrimSuffix(string(w.partial), "\r"))
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	// Never fail the copy: a full disk must not stall or kill the remote program.
	return n, nil
}

func (w *tailWriter) addPartial(p []byte) {
	room := maxLineLen - len(w.partial)
	if room <= 0 {
		return
	}
	if len(p) > room {
		p = p[:room]
	}
	w.partial = append(w.partial, p...)
}

func (w *tailWriter) push(line string) {
	w.lines = append(w.lines, line)
	if len(w.lines) > tailLines {
		w.lines = append(w.lines[:0:0], w.lines[len(w.lines)-tailLines:]...)
	}
}

// Tail returns the last lines, including an unterminated last line.
func (w *tailWriter) Tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]string(nil), w.lines...)
	if len(w.partial) > 0 {
		out = append(out, string(w.partial))
	}
	if len(out) > tailLines {
		out = out[len(out)-tailLines:]
	}
	return out
}

// Err reports the first failure to write the log.
func (w *tailWriter) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// note records a line of our own in the log and the tail.
func (w *tailWriter) note(line string) {
	w.mu.Lock()
	if len(w.partial) > 0 {
		line = "\n" + line // do not glue it to an unterminated program line
	}
	w.mu.Unlock()
	_, _ = w.Write([]byte(line + "\n"))
}

// Close makes later writes no-ops, so copies still draining a session
// cannot write to a log file the caller has closed.
func (w *tailWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}
