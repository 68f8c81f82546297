package ctlstore

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"nightshift/controller"
	"nightshift/internal/cmdledger"
	"nightshift/internal/leader"
	"nightshift/internal/store/pgdb"
)

//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

// PG is a controller.Store in a PostgreSQL schema, which replicas of the
// controller share. Opened with a fence, every write first checks that its
// holder still leads, so a deposed replica's writes fail with
// leader.ErrFenced.
type PG struct {
	db *pgdb.DB
}

var _ controller.Store = (*PG)(nil)

// OpenPG connects to url, in schema (pgdb.SchemaName of the run and
// "controller" by convention), and applies pending migrations.
func OpenPG(ctx context.Context, url, schema string, fence leader.Fence) (*PG, error) {
	db, err := pgdb.Open(ctx, pgdb.Config{URL: url, Schema: schema, Migrations: pgMigrations, Dir: "pgmigrations", Fence: fence})
	if err != nil {
		return nil, fmt.Errorf("open controller store: %w", err)
	}
	return &PG{db: db}, nil
}

// OpenPGReadOnly opens an existing controller schema for reading only
// (mgmt's history and plot); the server refuses any write. A missing
// schema is an error wrapping fs.ErrNotExist.
func OpenPGReadOnly(ctx context.Context, url, schema string) (*PG, error) {
	db, err := pgdb.OpenReadOnly(ctx, url, schema)
	if err != nil {
		return nil, fmt.Errorf("open controller store: %w", err)
	}
	return &PG{db: db}, nil
}

// Locator is what a controller on PostgreSQL leaves in its state directory
// (LocatorFile, mode 0600, since the URL may hold a password) in place of
// controller.db, so that mgmt finds its store.
type Locator struct {
	URL    string `json:"url"`
	Schema string `json:"schema"`
}

// LocatorFile is the locator's name in the controller's state directory.
const LocatorFile = "controller.pg.json"

// WriteLocator writes l into dir.
func WriteLocator(dir string, l Locator) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, LocatorFile)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return os.Chmod(p, 0o600)
}

// OpenLocated opens, read-only, the store a locator file names.
func OpenLocated(ctx context.Context, file string) (*PG, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var l Locator
	if err := json.Unmarshal(b, &l); err != nil || l.URL == "" || l.Schema == "" {
		return nil, fmt.Errorf("%s: want {\"url\": ..., \"schema\": ...}", file)
	}
	return OpenPGReadOnly(ctx, l.URL, l.Schema)
}

// Fenced is the same store whose writes check f (see pgdb.DB.WithFence).
// Closing either closes both.
func (s *PG) Fenced(f leader.Fence) *PG { return &PG{db: s.db.WithFence(f)} }

// Close releases the connections.
func (s *PG) Close() error { s.db.Close(); return nil }

// DB is the store's schema, for its leases and for tests.
func (s *PG) DB() *pgdb.DB { return s.db }

// Commands is the ledger of signed commands in this schema.
func (s *PG) Commands() cmdledger.Ledger { return pgdb.Ledger{DB: s.db} }

func (s *PG) exec(ctx context.Context, q string, args ...any) error {
	return s.db.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
}

// Job implements controller.Store.
func (s *PG) Job(ctx context.Context, name string) (JobRecord, error) {
	r, silent, err := scanJob(s.db.Pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("job %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read job %q: %w", name, err)
	}
	r.Silent, err = decodeSilent(name, silent)
	return r, err
}

// PutJob implements controller.Store.
func (s *PG) PutJob(ctx context.Context, name string, fileConfig, policy json.RawMessage, now time.Time) error {
	if err := s.exec(ctx, `INSERT INTO jobs (name, file_config, policy, updated) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET file_config = excluded.file_config, policy = excluded.policy, updated = excluded.updated`,
		name, string(fileConfig), string(policy), nanos(now)); err != nil {
		return fmt.Errorf("store job %q: %w", name, err)
	}
	return nil
}

// SetLastScaleAt implements controller.Store.
func (s *PG) SetLastScaleAt(ctx context.Context, job string, t time.Time) error {
	if err := s.exec(ctx, `UPDATE jobs SET last_scale_at = $1 WHERE name = $2`, nanos(t), job); err != nil {
		return fmt.Errorf("store last scale of job %q: %w", job, err)
	}
	return nil
}

