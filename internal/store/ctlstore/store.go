// Package ctlstore is the controller's durable memory: job configurations,
// reconfigurations (who, when, what), every decision with its reason, the
// launch ids written before a launch is sent, drains in progress and the
// frozen flag. It is one SQLite file (WAL mode, mode 0600; the default), or
// a PostgreSQL schema that replicas share (OpenPG, fenced writes), so a
// controller killed at any point restarts knowing what it already asked for.
package ctlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"nightshift/controller"
	"nightshift/internal/cmdledger"
	"nightshift/internal/store/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the controller's SQLite database.
type Store struct {
	db *sql.DB
}

// The record types are the controller's (controller.Decision, Launch,
// JobRecord, Reconfiguration); this package only stores them.
type (
	Decision        = controller.Decision
	Launch          = controller.Launch
	JobRecord       = controller.JobRecord
	Reconfiguration = controller.Reconfiguration
	PendingLaunch   = controller.PendingLaunch
	Sample          = controller.Sample
	LaunchIDFunc    = controller.LaunchIDFunc
	SilentState     = controller.SilentState
	Revision        = controller.Revision
	Rollout         = controller.Rollout
)

// encodeSilent and decodeSilent are the jobs.silent column's one spelling
// for both backends: JSON, or the empty string for the zero state.
func encodeSilent(s SilentState) (string, error) {
	if s.Equal(SilentState{}) {
		return "", nil
	}
	b, err := json.Marshal(s)
	return string(b), err
}

func decodeSilent(job, text string) (SilentState, error) {
	var s SilentState
	if text == "" {
		return s, nil
	}
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		return s, fmt.Errorf("job %q: stored silent workers: %w", job, err)
	}
	return s, nil
}

// Launch states.
const (
	LaunchPending = controller.LaunchPending
	LaunchDone    = controller.LaunchDone
	LaunchRefused = controller.LaunchRefused
)

// ErrNotFound is returned for an unknown job.
var ErrNotFound = controller.ErrNotFound

var _ controller.Store = (*Store)(nil)

// Open opens (creating if needed) the database at file and migrates it. The
// directory must exist.
func Open(ctx context.Context, file string) (*Store, error) {
	db, err := sqlitedb.OpenDaemon(ctx, file, migrations)
	if err != nil {
		return nil, fmt.Errorf("open controller store %s: %w", file, err)
	}
	return &Store{db: db}, nil
}

// Close releases the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Job returns a job's stored record, or ErrNotFound.
func (s *Store) Job(ctx context.Context, name string) (JobRecord, error) {
	r, silent, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("job %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read job %q: %w", name, err)
	}
	r.Silent, err = decodeSilent(name, silent)
	return r, err
}

// PutJob stores a job's file definition and the policy in force, keeping
// its last scale time.
func (s *Store) PutJob(ctx context.Context, name string, fileConfig, policy json.RawMessage, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO jobs (name, file_config, policy, updated) VALUES (?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET file_config = excluded.file_config, policy = excluded.policy, updated = excluded.updated`,
		name, string(fileConfig), string(policy), nanos(now))
	if err != nil {
		return fmt.Errorf("store job %q: %w", name, err)
	}
	return nil
}

// SetLastScaleAt records when a job's pool size was last changed by policy.
func (s *Store) SetLastScaleAt(ctx context.Context, job string, t time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE jobs SET last_scale_at = ? WHERE name = ?`, nanos(t), job); err != nil {
		return fmt.Errorf("store last scale of job %q: %w", job, err)
	}
	return nil
}

