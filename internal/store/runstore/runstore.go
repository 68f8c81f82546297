// Package runstore owns the run record: a bootlevel.Store over one SQLite
// file (WAL mode; the default) that the launch and mgmt processes may open
// at the same time, or over a PostgreSQL schema (OpenPG). It owns both
// schemas and their embedded, ordered migrations.
package runstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3"

	"nightshift/bootlevel"
	"nightshift/internal/store/sqlitedb"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

var _ bootlevel.Store = (*Store)(nil)

// Store is a bootlevel.Store backed by a SQLite file. It is safe for
// concurrent use, and other processes may use the same file concurrently.
type Store struct {
	db   *sql.DB
	path string
}

// busyTimeout is how long a writer waits for another writer (in this or
// another process) before giving up with SQLITE_BUSY. Transactions here are
// a handful of rows, so 5 s means something is stuck.
const busyTimeout = 5 * time.Second

// Open opens (creating if needed) the run store at path and brings its schema
// up to date. The parent directory is created 0700 and the database files are
// 0600, because run records hold service attributes, which may be secrets.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open run store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open run store %s: %w", path, err)
	}
	// The connection pool is left unlimited: readers must not queue behind
	// the writer (see readRun).
	db, err := sqlitedb.Open(ctx, abs, sqlitedb.Config{
		Migrations:  migrationFS,
		Dir:         "migrations",
		Tracking:    sqlitedb.VersionTable,
		BusyTimeout: busyTimeout,
		CreateDir:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("open run store %s: %w", abs, err)
	}
	return &Store{db: db, path: abs}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close run store %s: %w", s.path, err)
	}
	return nil
}

// DB exposes the database for integrity checks in tests.
func (s *Store) DB() *sql.DB { return s.db }

// Path is the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// timeLayout is RFC3339 with a fixed nine-digit fraction: text order is time
// order, and nanoseconds round-trip.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// nullTime stores the zero time as NULL ("not yet").
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatTime(t)
}

func parseTime(field string, v sql.NullString) (time.Time, error) {
	if !v.Valid {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("column %s: %w", field, err)
	}
	return t.UTC(), nil
}

// isConstraint reports whether err is the SQLite constraint violation code.
func isConstraint(err error, code sqlite3.ErrNoExtended) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == code
}

// CreateRun inserts a new run; ErrExists if the name is taken.
func (s *Store) CreateRun(ctx context.Context, r bootlevel.Run) error {
	if r.Name == "" {
		return errors.New("create run: empty name")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO runs (name, plan_path, plan_hash, state, plan, created, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.Name, r.PlanPath, r.PlanHash, string(r.State), r.Plan, formatTime(r.Created), formatTime(r.Updated))
	if isConstraint(err, sqlite3.ErrConstraintPrimaryKey) {
		return fmt.Errorf("create run %s: %w", r.Name, bootlevel.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create run %s: %w", r.Name, err)
	}
	return nil
}

const runColumns = `name, plan_path, plan_hash, state, plan, created, updated`

type scanner interface{ Scan(dest ...any) error }

func scanRun(sc scanner) (bootlevel.Run, error) {
	var (
		r                bootlevel.Run
		state            string
		created, updated sql.NullString
	)
	if err := sc.Scan(&r.Name, &r.PlanPath, &r.PlanHash, &state, &r.Plan, &created, &updated); err != nil {
		return r, err
	}
	r.State = bootlevel.RunState(state)
	var err error
	if r.Created, err = parseTime("created", created); err != nil {
		return r, err
	}
	if r.Updated, err = parseTime("updated", updated); err != nil {
		return r, err
	}
	return r, nil
}

// GetRun reads one run; ErrNotFound if there is none of that name.
func (s *Store) GetRun(ctx context.Context, name string) (bootlevel.Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return bootlevel.Run{}, fmt.Errorf("get run %s: %w", name, bootlevel.ErrNotFound)
	}
	if err != nil {
		return bootlevel.Run{}, fmt.Errorf("get run %s: %w", name, err)
	}
	return r, nil
}

// ListRuns lists every run, oldest first.
func (s *Store) ListRuns(ctx context.Context) ([]bootlevel.Run, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+runColumns+` FROM runs ORDER BY created, name`)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var runs []bootlevel.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return runs, nil
}

// UpdateRun replaces State, Plan, PlanHash, PlanPath and Updated.
func (s *Store) UpdateRun(ctx context.Context, r bootlevel.Run) error {
	res, err := s.db.ExecContext(ctx, `UPDATE runs SET state = ?, plan = ?, plan_hash = ?, plan_path = ?, updated = ?
		WHERE name = ?`,
		string(r.State), r.Plan, r.PlanHash, r.PlanPath, formatTime(r.Updated), r.Name)
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.Name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.Name, err)
	}
	if n == 0 {
		return fmt.Errorf("update run %s: %w", r.Name, bootlevel.ErrNotFound)
	}
	return nil
}

