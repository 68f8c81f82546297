package cmdledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// maxEntrySize bounds an entry file read back; replies of signed commands
// are small.
const maxEntrySize = 4 << 20

// Dir is a Ledger of one file per command in a directory (mode 0700, files
// 0600), for a component without a database such as a sitter, whose state
// directory outlives its restarts. File names are a hash of the id: ids come
// from senders and must never become paths.
type Dir struct {
	Path string

	mu sync.Mutex // orders Start and Finish within this process
}

var _ Ledger = (*Dir)(nil)

func (d *Dir) file(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(d.Path, hex.EncodeToString(sum[:])+".json")
}

// Lookup implements Ledger.
func (d *Dir) Lookup(_ context.Context, id string) (Entry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.read(id)
}

func (d *Dir) read(id string) (Entry, error) {
	f, err := os.Open(d.file(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, fmt.Errorf("command %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("look up command %q: %w", id, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEntrySize+1))
	if err != nil {
		return Entry{}, fmt.Errorf("look up command %q: %w", id, err)
	}
	e, err := DecodeEntry(data)
	if err != nil {
		return Entry{}, fmt.Errorf("look up command %q: %s: %w", id, f.Name(), err)
	}
	if e.ID != id {
		return Entry{}, fmt.Errorf("look up command %q: %s holds command %q", id, f.Name(), e.ID)
	}
	return e, nil
}

// DecodeEntry reads one entry file strictly: unknown keys, trailing data,
// an unknown state or a missing id are errors, so a damaged file is never
// taken for a handled command.
func DecodeEntry(data []byte) (Entry, error) {
	if len(data) > maxEntrySize {
		return Entry{}, fmt.Errorf("entry: %d bytes, limit %d", len(data), maxEntrySize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("entry: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Entry{}, errors.New("entry: trailing data after the JSON object")
	}
	switch {
	case e.ID == "":
		return Entry{}, errors.New("entry: field id: missing")
	case e.State != StateStarted && e.State != StateDone:
		return Entry{}, fmt.Errorf("entry: field state: %q, want %q or %q", e.State, StateStarted, StateDone)
	case e.Attempts < 1:
		return Entry{}, fmt.Errorf("entry: field attempts: %d, want >= 1", e.Attempts)
	}
	return e, nil
}

// Start implements Ledger.
func (d *Dir) Start(_ context.Context, e Entry) (Entry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.read(e.ID)
	switch {
	case err == nil && cur.State == StateDone:
		return cur, nil
	case err == nil:
		cur.Attempts++
		cur.Updated = e.Started
		e = cur
	case errors.Is(err, ErrNotFound):
		e.State, e.Attempts, e.Updated, e.Reply = StateStarted, 1, e.Started, nil
	default:
		return Entry{}, err
	}
	if err := d.write(e); err != nil {
		return Entry{}, fmt.Errorf("record command %q: %w", e.ID, err)
	}
	return e, nil
}

// Finish implements Ledger.
func (d *Dir) Finish(_ context.Context, id string, reply []byte, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, err := d.read(id)
	if err != nil {
		return fmt.Errorf("record result: %w", err)
	}
	e.State, e.Reply, e.Updated = StateDone, json.RawMessage(reply), now
	if err := d.write(e); err != nil {
		return fmt.Errorf("record result of command %q: %w", id, err)
	}
	return nil
}

// write replaces the entry's file atomically and durably: temp file,
// fsync, rename, fsync of the directory.
func (d *Dir) write(e Entry) error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(d.Path, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	if err := os.Rename(tmp.Name(), d.file(e.ID)); err != nil {
		return err
	}
	dir, err := os.Open(d.Path)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// Prune implements Ledger by file modification time.
func (d *Dir) Prune(_ context.Context, before time.Time) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ents, err := os.ReadDir(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("prune command ledger: %w", err)
	}
	n := 0
	for _, de := range ents {
		if !strings.HasSuffix(de.Name(), ".json") {
			continue
		}
		fi, err := de.Info()
		if err != nil || !fi.ModTime().Before(before) {
			continue
		}
		if os.Remove(filepath.Join(d.Path, de.Name())) == nil {
			n++
		}
	}
	return n, nil
}
