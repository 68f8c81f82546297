package provstore

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"nightshift"
	"nightshift/internal/cmdledger"
	"nightshift/internal/leader"
	"nightshift/internal/store/pgdb"
	"nightshift/provisioner"
)

//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

// PG is a provisioner.Store in a PostgreSQL schema, which replicas of the
// provisioner share. Opened with a fence, every write first checks that
// its holder still leads (leader.Fence), so a deposed replica's writes
// fail with leader.ErrFenced.
type PG struct {
	db *pgdb.DB
}

var _ provisioner.Store = (*PG)(nil)

// OpenPG connects to url, in schema (pgdb.SchemaName of the run and
// "provisioner" by convention), and applies pending migrations.
func OpenPG(ctx context.Context, url, schema string, fence leader.Fence) (*PG, error) {
	db, err := pgdb.Open(ctx, pgdb.Config{URL: url, Schema: schema, Migrations: pgMigrations, Dir: "pgmigrations", Fence: fence})
	if err != nil {
		return nil, fmt.Errorf("open provisioner store: %w", err)
	}
	return &PG{db: db}, nil
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

// CreateLaunch implements provisioner.Store. Two replicas recording one
// launch id at once: the second insert waits on the first's key and then
// does nothing, so exactly one set of instances is written.
func (s *PG) CreateLaunch(ctx context.Context, l provisioner.Launch, insts []provisioner.Instance) ([]provisioner.Instance, bool, error) {
	created := false
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		created = false
		tag, err := tx.Exec(ctx, `INSERT INTO launches(launch_id, job, count, spec, created) VALUES($1,$2,$3,$4,$5)
			ON CONFLICT (launch_id) DO NOTHING`, l.LaunchID, l.Job, l.Count, []byte(l.Spec), nanos(l.Created))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		var b pgx.Batch
		for _, in := range insts {
			b.Queue(`INSERT INTO instances(id, launch_id, idx, job, driver, host, address, pid, state, reason, live, created, updated, dns_name, worker_uid)
				VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)`, in.ID, in.LaunchID, in.Index, in.Job, in.Driver, in.Host, in.Address, in.PID,
				string(in.State), in.Reason, in.State.Live(), nanos(in.Created), nanos(in.Updated), in.DNSName, int64(in.WorkerUID))
			for seq, h := range in.History {
				b.Queue(`INSERT INTO history(instance_id, seq, state, reason, time) VALUES($1,$2,$3,$4,$5)`,
					in.ID, seq+1, string(h.State), h.Reason, nanos(h.Time))
			}
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("instances: %w", err)
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("create launch %s: %w", l.LaunchID, err)
	}
	if created {
		return nil, true, nil
	}
	existing, err := s.Instances(ctx, provisioner.Filter{LaunchID: l.LaunchID})
	if err != nil {
		return nil, false, fmt.Errorf("create launch %s: read existing: %w", l.LaunchID, err)
	}
	return existing, false, nil
}

// Launch implements provisioner.Store.
func (s *PG) Launch(ctx context.Context, launchID string) (provisioner.Launch, error) {
	var l provisioner.Launch
	var spec []byte
	var created int64
	err := s.db.Pool.QueryRow(ctx, `SELECT launch_id, job, count, spec, created FROM launches WHERE launch_id = $1`, launchID).
		Scan(&l.LaunchID, &l.Job, &l.Count, &spec, &created)
	if errors.Is(err, pgx.ErrNoRows) {
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
func (s *PG) Instance(ctx context.Context, id string) (provisioner.Instance, error) {
	got, err := s.list(ctx, selectInstance+" WHERE i.id = $1 ORDER BY h.seq", id)
	if err != nil {
		return provisioner.Instance{}, fmt.Errorf("instance %s: %w", id, err)
	}
	if len(got) == 0 {
		return provisioner.Instance{}, fmt.Errorf("instance %s: %w", id, provisioner.ErrNotFound)
	}
	return got[0], nil
}

// Instances implements provisioner.Store.
func (s *PG) Instances(ctx context.Context, f provisioner.Filter) ([]provisioner.Instance, error) {
	q := selectInstance + ` WHERE ($1 = '' OR i.job = $1) AND ($2 = '' OR i.launch_id = $2) AND (NOT $3 OR i.live)
		AND (cardinality($4::text[]) = 0 OR i.id = ANY($4))
		ORDER BY i.created, i.launch_id, i.idx, h.seq`
	ids := f.IDs
	if ids == nil {
		ids = []string{}
	}
	return s.list(ctx, q, f.Job, f.LaunchID, f.LiveOnly, ids)
}

func (s *PG) list(ctx context.Context, q string, args ...any) ([]provisioner.Instance, error) {
	rows, err := s.db.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	defer rows.Close()
	return foldInstances(rows)
}

// UpdateInstance implements provisioner.Store.
func (s *PG) UpdateInstance(ctx context.Context, in provisioner.Instance, prev nightshift.InstanceState) error {
	conflicts, err := s.UpdateInstances(ctx, []provisioner.Update{{Instance: in, Prev: prev}})
	if err != nil {
		return err
	}
	return conflicts[0]
}

// pgUpdate is one compare-and-set with its history entry in one statement:
// the UPDATE locks the instance's row, so the history sequence read with it
// is this writer's alone until commit, and the history row is written only
// when the UPDATE matched. A writer that waited for the row lock finds the
// state moved on (every transition changes it) and matches nothing.
const pgUpdate = `WITH u AS (
		UPDATE instances SET host=$1, address=$2, pid=$3, state=$4, reason=$5, live=$6, updated=$7, dns_address=$10
		WHERE id = $8 AND state = $9 RETURNING id)
	INSERT INTO history(instance_id, seq, state, reason, time)
	SELECT u.id, COALESCE((SELECT MAX(seq) FROM history WHERE instance_id = u.id), 0) + 1, $11, $12, $13 FROM u`

// UpdateInstances implements provisioner.Store: one transaction whose
// statements go out as one pipelined batch, so a burst of transitions
// costs one round trip and one commit.
func (s *PG) UpdateInstances(ctx context.Context, ups []provisioner.Update) ([]error, error) {
	conflicts := make([]error, len(ups))
	if len(ups) == 0 {
		return conflicts, nil
	}
	for _, u := range ups {
		if len(u.Instance.History) == 0 {
			return nil, fmt.Errorf("update instance %s: no history entry to append", u.Instance.ID)
		}
	}
	// Updates of one instance in one batch must see each other's history
	// rows, which one statement's snapshot would not: such a batch is
	// written one statement at a time.
	seen := make(map[string]bool, len(ups))
	pipelined := true
	for _, u := range ups {
		if seen[u.Instance.ID] {
			pipelined = false
			break
		}
		seen[u.Instance.ID] = true
	}
	args := func(u provisioner.Update) []any {
		in, h := u.Instance, u.Instance.History[len(u.Instance.History)-1]
		return []any{in.Host, in.Address, in.PID, string(in.State), in.Reason, in.State.Live(), nanos(in.Updated), in.ID, string(u.Prev),
			in.DNSAddress, string(h.State), h.Reason, nanos(h.Time)}
	}
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		clear(conflicts)
		if !pipelined {
			for k, u := range ups {
				tag, err := tx.Exec(ctx, pgUpdate, args(u)...)
				if err != nil {
					return fmt.Errorf("instance %s: %w", u.Instance.ID, err)
				}
				if tag.RowsAffected() == 0 {
					conflicts[k] = fmt.Errorf("update instance %s from %s: %w", u.Instance.ID, u.Prev, provisioner.ErrConflict)
				}
			}
			return nil
		}
		var b pgx.Batch
		for _, u := range ups {
			b.Queue(pgUpdate, args(u)...)
		}
		br := tx.SendBatch(ctx, &b)
		for k, u := range ups {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return fmt.Errorf("instance %s: %w", u.Instance.ID, err)
			}
			if tag.RowsAffected() == 0 {
				conflicts[k] = fmt.Errorf("update instance %s from %s: %w", u.Instance.ID, u.Prev, provisioner.ErrConflict)
			}
		}
		return br.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("update %d instances: %w", len(ups), err)
	}
	return conflicts, nil
}

// SetHealth implements provisioner.Store.
func (s *PG) SetHealth(ctx context.Context, id string, state nightshift.InstanceState, health string) error {
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE instances SET health = $1 WHERE id = $2 AND state = $3`, health, id, string(state))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("in %s: %w", state, provisioner.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set health of instance %s: %w", id, err)
	}
	return nil
}

// Disabled implements provisioner.Store.
func (s *PG) Disabled(ctx context.Context) (bool, error) {
	var v string
	err := s.db.Pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, keyDisabled).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read disabled flag: %w", err)
	}
	return v == "1", nil
}

// SetDisabled implements provisioner.Store.
func (s *PG) SetDisabled(ctx context.Context, disabled bool) error {
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO settings(key, value) VALUES($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, keyDisabled, fmt.Sprint(boolInt(disabled)))
		return err
	})
	if err != nil {
		return fmt.Errorf("set disabled flag: %w", err)
	}
	return nil
}

// PutRevision implements provisioner.Store.
func (s *PG) PutRevision(ctx context.Context, r provisioner.Revision) error {
	err := s.db.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO revisions(job, digest, spec, created) VALUES($1,$2,$3,$4)
			ON CONFLICT (job, digest) DO NOTHING`, r.Job, r.Digest, []byte(r.Spec), nanos(r.Created))
		return err
	})
	if err != nil {
		return fmt.Errorf("put revision %s of job %s: %w", r.Digest, r.Job, err)
	}
	return nil
}

// Revision implements provisioner.Store.
func (s *PG) Revision(ctx context.Context, job, digest string) (provisioner.Revision, error) {
	r := provisioner.Revision{Job: job, Digest: digest}
	var spec []byte
	var created int64
	err := s.db.Pool.QueryRow(ctx, `SELECT spec, created FROM revisions WHERE job = $1 AND digest = $2`, job, digest).Scan(&spec, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("revision %s of job %s: %w", digest, job, provisioner.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("revision %s of job %s: %w", digest, job, err)
	}
	r.Spec, r.Created = spec, fromNanos(created)
	return r, nil
}
