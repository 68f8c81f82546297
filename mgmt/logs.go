package mgmt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"nightshift/internal/redact"
	"nightshift/internal/termtext"
)

// LogOptions say how ShowLogs prints.
type LogOptions struct {
	// Lines is how many last lines of each file to start with (0: all).
	Lines int
	// Follow keeps printing what is appended until the context ends.
	Follow bool
	// Redactor knows the run's secrets; every line passes through it.
	Redactor *redact.Redactor
	// Raw prints lines as the programs wrote them (still redacted) instead
	// of escaped: for piping into tools that want the exact bytes.
	Raw bool
}

// ShowLogs prints the last lines of each file, each prefixed with its file's
// name when there are several. Lines are always redacted by value, and
// escaped (termtext.Text) unless o.Raw: logs hold what services printed, and
// escaping does not depend on stdout being a terminal, because output piped
// through less -R, tee or a CI log viewer reaches a terminal all the same.
func ShowLogs(ctx context.Context, w io.Writer, files []string, o LogOptions) error {
	n, follow := o.Lines, o.Follow
	offsets := make([]int64, len(files))
	for i, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		offsets[i] = int64(len(data))
		printLines(w, label(files, i), lastLines(data, n), o)
	}
	if !follow {
		return nil
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for i, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			st, err := fh.Stat()
			if err == nil && st.Size() < offsets[i] {
				offsets[i] = 0 // rotated or truncated: start over
			}
			if _, err := fh.Seek(offsets[i], io.SeekStart); err == nil {
				data, _ := io.ReadAll(fh)
				// Print whole lines only; keep a partial last line for later.
				if k := bytes.LastIndexByte(data, '\n'); k >= 0 {
					printLines(w, label(files, i), bytes.Split(data[:k], []byte{'\n'}), o)
					offsets[i] += int64(k + 1)
				}
			}
			fh.Close()
		}
	}
}

func label(files []string, i int) string {
	if len(files) == 1 {
		return ""
	}
	return termtext.Line(files[i]) + ": "
}

func lastLines(data []byte, n int) [][]byte {
	data = bytes.TrimRight(data, "\n")
	if len(data) == 0 {
		return nil
	}
	lines := bytes.Split(data, []byte{'\n'})
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func printLines(w io.Writer, prefix string, lines [][]byte, o LogOptions) {
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		line := o.Redactor.String(string(l))
		if !o.Raw {
			// Text, not Line: a tab in a log stays a tab; a \r that would
			// let a line overwrite the one before it is shown as \r.
			line = termtext.Text(line)
		}
		fmt.Fprintf(bw, "%s%s\n", prefix, line)
	}
	bw.Flush()
}
