package runstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"nightshift/bootlevel"
	"nightshift/internal/store/pgdb"
)

//go:embed pgmigrations/*.sql
var pgMigrationFS embed.FS

var _ bootlevel.Store = (*PG)(nil)

// PG is a bootlevel.Store in a PostgreSQL schema (one per Nightshift home,
// by convention pgdb.SchemaName("ns", "runs", ...)). SQLite's single writer
// ordered events by commit; here an append locks its run's row first, so a
// run's events commit in the order of their sequence numbers and a reader
// paging with Events(afterSeq) never skips one committed late.
type PG struct {
	db *pgdb.DB
}

// OpenPG connects to url, in schema, and applies pending migrations.
func OpenPG(ctx context.Context, url, schema string) (*PG, error) {
	db, err := pgdb.Open(ctx, pgdb.Config{URL: url, Schema: schema, Migrations: pgMigrationFS, Dir: "pgmigrations", MaxConns: 8})
	if err != nil {
		return nil, fmt.Errorf("open run store: %w", err)
	}
	return &PG{db: db}, nil
}

// Close releases the connections.
func (s *PG) Close() error { s.db.Close(); return nil }

// DB is the store's schema, for tests.
func (s *PG) DB() *pgdb.DB { return s.db }

func pgText(v *string) sql.NullString {
	if v == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *v, Valid: true}
}

func nullText(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

// CreateRun implements bootlevel.Store.
func (s *PG) CreateRun(ctx context.Context, r bootlevel.Run) error {
	if r.Name == "" {
		return errors.New("create run: empty name")
	}
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO runs (name, plan_path, plan_hash, state, plan, created, updated)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			r.Name, r.PlanPath, r.PlanHash, string(r.State), r.Plan, formatTime(r.Created), formatTime(r.Updated))
		return err
	})
	if pgdb.IsUniqueViolation(err) {
		return fmt.Errorf("create run %s: %w", r.Name, bootlevel.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create run %s: %w", r.Name, err)
	}
	return nil
}

// pgRunScanner adapts a pgx row to scanRun, which wants NullStrings.
type pgRunScanner struct{ row pgx.Row }

func (p pgRunScanner) Scan(dest ...any) error {
	var created, updated *string
	d := append([]any{}, dest[:5]...)
	d = append(d, &created, &updated)
	if err := p.row.Scan(d...); err != nil {
		return err
	}
	*dest[5].(*sql.NullString), *dest[6].(*sql.NullString) = pgText(created), pgText(updated)
	return nil
}

// GetRun implements bootlevel.Store.
func (s *PG) GetRun(ctx context.Context, name string) (bootlevel.Run, error) {
	r, err := scanRun(pgRunScanner{s.db.Pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE name = $1`, name)})
	if errors.Is(err, pgx.ErrNoRows) {
		return bootlevel.Run{}, fmt.Errorf("get run %s: %w", name, bootlevel.ErrNotFound)
	}
	if err != nil {
		return bootlevel.Run{}, fmt.Errorf("get run %s: %w", name, err)
	}
	return r, nil
}

// ListRuns implements bootlevel.Store.
func (s *PG) ListRuns(ctx context.Context) ([]bootlevel.Run, error) {
	rows, err := s.db.Pool.Query(ctx, `SELECT `+runColumns+` FROM runs ORDER BY created, name`)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var runs []bootlevel.Run
	for rows.Next() {
		r, err := scanRun(pgRunScanner{rows})
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

// UpdateRun implements bootlevel.Store.
func (s *PG) UpdateRun(ctx context.Context, r bootlevel.Run) error {
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE runs SET state = $1, plan = $2, plan_hash = $3, plan_path = $4, updated = $5 WHERE name = $6`,
			string(r.State), r.Plan, r.PlanHash, r.PlanPath, formatTime(r.Updated), r.Name)
		if err == nil && tag.RowsAffected() == 0 {
			return bootlevel.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.Name, err)
	}
	return nil
}

