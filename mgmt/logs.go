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
)

// ShowLogs prints the last n lines of each file (every line when n is 0),
// each prefixed with its file's name when there are several, with secrets
// redacted; with follow it keeps printing what is appended until ctx ends.
func ShowLogs(ctx context.Context, w io.Writer, files []string, n int, follow bool) error {
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
		printLines(w, label(files, i), lastLines(data, n))
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
					printLines(w, label(files, i), bytes.Split(data[:k], []byte{'\n'}))
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
	return files[i] + ": "
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

func printLines(w io.Writer, prefix string, lines [][]byte) {
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		fmt.Fprintf(bw, "%s%s\n", prefix, redact.String(string(l)))
	}
	bw.Flush()
}
