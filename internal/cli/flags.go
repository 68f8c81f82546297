// Package cli holds the launch and mgmt commands as functions of their
// arguments and output streams, so the binaries in cmd/ stay three-line
// mains and the commands can be tested in-process as a user runs them.
package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"nightshift/internal/redact"
)

// kvFlag collects repeated -g key=value pairs; unlike pflag's
// StringToString it never splits a value at commas.
type kvFlag map[string]string

func (k kvFlag) String() string {
	if len(k) == 0 {
		return "" // help shows no "(default map[])"
	}
	return fmt.Sprint(map[string]string(k))
}

var _ pflag.Value = kvFlag{}

// Type names the value in help: -g key=value.
func (k kvFlag) Type() string { return "key=value" }

func (k kvFlag) Set(v string) error {
	key, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(key) == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	k[strings.TrimSpace(key)] = val
	return nil
}

// isTerminal reports whether f is an interactive terminal.
func isTerminal(f any) bool {
	if file, ok := f.(*os.File); ok {
		return term.IsTerminal(int(file.Fd()))
	}
	return false
}

// newLogger writes structured logs to a file in the home directory (the
// terminal gets progress, not log noise) or to stderr with --log-level.
func newLogger(path string, level slog.Level, red *redact.Redactor) (*slog.Logger, func(), error) {
	if path == "" {
		return slog.New(slog.DiscardHandler), func() {}, nil
	}
	f, err := redact.OpenPrivate(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open log %s: %w", path, err)
	}
	h := slog.NewTextHandler(f, &slog.HandlerOptions{Level: level})
	return slog.New(redact.Handler(h, red)), func() { f.Close() }, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level: %w", err)
	}
	return l, nil
}
