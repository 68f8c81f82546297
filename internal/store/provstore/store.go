// Package provstore is the provisioner's durable memory: launches, instance
// records and their full state history in one SQLite file (WAL mode, mode
// 0600; the default), or in a PostgreSQL schema that replicas share
// (OpenPG, fenced writes), so a restarted provisioner can tell what it asked
// for from what exists. Both implement provisioner.Store.
package provstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"nightshift"
	"nightshift/internal/cmdledger"
	"nightshift/internal/store/sqlitedb"
	"nightshift/provisioner"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a provisioner.Store backed by SQLite.
type Store struct {
	shared
	db   *sql.DB
	path string
	// Statements on the hot path of every transition, prepared once:
	// preparing dominated the cost of a launch.
	updateInstance, appendHistory *sql.Stmt
	// sq runs the statements shared with PG; it holds the prepared
	// instance and launch reads.
	sq *sqliteDB
}

var _ provisioner.Store = (*Store)(nil)

// Open opens (creating if needed) the database file and applies pending
// migrations. The directory must exist.
func Open(ctx context.Context, file string) (*Store, error) {
	db, err := sqlitedb.OpenDaemon(ctx, file, migrations)
	if err != nil {
		return nil, fmt.Errorf("open provisioner store %s: %w", file, err)
	}
	s := &Store{db: db, path: file, sq: &sqliteDB{db: db, stmts: map[string]*sql.Stmt{}}}
	s.shared = shared{db: s.sq}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open provisioner store %s: %w", file, err)
	}
	return s, nil
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		q    string
	}{
		{&s.updateInstance, `UPDATE instances SET host=?, address=?, pid=?, state=?, reason=?, live=?, updated=?, dns_address=?
		WHERE id = ? AND state = ?`},
		{&s.appendHistory, `INSERT INTO history(instance_id, seq, state, reason, time)
		SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM history WHERE instance_id = ?`},
	} {
		st, err := s.db.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		*p.stmt = st
	}
	for _, q := range []string{qInstance, qLaunch} {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		s.sq.stmts[q] = st
	}
	return nil
}

// Close releases the database.
func (s *Store) Close() error {
	for _, st := range []*sql.Stmt{s.updateInstance, s.appendHistory} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range s.sq.stmts {
		st.Close()
	}
	return s.db.Close()
}

