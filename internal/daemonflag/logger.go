package daemonflag

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"nightshift/internal/redact"
	"nightshift/internal/runlayout"
)

// Redactor returns a Redactor that knows, by value, every secret this
// daemon was handed: the broker password in its URL, the run's secret, and
// what the run's secret registry holds when the daemon has a home. Call it
// after Resolve. A daemon logs errors that quote URLs, arguments and
// answers from the broker; key-name redaction alone misses a password
// written inside any of those.
func (c *Common) Redactor() (*redact.Redactor, error) {
	r := redact.NewRedactor()
	r.AddURLPasswords(c.URL)
	if c.SecretFile != "" {
		b, err := os.ReadFile(c.SecretFile)
		switch {
		case err == nil:
			r.Add(strings.TrimSpace(string(b)), string(b))
		case errors.Is(err, fs.ErrNotExist):
			// The daemon creates it later (LoadOrCreateSecret) and adds it then.
		default:
			return nil, fmt.Errorf("--secret-file: %w", err)
		}
	}
	if !c.opts.NoHome && c.Home != "" && c.Run != "" {
		if err := r.LoadRegistry(runlayout.Of(c.Home, c.Run).RedactValues()); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Logger returns the daemon's logger on w at the resolved level, text or
// JSON, with every record passed through r first.
func (c *Common) Logger(w io.Writer, r *redact.Redactor, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	var h slog.Handler
	if json {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(redact.Handler(h, r))
}