// PutService implements bootlevel.Store.
func (s *PG) PutService(ctx context.Context, rec bootlevel.ServiceRecord) error {
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
	err = s.db.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO services
			(run, name, level, state, attributes, host, error, log_path, restarts, started, ready_at, ended, updated)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (run, name) DO UPDATE SET
			level = excluded.level, state = excluded.state, attributes = excluded.attributes,
			host = excluded.host, error = excluded.error, log_path = excluded.log_path,
			restarts = excluded.restarts, started = excluded.started, ready_at = excluded.ready_at,
			ended = excluded.ended, updated = excluded.updated`,
			rec.Run, rec.Name, rec.Level, string(rec.State), string(attrs), string(host), rec.Error, rec.LogPath,
			rec.Restarts, nullText(rec.Started), nullText(rec.ReadyAt), nullText(rec.Ended), formatTime(rec.Updated))
		return err
	})
	if pgdb.IsForeignKeyViolation(err) {
		return fmt.Errorf("put service %s/%s: run %s: %w", rec.Run, rec.Name, rec.Run, bootlevel.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("put service %s/%s: %w", rec.Run, rec.Name, err)
	}
	return nil
}

// Services implements bootlevel.Store.
func (s *PG) Services(ctx context.Context, run string) ([]bootlevel.ServiceRecord, error) {
	rows, err := s.db.Pool.Query(ctx, `SELECT name, level, state, attributes, host, error, log_path, restarts,
		started, ready_at, ended, updated FROM services WHERE run = $1 ORDER BY level, name`, run)
	if err != nil {
		return nil, fmt.Errorf("services of run %s: %w", run, err)
	}
	defer rows.Close()
	var out []bootlevel.ServiceRecord
	for rows.Next() {
		rec := bootlevel.ServiceRecord{Run: run}
		var (
			state, attrs, host               string
			started, readyAt, ended, updated *string
		)
		if err := rows.Scan(&rec.Name, &rec.Level, &state, &attrs, &host, &rec.Error, &rec.LogPath,
			&rec.Restarts, &started, &readyAt, &ended, &updated); err != nil {
			return nil, fmt.Errorf("services of run %s: %w", run, err)
		}
		rec.State = bootlevel.ServiceState(state)
		if err := json.Unmarshal([]byte(attrs), &rec.Attributes); err != nil {
			return nil, fmt.Errorf("services of run %s: service %s: column attributes: %w", run, rec.Name, err)
		}
		if err := json.Unmarshal([]byte(host), &rec.Host); err != nil {
			return nil, fmt.Errorf("services of run %s: service %s: column host: %w", run, rec.Name, err)
		}
		for _, c := range []struct {
			name string
			v    *string
			dst  *time.Time
		}{{"started", started, &rec.Started}, {"ready_at", readyAt, &rec.ReadyAt}, {"ended", ended, &rec.Ended}, {"updated", updated, &rec.Updated}} {
			if *c.dst, err = parseTime(c.name, pgText(c.v)); err != nil {
				return nil, fmt.Errorf("services of run %s: service %s: %w", run, rec.Name, err)
			}
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("services of run %s: %w", run, err)
	}
	if len(out) == 0 {
		if err := s.runExists(ctx, run); err != nil {
			return nil, fmt.Errorf("services of run %s: %w", run, err)
		}
	}
	return out, nil
}

// runExists tells "no rows" from "no run" when a read found nothing.
func (s *PG) runExists(ctx context.Context, run string) error {
	var ok bool
	if err := s.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM runs WHERE name = $1)`, run).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return bootlevel.ErrNotFound
	}
	return nil
}

// AppendEvent implements bootlevel.Store. The run's row is locked first:
// appends to one run are serialized, so their sequence numbers commit in
// order.
func (s *PG) AppendEvent(ctx context.Context, e bootlevel.Event) (bootlevel.Event, error) {
	if e.Kind == "" {
		return e, fmt.Errorf("append event to run %s: empty kind", e.Run)
	}
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM runs WHERE name = $1 FOR UPDATE`, e.Run).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return bootlevel.ErrNotFound
			}
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO events (run, time, level, service, step, kind, state, message)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq`,
			e.Run, formatTime(e.Time), e.Level, e.Service, string(e.Step), e.Kind, e.State, e.Message).Scan(&e.Seq)
	})
	if err != nil {
		return e, fmt.Errorf("append event %s to run %s: %w", e.Kind, e.Run, err)
	}
	e.Time = e.Time.UTC()
	return e, nil
}

// Events implements bootlevel.Store.
func (s *PG) Events(ctx context.Context, run string, afterSeq int64) ([]bootlevel.Event, error) {
	rows, err := s.db.Pool.Query(ctx, `SELECT seq, time, level, service, step, kind, state, message
		FROM events WHERE run = $1 AND seq > $2 ORDER BY seq`, run, afterSeq)
	if err != nil {
		return nil, fmt.Errorf("events of run %s: %w", run, err)
	}
	defer rows.Close()
	var out []bootlevel.Event
	for rows.Next() {
		e := bootlevel.Event{Run: run}
		var tm, step string
		if err := rows.Scan(&e.Seq, &tm, &e.Level, &e.Service, &step, &e.Kind, &e.State, &e.Message); err != nil {
			return nil, fmt.Errorf("events of run %s: %w", run, err)
		}
		e.Step = bootlevel.Step(step)
		if e.Time, err = parseTime("time", sql.NullString{String: tm, Valid: true}); err != nil {
			return nil, fmt.Errorf("events of run %s: event %d: %w", run, e.Seq, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events of run %s: %w", run, err)
	}
	if len(out) == 0 {
		if err := s.runExists(ctx, run); err != nil {
			return nil, fmt.Errorf("events of run %s: %w", run, err)
		}
	}
	return out, nil
}

// DeleteRun implements bootlevel.Store.
func (s *PG) DeleteRun(ctx context.Context, name string) error {
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM runs WHERE name = $1`, name)
		if err == nil && tag.RowsAffected() == 0 {
			return bootlevel.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", name, err)
	}
	return nil
}