// PutService inserts or replaces a service record; ErrNotFound if its run
// does not exist.
func (s *Store) PutService(ctx context.Context, rec bootlevel.ServiceRecord) error {
	if rec.Name == "" {
		return fmt.Errorf("put service in run %s: empty service name", rec.Run)
	}
	attrs, err := json.Marshal(rec.Attributes)
	if err != nil {
		return fmt.Errorf("put service %s/%s: attributes: %w", rec.Run, rec.Name, err)
	}
	host, err := json.Marshal(rec.Host)
	if err != nil {
		return fmt.Errorf("put service %s/%s: host: %w", rec.Run, rec.Name, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO services
		(run, name, level, state, attributes, host, error, log_path, restarts, started, ready_at, ended, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run, name) DO UPDATE SET
		level = excluded.level, state = excluded.state, attributes = excluded.attributes,
		host = excluded.host, error = excluded.error, log_path = excluded.log_path,
		restarts = excluded.restarts, started = excluded.started, ready_at = excluded.ready_at,
		ended = excluded.ended, updated = excluded.updated`,
		rec.Run, rec.Name, rec.Level, string(rec.State), string(attrs), string(host), rec.Error, rec.LogPath,
		rec.Restarts, nullTime(rec.Started), nullTime(rec.ReadyAt), nullTime(rec.Ended), formatTime(rec.Updated))
	if isConstraint(err, sqlite3.ErrConstraintForeignKey) {
		return fmt.Errorf("put service %s/%s: run %s: %w", rec.Run, rec.Name, rec.Run, bootlevel.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("put service %s/%s: %w", rec.Run, rec.Name, err)
	}
	return nil
}

// Services lists a run's services by level, then name; ErrNotFound if the
// run does not exist.
func (s *Store) Services(ctx context.Context, run string) ([]bootlevel.ServiceRecord, error) {
	var out []bootlevel.ServiceRecord
	err := s.readRun(ctx, run, func(q querier) (int, error) {
		rows, err := q.QueryContext(ctx, `SELECT name, level, state, attributes, host, error, log_path, restarts,
			started, ready_at, ended, updated FROM services WHERE run = ? ORDER BY level, name`, run)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		for rows.Next() {
			rec := bootlevel.ServiceRecord{Run: run}
			var (
				state, attrs, host               string
				started, readyAt, ended, updated sql.NullString
			)
			if err := rows.Scan(&rec.Name, &rec.Level, &state, &attrs, &host, &rec.Error, &rec.LogPath,
				&rec.Restarts, &started, &readyAt, &ended, &updated); err != nil {
				return 0, err
			}
			rec.State = bootlevel.ServiceState(state)
			if err := json.Unmarshal([]byte(attrs), &rec.Attributes); err != nil {
				return 0, fmt.Errorf("service %s: column attributes: %w", rec.Name, err)
			}
			if err := json.Unmarshal([]byte(host), &rec.Host); err != nil {
				return 0, fmt.Errorf("service %s: column host: %w", rec.Name, err)
			}
			for _, c := range []struct {
				name string
				v    sql.NullString
				dst  *time.Time
			}{{"started", started, &rec.Started}, {"ready_at", readyAt, &rec.ReadyAt}, {"ended", ended, &rec.Ended}, {"updated", updated, &rec.Updated}} {
				if *c.dst, err = parseTime(c.name, c.v); err != nil {
					return 0, fmt.Errorf("service %s: %w", rec.Name, err)
				}
			}
			out = append(out, rec)
		}
		return len(out), rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("services of run %s: %w", run, err)
	}
	return out, nil
}

// AppendEvent appends to a run's history and returns the event with its Seq;
// ErrNotFound if the run does not exist.
func (s *Store) AppendEvent(ctx context.Context, e bootlevel.Event) (bootlevel.Event, error) {
	if e.Kind == "" {
		return e, fmt.Errorf("append event to run %s: empty kind", e.Run)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO events (run, time, level, service, step, kind, state, message)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Run, formatTime(e.Time), e.Level, e.Service, string(e.Step), e.Kind, e.State, e.Message)
	if isConstraint(err, sqlite3.ErrConstraintForeignKey) {
		return e, fmt.Errorf("append event %s to run %s: %w", e.Kind, e.Run, bootlevel.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("append event %s to run %s: %w", e.Kind, e.Run, err)
	}
	if e.Seq, err = res.LastInsertId(); err != nil {
		return e, fmt.Errorf("append event %s to run %s: %w", e.Kind, e.Run, err)
	}
	e.Time = e.Time.UTC()
	return e, nil
}

// Events lists a run's events with Seq > afterSeq, in Seq order; ErrNotFound
// if the run does not exist.
func (s *Store) Events(ctx context.Context, run string, afterSeq int64) ([]bootlevel.Event, error) {
	var out []bootlevel.Event
	err := s.readRun(ctx, run, func(q querier) (int, error) {
		rows, err := q.QueryContext(ctx, `SELECT seq, time, level, service, step, kind, state, message
			FROM events WHERE run = ? AND seq > ? ORDER BY seq`, run, afterSeq)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		for rows.Next() {
			e := bootlevel.Event{Run: run}
			var (
				tm   sql.NullString
				step string
			)
			if err := rows.Scan(&e.Seq, &tm, &e.Level, &e.Service, &step, &e.Kind, &e.State, &e.Message); err != nil {
				return 0, err
			}
			e.Step = bootlevel.Step(step)
			if e.Time, err = parseTime("time", tm); err != nil {
				return 0, fmt.Errorf("event %d: %w", e.Seq, err)
			}
			out = append(out, e)
		}
		return len(out), rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("events of run %s: %w", run, err)
	}
	return out, nil
}

// readRun runs fn and, when it found nothing, tells "no rows" from "no run".
// Rows imply the run (foreign keys), so the common case is one query. A
// transaction would not help: the driver begins every transaction
// IMMEDIATE, which would make readers queue behind writers.
func (s *Store) readRun(ctx context.Context, run string, fn func(q querier) (int, error)) error {
	n, err := fn(s.db)
	if err != nil || n > 0 {
		return err
	}
	var exists bool
	if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM runs WHERE name = ?)`, run).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return bootlevel.ErrNotFound
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// DeleteRun removes a run with its services and events; ErrNotFound if the
// run does not exist.
func (s *Store) DeleteRun(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM runs WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete run %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete run %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("delete run %s: %w", name, bootlevel.ErrNotFound)
	}
	return nil
}