func nanos(t time.Time) int64 { return t.UnixNano() }
func fromNanos(n int64) time.Time {
	return time.Unix(0, n).UTC()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CreateLaunch implements provisioner.Store.
func (s *Store) CreateLaunch(ctx context.Context, l provisioner.Launch, insts []provisioner.Instance) ([]provisioner.Instance, bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, fmt.Errorf("create launch %s: %w", l.LaunchID, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO launches(launch_id, job, count, spec, created) VALUES(?,?,?,?,?)
		ON CONFLICT(launch_id) DO NOTHING`, l.LaunchID, l.Job, l.Count, []byte(l.Spec), nanos(l.Created))
	if err != nil {
		return nil, false, fmt.Errorf("create launch %s: %w", l.LaunchID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		tx.Rollback()
		existing, err := s.Instances(ctx, provisioner.Filter{LaunchID: l.LaunchID})
		if err != nil {
			return nil, false, fmt.Errorf("create launch %s: read existing: %w", l.LaunchID, err)
		}
		return existing, false, nil
	}
	insI, err := tx.PrepareContext(ctx, `INSERT INTO instances(id, launch_id, idx, job, driver, host, address, pid, state, reason, live, created, updated, dns_name, worker_uid)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return nil, false, fmt.Errorf("create launch %s: %w", l.LaunchID, err)
	}
	defer insI.Close()
	insH, err := tx.PrepareContext(ctx, `INSERT INTO history(instance_id, seq, state, reason, time) VALUES(?,?,?,?,?)`)
	if err != nil {
		return nil, false, fmt.Errorf("create launch %s: %w", l.LaunchID, err)
	}
	defer insH.Close()
	for _, in := range insts {
		if _, err := insI.ExecContext(ctx, in.ID, in.LaunchID, in.Index, in.Job, in.Driver, in.Host, in.Address, in.PID,
			string(in.State), in.Reason, boolInt(in.State.Live()), nanos(in.Created), nanos(in.Updated), in.DNSName, int64(in.WorkerUID)); err != nil {
			return nil, false, fmt.Errorf("create launch %s: instance %s: %w", l.LaunchID, in.ID, err)
		}
		for seq, h := range in.History {
			if _, err := insH.ExecContext(ctx, in.ID, seq+1, string(h.State), h.Reason, nanos(h.Time)); err != nil {
				return nil, false, fmt.Errorf("create launch %s: instance %s history: %w", l.LaunchID, in.ID, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, false, fmt.Errorf("create launch %s: commit: %w", l.LaunchID, err)
	}
	return nil, true, nil
}

// Instances implements provisioner.Store.
func (s *Store) Instances(ctx context.Context, f provisioner.Filter) ([]provisioner.Instance, error) {
	var where []string
	var args []any
	if f.Job != "" {
		where = append(where, "i.job = ?")
		args = append(args, f.Job)
	}
	if f.LaunchID != "" {
		where = append(where, "i.launch_id = ?")
		args = append(args, f.LaunchID)
	}
	if f.LiveOnly {
		where = append(where, "i.live = 1")
	}
	if len(f.IDs) > 0 {
		where = append(where, "i.id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(f.IDs)), ",")+")")
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	q := selectInstance
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY i.created, i.launch_id, i.idx, h.seq"
	return s.list(ctx, q, args...)
}

// UpdateInstance implements provisioner.Store.
func (s *Store) UpdateInstance(ctx context.Context, in provisioner.Instance, prev nightshift.InstanceState) error {
	conflicts, err := s.UpdateInstances(ctx, []provisioner.Update{{Instance: in, Prev: prev}})
	if err != nil {
		return err
	}
	return conflicts[0]
}

// UpdateInstances implements provisioner.Store: one immediate transaction,
// so a burst of transitions costs one commit.
func (s *Store) UpdateInstances(ctx context.Context, ups []provisioner.Update) ([]error, error) {
	conflicts, err := newConflicts(ups)
	if err != nil || len(ups) == 0 {
		return conflicts, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("update %d instances: %w", len(ups), err)
	}
	defer tx.Rollback()
	upd, hist := tx.StmtContext(ctx, s.updateInstance), tx.StmtContext(ctx, s.appendHistory)
	for k, u := range ups {
		in, h := u.Instance, u.Instance.History[len(u.Instance.History)-1]
		res, err := upd.ExecContext(ctx, in.Host, in.Address, in.PID, string(in.State), in.Reason, boolInt(in.State.Live()),
			nanos(in.Updated), in.DNSAddress, in.ID, string(u.Prev))
		if err != nil {
			return nil, fmt.Errorf("update instance %s: %w", in.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			conflicts[k] = fmt.Errorf("update instance %s from %s: %w", in.ID, u.Prev, provisioner.ErrConflict)
			continue
		}
		if _, err := hist.ExecContext(ctx, in.ID, string(h.State), h.Reason, nanos(h.Time), in.ID); err != nil {
			return nil, fmt.Errorf("update instance %s: history: %w", in.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("update %d instances: commit: %w", len(ups), err)
	}
	return conflicts, nil
}

// Commands is the ledger of signed commands by id (migration 0002), kept
// in this database so a restart remembers what was handled.
func (s *Store) Commands() cmdledger.Ledger { return cmdledger.SQL{DB: s.db} }

// sqliteDB runs the shared statements on SQLite; those in
// stmts (by query) are prepared once, as the hot path wants.
type sqliteDB struct {
	db    *sql.DB
	stmts map[string]*sql.Stmt
}

func (d *sqliteDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := d.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (d *sqliteDB) execEach(ctx context.Context, q string, args [][]any) ([]int64, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	n := make([]int64, len(args))
	for k, a := range args {
		res, err := st.ExecContext(ctx, a...)
		if err != nil {
			return nil, err
		}
		if n[k], err = res.RowsAffected(); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return n, nil
}

func (d *sqliteDB) queryRow(ctx context.Context, q string, args ...any) interface{ Scan(dest ...any) error } {
	if st := d.stmts[q]; st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.db.QueryRowContext(ctx, q, args...)
}

func (d *sqliteDB) query(ctx context.Context, q string, args ...any) (closingRows, error) {
	var rs *sql.Rows
	var err error
	if st := d.stmts[q]; st != nil {
		rs, err = st.QueryContext(ctx, args...)
	} else {
		rs, err = d.db.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

func (*sqliteDB) noRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// sqlRows gives database/sql's result set pgx's Close.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
