package redact

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Register records values as secrets in the registry file at path, so that
// every process that later prints the run's output (mgmt, a resumed launch)
// redacts them too: this is how a component that mints a secret at run
// time (a per-worker broker password, say) makes it known. The file is 0600
// (tightened if it exists) and holds one hex-encoded value a line, so any
// byte can be recorded; appends are single writes, so concurrent
// registrations do not interleave. Values shorter than MinLen are skipped.
func Register(path string, values ...string) error {
	var buf bytes.Buffer
	for _, v := range values {
		if len(v) >= MinLen {
			buf.WriteString(hex.EncodeToString([]byte(v)))
			buf.WriteByte('\n')
		}
	}
	if buf.Len() == 0 {
		return nil
	}
	f, err := OpenPrivate(path)
	if err != nil {
		return fmt.Errorf("register secrets: %w", err)
	}
	_, werr := f.Write(buf.Bytes())
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("register secrets in %s: %w", path, werr)
	}
	return nil
}

// LoadRegistry adds the values recorded at path by Register; a missing file
// adds none. A malformed line is an error, after the good lines are added.
func (r *Redactor) LoadRegistry(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret registry: %w", err)
	}
	var bad error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		v, err := hex.DecodeString(string(line))
		if err != nil {
			bad = fmt.Errorf("secret registry %s:%d: not hex", path, n)
			continue
		}
		r.Add(string(v))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("secret registry %s: %w", path, err)
	}
	return bad
}

// OpenPrivate opens path for appending, creating it (and its directory,
// 0700) if needed, and makes it 0600 whatever mode it had: logs and
// registries hold what programs print, connection strings included, and a
// file created 0644 by an older version must not stay readable to others.
func OpenPrivate(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return f, nil
}
