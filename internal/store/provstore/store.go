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
	db   *sql.DB
	path string
	// Statements on the hot path of every transition, prepared once:
	// preparing dominated the cost of a launch.
	getInstance, updateInstance, appendHistory, getLaunch *sql.Stmt
}

const selectInstance = `SELECT i.id, i.launch_id, i.idx, i.job, i.driver, i.host, i.address, i.pid, i.state, i.reason, i.created, i.updated, i.dns_name, i.dns_address, i.health, i.worker_uid,
		h.state, h.reason, h.time
		FROM instances i JOIN history h ON h.instance_id = i.id`

var _ provisioner.Store = (*Store)(nil)

// Open opens (creating if needed) the database file and applies pending
// migrations. The directory must exist.
func Open(ctx context.Context, file string) (*Store, error) {
	db, err := sqlitedb.OpenDaemon(ctx, file, migrations)
	if err != nil {
		return nil, fmt.Errorf("open provisioner store %s: %w", file, err)
	}
	s := &Store{db: db, path: file}
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
		{&s.getInstance, selectInstance + " WHERE i.id = ? ORDER BY h.seq"},
		{&s.updateInstance, `UPDATE instances SET host=?, address=?, pid=?, state=?, reason=?, live=?, updated=?, dns_address=?
		WHERE id = ? AND state = ?`},
		{&s.appendHistory, `INSERT INTO history(instance_id, seq, state, reason, time)
		SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM history WHERE instance_id = ?`},
		{&s.getLaunch, `SELECT launch_id, job, count, spec, created FROM launches WHERE launch_id = ?`},
	} {
		st, err := s.db.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		*p.stmt = st
	}
	return nil
}

// Close releases the database.
func (s *Store) Close() error {
	for _, st := range []*sql.Stmt{s.getInstance, s.updateInstance, s.appendHistory, s.getLaunch} {
		if st != nil {
			st.Close()
		}
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

// Launch implements provisioner.Store.
func (s *Store) Launch(ctx context.Context, launchID string) (provisioner.Launch, error) {
	var l provisioner.Launch
	var spec []byte
	var created int64
	err := s.getLaunch.QueryRowContext(ctx, launchID).Scan(&l.LaunchID, &l.Job, &l.Count, &spec, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return l, fmt.Errorf("launch %s: %w", launchID, provisioner.ErrNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("launch %s: %w", launchID, err)
	}
	if len(spec) > 0 {
		l.Spec = spec
	}
	l.Created = fromNanos(created)
	return l, nil
}

// Instance implements provisioner.Store.
func (s *Store) Instance(ctx context.Context, id string) (provisioner.Instance, error) {
	rows, err := s.getInstance.QueryContext(ctx, id)
	if err != nil {
		return provisioner.Instance{}, fmt.Errorf("instance %s: %w", id, err)
	}
	got, err := scanInstances(rows)
	if err != nil {
		return provisioner.Instance{}, err
	}
	if len(got) == 0 {
		return provisioner.Instance{}, fmt.Errorf("instance %s: %w", id, provisioner.ErrNotFound)
	}
	return got[0], nil
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
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return scanInstances(rows)
}

// scanInstances folds the instance-history join, ordered by instance and
// then history sequence, into records.
func scanInstances(rows *sql.Rows) ([]provisioner.Instance, error) {
	defer rows.Close()
	return foldInstances(rows)
}

// rowSource is what both backends' result sets offer.
type rowSource interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// foldInstances is scanInstances for either backend.
func foldInstances(rows rowSource) ([]provisioner.Instance, error) {
	var out []provisioner.Instance
	for rows.Next() {
		var in provisioner.Instance
		var state, hstate string
		var created, updated, htime int64
		var h provisioner.Change
		var err error
		if err = rows.Scan(&in.ID, &in.LaunchID, &in.Index, &in.Job, &in.Driver, &in.Host, &in.Address, &in.PID, &state, &in.Reason,
			&created, &updated, &in.DNSName, &in.DNSAddress, &in.Health, &in.WorkerUID, &hstate, &h.Reason, &htime); err != nil {
			return nil, fmt.Errorf("list instances: %w", err)
		}
		if in.State, err = nightshift.ParseInstanceState(state); err != nil {
			return nil, fmt.Errorf("list instances: instance %s: %w", in.ID, err)
		}
		if h.State, err = nightshift.ParseInstanceState(hstate); err != nil {
			return nil, fmt.Errorf("list instances: instance %s history: %w", in.ID, err)
		}
		h.Time = fromNanos(htime)
		if n := len(out); n > 0 && out[n-1].ID == in.ID {
			out[n-1].History = append(out[n-1].History, h)
			continue
		}
		in.Created, in.Updated = fromNanos(created), fromNanos(updated)
		in.History = []provisioner.Change{h}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return out, nil
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
	conflicts := make([]error, len(ups))
	if len(ups) == 0 {
		return conflicts, nil
	}
	for _, u := range ups {
		if len(u.Instance.History) == 0 {
			return nil, fmt.Errorf("update instance %s: no history entry to append", u.Instance.ID)
		}
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

// SetHealth implements provisioner.Store.
func (s *Store) SetHealth(ctx context.Context, id string, state nightshift.InstanceState, health string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE instances SET health = ? WHERE id = ? AND state = ?`, health, id, string(state))
	if err != nil {
		return fmt.Errorf("set health of instance %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("set health of instance %s in %s: %w", id, state, provisioner.ErrConflict)
	}
	return nil
}

const keyDisabled = "disabled"

// Disabled implements provisioner.Store.
func (s *Store) Disabled(ctx context.Context) (bool, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, keyDisabled).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read disabled flag: %w", err)
	}
	return v == "1", nil
}

// SetDisabled implements provisioner.Store.
func (s *Store) SetDisabled(ctx context.Context, disabled bool) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES(?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, keyDisabled, fmt.Sprint(boolInt(disabled)))
	if err != nil {
		return fmt.Errorf("set disabled flag: %w", err)
	}
	return nil
}

// Commands is the ledger of signed commands by id (migration 0002), kept
// in this database so a restart remembers what was handled.
func (s *Store) Commands() cmdledger.Ledger { return cmdledger.SQL{DB: s.db} }

// PutRevision implements provisioner.Store.
func (s *Store) PutRevision(ctx context.Context, r provisioner.Revision) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO revisions(job, digest, spec, created) VALUES(?,?,?,?)
		ON CONFLICT(job, digest) DO NOTHING`, r.Job, r.Digest, []byte(r.Spec), nanos(r.Created))
	if err != nil {
		return fmt.Errorf("put revision %s of job %s: %w", r.Digest, r.Job, err)
	}
	return nil
}

// Revision implements provisioner.Store.
func (s *Store) Revision(ctx context.Context, job, digest string) (provisioner.Revision, error) {
	r := provisioner.Revision{Job: job, Digest: digest}
	var spec []byte
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT spec, created FROM revisions WHERE job = ? AND digest = ?`, job, digest).Scan(&spec, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("revision %s of job %s: %w", digest, job, provisioner.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("revision %s of job %s: %w", digest, job, err)
	}
	r.Spec, r.Created = spec, fromNanos(created)
	return r, nil
}
