package brokertype

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"nightshift/internal/redact"
)

// stepLog appends a step's lines to the service log and keeps the last few
// for the engine's failure report.
type stepLog struct {
	mu    sync.Mutex
	f     *os.File
	lines []string
}

func newStepLog(path string) *stepLog {
	l := &stepLog{}
	if path != "" {
		os.MkdirAll(filepath.Dir(path), 0o700)
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			l.f = f
		}
	}
	return l
}

func (l *stepLog) file() *os.File { return l.f }

func (l *stepLog) printf(format string, args ...any) {
	line := redact.String(fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if len(l.lines) > 20 {
		l.lines = l.lines[len(l.lines)-20:]
	}
	if l.f != nil {
		fmt.Fprintf(l.f, "%s broker: %s\n", time.Now().UTC().Format(time.RFC3339), strings.TrimRight(line, "\n"))
	}
}

func (l *stepLog) tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *stepLog) close() {
	if l.f != nil {
		l.f.Close()
	}
}
