package broker

import (
	"fmt"
	"os"
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
	scrub func(string) string // the run's redactor
}

func newStepLog(path string, scrub func(string) string) *stepLog {
	l := &stepLog{scrub: scrub}
	if path != "" {
		if f, err := redact.OpenPrivate(path); err == nil {
			l.f = f
		}
	}
	return l
}

func (l *stepLog) file() *os.File { return l.f }

func (l *stepLog) printf(format string, args ...any) {
	line := l.scrub(fmt.Sprintf(format, args...))
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