// SetSilent implements controller.Store.
func (s *PG) SetSilent(ctx context.Context, job string, st SilentState) error {
	text, err := encodeSilent(st)
	if err != nil {
		return fmt.Errorf("store silent workers of job %q: %w", job, err)
	}
	err = s.db.Write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE jobs SET silent = $1 WHERE name = $2`, text, job)
		if err == nil && tag.RowsAffected() == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store silent workers of job %q: %w", job, err)
	}
	return nil
}

// Reconfigured implements controller.Store.
func (s *PG) Reconfigured(ctx context.Context, r Reconfiguration, policy json.RawMessage) error {
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO reconfigurations (time, job, who, what, error) VALUES ($1, $2, $3, $4, $5)`,
			nanos(r.Time), r.Job, r.Who, string(r.What), r.Error); err != nil {
			return err
		}
		if r.Error != "" {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE jobs SET policy = $1, updated = $2 WHERE name = $3`, string(policy), nanos(r.Time), r.Job)
		return err
	})
	if err != nil {
		return fmt.Errorf("store reconfiguration of job %q: %w", r.Job, err)
	}
	return nil
}

// Reconfigurations lists a job's reconfigure requests, oldest first.
func (s *PG) Reconfigurations(ctx context.Context, job string) ([]Reconfiguration, error) {
	what := fmt.Sprintf("read reconfigurations of job %q", job)
	rows, err := s.db.Pool.Query(ctx, `SELECT `+reconfigurationColumns+` FROM reconfigurations WHERE job = $1 ORDER BY id`, job)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanReconfiguration)
}

// RecordDecision implements controller.Store. The sequence number comes
// from an identity column: unique across replicas, so launch ids made from
// it never collide; a retried transaction draws a new one.
func (s *PG) RecordDecision(ctx context.Context, d Decision, launches []PendingLaunch, id LaunchIDFunc,
	actions func(ids []string) (json.RawMessage, error)) (int64, []string, error) {
	var seq int64
	var ids []string
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO decisions (time, job, engine, reason, actions, target, scaled, error)
			VALUES ($1, $2, $3, $4, '[]', $5, $6, $7) RETURNING seq`,
			nanos(d.Time), d.Job, d.Engine, d.Reason, d.Target, d.Scaled, d.Error).Scan(&seq); err != nil {
			return err
		}
		ids = make([]string, len(launches))
		for i, l := range launches {
			ids[i] = id(seq, i)
			if _, err := tx.Exec(ctx, `INSERT INTO launches (launch_id, job, seq, count, spec, created) VALUES ($1, $2, $3, $4, $5, $6)`,
				ids[i], d.Job, seq, l.Count, string(l.Spec), nanos(d.Time)); err != nil {
				return fmt.Errorf("launch %s: %w", ids[i], err)
			}
		}
		acts, err := actions(ids)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE decisions SET actions = $1 WHERE seq = $2`, string(acts), seq)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("store decision of job %q: %w", d.Job, err)
	}
	return seq, ids, nil
}

// Decisions implements controller.Store.
func (s *PG) Decisions(ctx context.Context, job string, limit int) ([]Decision, error) {
	if limit <= 0 {
		limit = 100
	}
	return s.decisions(ctx, job, `SELECT `+decisionColumns+` FROM decisions WHERE job = $1 ORDER BY seq DESC LIMIT $2`, job, limit)
}

// DecisionsSince implements controller.Store.
func (s *PG) DecisionsSince(ctx context.Context, job string, since time.Time, limit int) ([]Decision, error) {
	if limit <= 0 {
		limit = 10000
	}
	out, err := s.decisions(ctx, job, `SELECT `+decisionColumns+` FROM decisions WHERE job = $1 AND time >= $2 ORDER BY seq DESC LIMIT $3`,
		job, nanos(since), limit)
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

func (s *PG) decisions(ctx context.Context, job, q string, args ...any) ([]Decision, error) {
	what := fmt.Sprintf("read decisions of job %q", job)
	rows, err := s.db.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanDecision)
}

// PendingLaunches implements controller.Store.
func (s *PG) PendingLaunches(ctx context.Context, job string) ([]Launch, error) {
	what := fmt.Sprintf("read pending launches of job %q", job)
	rows, err := s.db.Pool.Query(ctx, `SELECT `+launchColumns+`
		FROM launches WHERE job = $1 AND state = $2 ORDER BY seq, launch_id`, job, LaunchPending)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanLaunch)
}

// SetLaunchState implements controller.Store.
func (s *PG) SetLaunchState(ctx context.Context, launchID, state, note string) error {
	if err := s.exec(ctx, `UPDATE launches SET state = $1, error = $2 WHERE launch_id = $3`, state, note, launchID); err != nil {
		return fmt.Errorf("store launch %s %s: %w", launchID, state, err)
	}
	return nil
}

// SetDraining implements controller.Store.
func (s *PG) SetDraining(ctx context.Context, job, id string, since time.Time) error {
	if err := s.exec(ctx, `INSERT INTO drains (job, instance_id, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		job, id, nanos(since)); err != nil {
		return fmt.Errorf("store drain of %s: %w", id, err)
	}
	return nil
}

// ClearDraining implements controller.Store.
func (s *PG) ClearDraining(ctx context.Context, job, id string) error {
	if err := s.exec(ctx, `DELETE FROM drains WHERE job = $1 AND instance_id = $2`, job, id); err != nil {
		return fmt.Errorf("forget drain of %s: %w", id, err)
	}
	return nil
}

// Draining implements controller.Store.
func (s *PG) Draining(ctx context.Context, job string) (map[string]time.Time, error) {
	what := fmt.Sprintf("read drains of job %q", job)
	rows, err := s.db.Pool.Query(ctx, `SELECT instance_id, since FROM drains WHERE job = $1`, job)
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

func (s *PG) setting(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.db.Pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, err
}

// SetFrozen implements controller.Store.
func (s *PG) SetFrozen(ctx context.Context, frozen bool) error {
	v := "0"
	if frozen {
		v = "1"
	}
	if err := s.exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, frozenKey, v); err != nil {
		return fmt.Errorf("store frozen flag: %w", err)
	}
	return nil
}