// SetSilent implements controller.Store.
func (s *Store) SetSilent(ctx context.Context, job string, st SilentState) error {
	text, err := encodeSilent(st)
	if err != nil {
		return fmt.Errorf("store silent workers of job %q: %w", job, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE jobs SET silent = ? WHERE name = ?`, text, job)
	if err != nil {
		return fmt.Errorf("store silent workers of job %q: %w", job, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("store silent workers of job %q: %w", job, ErrNotFound)
	}
	return nil
}

// Reconfigured records a reconfigure request; on success (errText empty) it
// also stores the resulting policy in the same transaction.
func (s *Store) Reconfigured(ctx context.Context, r Reconfiguration, policy json.RawMessage) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO reconfigurations (time, job, who, what, error) VALUES (?, ?, ?, ?, ?)`,
			nanos(r.Time), r.Job, r.Who, string(r.What), r.Error); err != nil {
			return err
		}
		if r.Error != "" {
			return nil
		}
		_, err := tx.ExecContext(ctx, `UPDATE jobs SET policy = ?, updated = ? WHERE name = ?`, string(policy), nanos(r.Time), r.Job)
		return err
	})
	if err != nil {
		return fmt.Errorf("store reconfiguration of job %q: %w", r.Job, err)
	}
	return nil
}

// Reconfigurations lists a job's reconfigure requests, oldest first.
func (s *Store) Reconfigurations(ctx context.Context, job string) ([]Reconfiguration, error) {
	what := fmt.Sprintf("read reconfigurations of job %q", job)
	rows, err := s.db.QueryContext(ctx, `SELECT `+reconfigurationColumns+` FROM reconfigurations WHERE job = ? ORDER BY id`, job)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanReconfiguration)
}

// RecordDecision stores d and the launches it asks for in one transaction,
// so a launch id exists on disk before anything is sent. It returns the
// decision's sequence number and the launch ids, in order. actions is
// called with those ids to render the actions JSON.
func (s *Store) RecordDecision(ctx context.Context, d Decision, launches []PendingLaunch, id LaunchIDFunc,
	actions func(ids []string) (json.RawMessage, error)) (int64, []string, error) {
	var seq int64
	var ids []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO decisions (time, job, engine, reason, actions, target, scaled, error)
			VALUES (?, ?, ?, ?, '[]', ?, ?, ?)`, nanos(d.Time), d.Job, d.Engine, d.Reason, d.Target, d.Scaled, d.Error)
		if err != nil {
			return err
		}
		if seq, err = res.LastInsertId(); err != nil {
			return err
		}
		ids = make([]string, len(launches))
		for i, l := range launches {
			ids[i] = id(seq, i)
			if _, err := tx.ExecContext(ctx, `INSERT INTO launches (launch_id, job, seq, count, spec, created) VALUES (?, ?, ?, ?, ?, ?)`,
				ids[i], d.Job, seq, l.Count, string(l.Spec), nanos(d.Time)); err != nil {
				return fmt.Errorf("launch %s: %w", ids[i], err)
			}
		}
		acts, err := actions(ids)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE decisions SET actions = ? WHERE seq = ?`, string(acts), seq)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("store decision of job %q: %w", d.Job, err)
	}
	return seq, ids, nil
}

// Decisions returns a job's most recent decisions, newest first; limit <= 0
// means 100.
func (s *Store) Decisions(ctx context.Context, job string, limit int) ([]Decision, error) {
	if limit <= 0 {
		limit = 100
	}
	return s.decisions(ctx, job, `SELECT `+decisionColumns+` FROM decisions WHERE job = ? ORDER BY seq DESC LIMIT ?`, job, limit)
}

// decisions runs q, a query of decisions rows (newest first, as both
// callers order them).
func (s *Store) decisions(ctx context.Context, job, q string, args ...any) ([]Decision, error) {
	what := fmt.Sprintf("read decisions of job %q", job)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanDecision)
}

// PendingLaunches lists a job's launches still in state pending.
func (s *Store) PendingLaunches(ctx context.Context, job string) ([]Launch, error) {
	what := fmt.Sprintf("read pending launches of job %q", job)
	rows, err := s.db.QueryContext(ctx, `SELECT `+launchColumns+`
		FROM launches WHERE job = ? AND state = ? ORDER BY seq, launch_id`, job, LaunchPending)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanLaunch)
}

