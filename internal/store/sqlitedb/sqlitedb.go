// Package sqlitedb owns how Nightshift's SQLite stores (run, provisioner and
// controller) open their files: private file modes (0600 for the database
// and its -wal/-shm files, 0700 for a created parent directory), the
// connection settings every store relies on (WAL, busy timeout, foreign
// keys, immediate transactions) and embedded, ordered schema migrations with
// refusal of a schema newer than the program.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"nightshift/internal/backoff"
)

// Tracking says where a database records which migrations it has.
type Tracking int

const (
	// UserVersion keeps the number of applied migrations in
	// PRAGMA user_version.
	UserVersion Tracking = iota
	// VersionTable keeps one row per applied migration (version, name,
	// applied time) in a schema_version table.
	VersionTable
)

// DefaultBusyTimeout is used when Config.BusyTimeout is zero.
const DefaultBusyTimeout = 5 * time.Second

// Config describes one store's database. The zero value of every field
// except Migrations is usable.
type Config struct {
	// Migrations holds the NNNN_name.sql files; they must be numbered
	// 1, 2, 3, ... and are applied in that order.
	Migrations fs.FS
	// Dir is the directory inside Migrations that holds them ("." if empty).
	Dir string
	// Tracking must stay what the store has always used, or existing
	// databases would be migrated again.
	Tracking Tracking
	// BusyTimeout is how long a writer waits for another writer (in this or
	// another process) before failing with SQLITE_BUSY.
	BusyTimeout time.Duration
	// CreateDir creates a missing parent directory with mode 0700. Off, a
	// missing directory is an error (a mistyped path should not silently
	// start an empty store).
	CreateDir bool
	// Clock stamps schema_version rows; nil means the real clock.
	Clock clockwork.Clock
}

// Migration is one embedded schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Open opens (creating if needed) the database at file and brings its schema
// up to date. Errors name neither the store nor the file: callers add both.
func Open(ctx context.Context, file string, c Config) (*sql.DB, error) {
	if file == "" {
		return nil, errors.New("empty path")
	}
	ms, err := ReadMigrations(c.Migrations, c.Dir)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if c.CreateDir {
		if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
			return nil, err
		}
	}
	// Create the file ourselves so that its mode does not depend on the
	// umask; SQLite gives the -wal and -shm files the mode of the main file.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	timeout := c.BusyTimeout
	if timeout <= 0 {
		timeout = DefaultBusyTimeout
	}
	db, err := sql.Open("sqlite3", dsn(abs, timeout))
	if err != nil {
		return nil, err
	}
	clock := c.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if err := migrateRetrying(ctx, db, ms, c.Tracking, clock, timeout); err != nil {
		_ = db.Close()
		return nil, err
	}
	// The -wal and -shm files exist now; tighten them in case they were
	// created before this process (by an older build, or by hand).
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Chmod(abs+suffix, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			_ = db.Close()
			return nil, err
		}
	}
	return db, nil
}

// OpenDaemon opens a daemon's own store (the provisioner's or the
// controller's): its NNNN_name.sql files under "migrations" in fsys, tracked
// by user_version, a 10s busy timeout, and one connection, because SQLite
// allows one writer at a time and a single connection turns lock contention
// into Go-side queueing instead of SQLITE_BUSY. The directory must exist.
// Errors name neither the store nor the file: callers add both.
func OpenDaemon(ctx context.Context, file string, fsys fs.FS) (*sql.DB, error) {
	db, err := Open(ctx, file, Config{
		Migrations:  fsys,
		Dir:         "migrations",
		Tracking:    UserVersion,
		BusyTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// dsn builds a URI filename so that any path (with '?', '#' or '%') works.
// _txlock=immediate makes every transaction take the write lock up front:
// a deferred transaction that reads and then writes can fail with
// SQLITE_BUSY without waiting when another process wrote in between.
func dsn(abs string, busy time.Duration) string {
	u := url.URL{Scheme: "file", Path: abs}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_foreign_keys", "on")
	q.Set("_txlock", "immediate")
	return u.String() + "?" + q.Encode()
}

// ReadMigrations reads the NNNN_name.sql files in dir of fsys in version
// order, checking that versions run 1, 2, 3, ... without gaps.
func ReadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	if fsys == nil {
		return nil, errors.New("read migrations: no migrations given")
	}
	if dir == "" {
		dir = "."
	}
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and '_'", e.Name())
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions must be 1, 2, 3, ...)", m.Name, m.Version, i+1)
		}
	}
	return ms, nil
}

// timeLayout is RFC3339 with a fixed nine-digit fraction, as the run store
// writes all its times.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// migrateRetrying runs migrate again while SQLite answers SQLITE_BUSY or
// SQLITE_LOCKED, for at most the busy timeout. The busy handler alone is not
// enough here: while several processes open a fresh file at once, one of
// them may be switching it to WAL or rebuilding the WAL index, and SQLite
// then returns BUSY at BEGIN without calling the handler.
func migrateRetrying(ctx context.Context, db *sql.DB, ms []Migration, tr Tracking, clock clockwork.Clock, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	retry := backoff.Backoff{Policy: backoff.Policy{Initial: 5 * time.Millisecond, Max: 200 * time.Millisecond}}
	for {
		err := migrate(ctx, db, ms, tr, clock)
		if err == nil || !isBusy(err) {
			return err
		}
		wait := retry.Next()
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// migrate applies the missing migrations in one write transaction, so that
// processes opening a fresh file at the same time apply each exactly once.
// PRAGMA user_version is part of the database header and so is rolled back
// with the transaction like any table.
func migrate(ctx context.Context, db *sql.DB, ms []Migration, tr Tracking, clock clockwork.Clock) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var have int
	switch tr {
	case UserVersion:
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
			return fmt.Errorf("migrate: read user_version: %w", err)
		}
	case VersionTable:
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER PRIMARY KEY NOT NULL,
		name    TEXT NOT NULL,
		applied TEXT NOT NULL)`); err != nil {
			return fmt.Errorf("migrate: create schema_version: %w", err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err != nil {
			return fmt.Errorf("migrate: read schema_version: %w", err)
		}
	default:
		return fmt.Errorf("migrate: unknown tracking %d", tr)
	}
	if have > len(ms) {
		return fmt.Errorf("migrate: schema version %d is newer than this program knows (%d); use a newer nightshift", have, len(ms))
	}
	if have == len(ms) {
		return nil
	}
	for _, m := range ms[have:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		if tr == VersionTable {
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)`,
				m.Version, m.Name, clock.Now().UTC().Format(timeLayout)); err != nil {
				return fmt.Errorf("migrate: record %s: %w", m.Name, err)
			}
		}
	}
	if tr == UserVersion {
		// PRAGMA takes no bound parameters; the value is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(ms))); err != nil {
			return fmt.Errorf("migrate: record version %d: %w", len(ms), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// OpenReadOnly opens an existing database for reading only: no file is
// created, no schema migrated, nothing written, so a reader (mgmt) can look
// at a daemon's store whether the daemon runs or not, and never changes
// it. The caller copes with a schema older than its own (a missing table).
func OpenReadOnly(ctx context.Context, file string) (*sql.DB, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "file", Path: abs}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", strconv.FormatInt(DefaultBusyTimeout.Milliseconds(), 10))
	db, err := sql.Open("sqlite3", u.String()+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}