// Frozen implements controller.Store.
func (s *PG) Frozen(ctx context.Context) (bool, error) {
	v, _, err := s.setting(ctx, frozenKey)
	if err != nil {
		return false, fmt.Errorf("read frozen flag: %w", err)
	}
	return v == "1", nil
}

// Epoch implements controller.Store. Replicas opening a fresh schema at
// once all end up with the one tag the first insert stored.
func (s *PG) Epoch(ctx context.Context) (string, error) {
	v, ok, err := s.setting(ctx, epochKey)
	if err != nil {
		return "", fmt.Errorf("read store epoch: %w", err)
	}
	if ok {
		return v, nil
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("create store epoch: %w", err)
	}
	if err := s.exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING`, epochKey, hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("create store epoch: %w", err)
	}
	return s.Epoch(ctx)
}

// RecordSample implements controller.Store.
func (s *PG) RecordSample(ctx context.Context, sm Sample) error {
	if err := s.exec(ctx, `INSERT INTO samples (time, job, desired, running, healthy, queue_depth) VALUES ($1, $2, $3, $4, $5, $6)`,
		nanos(sm.Time), sm.Job, sm.Desired, sm.Running, sm.Healthy, sm.QueueDepth); err != nil {
		return fmt.Errorf("store sample of job %q: %w", sm.Job, err)
	}
	return nil
}

// Samples implements controller.Store.
func (s *PG) Samples(ctx context.Context, job string, since time.Time) ([]Sample, error) {
	what := fmt.Sprintf("read samples of job %q", job)
	rows, err := s.db.Pool.Query(ctx, `SELECT `+sampleColumns+`
		FROM samples WHERE job = $1 AND time >= $2 ORDER BY time, id`, job, nanos(since))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanSample)
}

// CompactSamples implements controller.Store with the SQLite store's
// statements (integer division of bigints is the same here).
func (s *PG) CompactSamples(ctx context.Context, job string, thinBefore time.Time, every time.Duration, dropBefore time.Time) error {
	if every <= 0 {
		return fmt.Errorf("compact samples of job %q: period %v, want > 0", job, every)
	}
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM samples WHERE job = $1 AND time < $2`, job, nanos(dropBefore)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM samples WHERE job = $1 AND time < $2 AND id NOT IN (
			SELECT MIN(id) FROM samples WHERE job = $1 AND time < $2 GROUP BY time / $3)`,
			job, nanos(thinBefore), int64(every))
		return err
	})
	if err != nil {
		return fmt.Errorf("compact samples of job %q: %w", job, err)
	}
	return nil
}

// HasJob reports whether the store has ever held job.
func (s *PG) HasJob(ctx context.Context, job string) (bool, error) {
	var ok bool
	if err := s.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM jobs WHERE name = $1)`, job).Scan(&ok); err != nil {
		return false, fmt.Errorf("look for job %q: %w", job, err)
	}
	return ok, nil
}

// PutRevision implements controller.Store.
func (s *PG) PutRevision(ctx context.Context, r Revision) error {
	if err := s.exec(ctx, `INSERT INTO revisions (job, number, digest, spec, time, who, outcome, note, updated)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (job, number) DO UPDATE SET outcome = excluded.outcome, note = excluded.note, updated = excluded.updated`,
		r.Job, r.Number, r.Digest, string(r.Spec), nanos(r.Time), r.Who, r.Outcome, r.Note, nanos(r.Updated)); err != nil {
		return fmt.Errorf("store revision %d of job %q: %w", r.Number, r.Job, err)
	}
	return nil
}

// Revisions implements controller.Store.
func (s *PG) Revisions(ctx context.Context, job string) ([]Revision, error) {
	what := fmt.Sprintf("read revisions of job %q", job)
	rows, err := s.db.Pool.Query(ctx, `SELECT `+revisionColumns+`
		FROM revisions WHERE job = $1 ORDER BY number`, job)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	return collect(rows, what, scanRevision)
}

// PutRollout implements controller.Store.
func (s *PG) PutRollout(ctx context.Context, r Rollout, now time.Time) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store rollout of job %q: %w", r.Job, err)
	}
	if err := s.exec(ctx, `INSERT INTO rollouts (job, state, updated) VALUES ($1, $2, $3)
		ON CONFLICT (job) DO UPDATE SET state = excluded.state, updated = excluded.updated`, r.Job, string(b), nanos(now)); err != nil {
		return fmt.Errorf("store rollout of job %q: %w", r.Job, err)
	}
	return nil
}

// Rollout implements controller.Store.
func (s *PG) Rollout(ctx context.Context, job string) (Rollout, error) {
	var state string
	err := s.db.Pool.QueryRow(ctx, `SELECT state FROM rollouts WHERE job = $1`, job).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
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