// SetLaunchState moves a launch to done or refused, with an optional note.
func (s *Store) SetLaunchState(ctx context.Context, launchID, state, note string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE launches SET state = ?, error = ? WHERE launch_id = ?`, state, note, launchID); err != nil {
		return fmt.Errorf("store launch %s %s: %w", launchID, state, err)
	}
	return nil
}

// SetDraining records that an instance was told to drain at since.
func (s *Store) SetDraining(ctx context.Context, job, id string, since time.Time) error {
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO drains (job, instance_id, since) VALUES (?, ?, ?)`, job, id, nanos(since)); err != nil {
		return fmt.Errorf("store drain of %s: %w", id, err)
	}
	return nil
}

// ClearDraining forgets drains of instances that are gone.
func (s *Store) ClearDraining(ctx context.Context, job, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM drains WHERE job = ? AND instance_id = ?`, job, id); err != nil {
		return fmt.Errorf("forget drain of %s: %w", id, err)
	}
	return nil
}

// Draining returns a job's draining instances and when each drain began.
func (s *Store) Draining(ctx context.Context, job string) (map[string]time.Time, error) {
	what := fmt.Sprintf("read drains of job %q", job)
	rows, err := s.db.QueryContext(ctx, `SELECT instance_id, since FROM drains WHERE job = ?`, job)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	ds, err := collect(rows, what, scanDrain)
	if err != nil {
		return nil, err
	}
	return drainMap(ds), nil
}

const frozenKey = "frozen"

// SetFrozen stores the controller-wide frozen flag, so a controller
// restarted during teardown stays hands-off.
func (s *Store) SetFrozen(ctx context.Context, frozen bool) error {
	v := "0"
	if frozen {
		v = "1"
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, frozenKey, v); err != nil {
		return fmt.Errorf("store frozen flag: %w", err)
	}
	return nil
}

// Frozen reads the frozen flag (false when never set).
func (s *Store) Frozen(ctx context.Context) (bool, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, frozenKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read frozen flag: %w", err)
	}
	return v == "1", nil
}

const epochKey = "epoch"

// Epoch returns a random tag created with the store, which callers mix into
// idempotency keys so that ids from a lost store are never reused.
func (s *Store) Epoch(ctx context.Context) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, epochKey).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("read store epoch: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("create store epoch: %w", err)
	}
	v = hex.EncodeToString(b[:])
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)`, epochKey, v); err != nil {
		return "", fmt.Errorf("create store epoch: %w", err)
	}
	return s.Epoch(ctx)
}

// Commands is the ledger of signed commands by id (migration 0002), kept
// in this database so a restart remembers what was handled.
func (s *Store) Commands() cmdledger.Ledger { return cmdledger.SQL{DB: s.db} }

// DecisionsSince returns a job's decisions taken at or after since, oldest
// first: the newest limit of them (<= 0 means 10000).
func (s *Store) DecisionsSince(ctx context.Context, job string, since time.Time, limit int) ([]Decision, error) {
	if limit <= 0 {
		limit = 10000
	}
	out, err := s.decisions(ctx, job, `SELECT `+decisionColumns+` FROM decisions WHERE job = ? AND time >= ? ORDER BY seq DESC LIMIT ?`,
		job, nanos(since), limit)
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// RecordSample stores one sample of a job's pool.
func (s *Store) RecordSample(ctx context.Context, sm Sample) error {
	var depth sql.NullInt64
	if sm.QueueDepth != nil {
		depth = sql.NullInt64{Int64: int64(*sm.QueueDepth), Valid: true}
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO samples (time, job, desired, running, healthy, queue_depth) VALUES (?, ?, ?, ?, ?, ?)`,
		nanos(sm.Time), sm.Job, sm.Desired, sm.Running, sm.Healthy, depth); err != nil {
		return fmt.Errorf("store sample of job %q: %w", sm.Job, err)
	}
	return nil
}

// Samples returns a job's samples taken at or after since, oldest first.
func (s *Store) Samples(ctx context.Context, job string, since time.Time) ([]Sample, error) {
	what := fmt.Sprintf("read samples of job %q", job)
	rows, err := s.db.QueryContext(ctx, `SELECT `+sampleColumns+`
		FROM samples WHERE job = ? AND time >= ? ORDER BY time, id`, job, nanos(since))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanSample)
}

// CompactSamples thins a job's samples taken before thinBefore to the first
// of each period of every (periods counted from the Unix epoch, so thinning
// again keeps the same points), and deletes those taken before dropBefore.
// Plain SQL (integer division), so another backend can run it as written.
func (s *Store) CompactSamples(ctx context.Context, job string, thinBefore time.Time, every time.Duration, dropBefore time.Time) error {
	if every <= 0 {
		return fmt.Errorf("compact samples of job %q: period %v, want > 0", job, every)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM samples WHERE job = ? AND time < ?`, job, nanos(dropBefore)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM samples WHERE job = ? AND time < ? AND id NOT IN (
			SELECT MIN(id) FROM samples WHERE job = ? AND time < ? GROUP BY time / ?)`,
			job, nanos(thinBefore), job, nanos(thinBefore), int64(every))
		return err
	})
	if err != nil {
		return fmt.Errorf("compact samples of job %q: %w", job, err)
	}
	return nil
}

// OpenReadOnly opens an existing controller store for reading only (mgmt's
// history and plot), whether its controller runs or not; no method that
// writes may be called on the result. A store written by a controller older
// than the pools' history has no samples table, and Samples then fails.
func OpenReadOnly(ctx context.Context, file string) (*Store, error) {
	db, err := sqlitedb.OpenReadOnly(ctx, file)
	if err != nil {
		return nil, fmt.Errorf("open controller store %s: %w", file, err)
	}
	return &Store{db: db}, nil
}

// HasJob reports whether the store has ever held job.
func (s *Store) HasJob(ctx context.Context, job string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE name = ?`, job).Scan(&n); err != nil {
		return false, fmt.Errorf("look for job %q: %w", job, err)
	}
	return n > 0, nil
}

// PutRevision implements controller.Store.
func (s *Store) PutRevision(ctx context.Context, r Revision) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO revisions (job, number, digest, spec, time, who, outcome, note, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job, number) DO UPDATE SET outcome = excluded.outcome, note = excluded.note, updated = excluded.updated`,
		r.Job, r.Number, r.Digest, string(r.Spec), nanos(r.Time), r.Who, r.Outcome, r.Note, nanos(r.Updated)); err != nil {
		return fmt.Errorf("store revision %d of job %q: %w", r.Number, r.Job, err)
	}
	return nil
}

// Revisions implements controller.Store.
func (s *Store) Revisions(ctx context.Context, job string) ([]Revision, error) {
	what := fmt.Sprintf("read revisions of job %q", job)
	rows, err := s.db.QueryContext(ctx, `SELECT `+revisionColumns+`
		FROM revisions WHERE job = ? ORDER BY number`, job)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanRevision)
}

// PutRollout implements controller.Store.
func (s *Store) PutRollout(ctx context.Context, r Rollout, now time.Time) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store rollout of job %q: %w", r.Job, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO rollouts (job, state, updated) VALUES (?, ?, ?)
		ON CONFLICT (job) DO UPDATE SET state = excluded.state, updated = excluded.updated`, r.Job, string(b), nanos(now)); err != nil {
		return fmt.Errorf("store rollout of job %q: %w", r.Job, err)
	}
	return nil
}

// Rollout implements controller.Store.
func (s *Store) Rollout(ctx context.Context, job string) (Rollout, error) {
	var state string
	err := s.db.QueryRowContext(ctx, `SELECT state FROM rollouts WHERE job = ?`, job).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return Rollout{}, fmt.Errorf("rollout of job %q: %w", job, ErrNotFound)
	}
	if err != nil {
		return Rollout{}, fmt.Errorf("read rollout of job %q: %w", job, err)
	}
	var r Rollout
	if err := json.Unmarshal([]byte(state), &r); err != nil {
		return Rollout{}, fmt.Errorf("read rollout of job %q: %w", job, err)
	}
	return r, nil
}
