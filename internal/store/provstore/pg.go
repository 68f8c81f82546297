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
	shared
	db *pgdb.DB
}

func newPG(db *pgdb.DB) *PG { return &PG{shared: shared{db: pgDB{db}}, db: db} }

var _ provisioner.Store = (*PG)(nil)

// OpenPG connects to url, in schema (pgdb.SchemaName of the run and
// "provisioner" by convention), and applies pending migrations.
func OpenPG(ctx context.Context, url, schema string, fence leader.Fence) (*PG, error) {
	db, err := pgdb.Open(ctx, pgdb.Config{URL: url, Schema: schema, Migrations: pgMigrations, Dir: "pgmigrations", Fence: fence})
	if err != nil {
		return nil, fmt.Errorf("open provisioner store: %w", err)
	}
	return newPG(db), nil
}

// Fenced is the same store whose writes check f (see pgdb.DB.WithFence).
// Closing either closes both.
func (s *PG) Fenced(f leader.Fence) *PG { return newPG(s.db.WithFence(f)) }

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
	conflicts, err := newConflicts(ups)
	if err != nil || len(ups) == 0 {
		return conflicts, err
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
	err = s.db.Write(ctx, func(tx pgx.Tx) error {
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

// pgDB runs the shared statements on PostgreSQL: each write
// is a transaction of its own that checks the fence (pgdb.DB.Write).
type pgDB struct{ db *pgdb.DB }

func (d pgDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := d.db.Write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, dollar(q), args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// execEach sends the runs as one pipelined batch: one round trip and one
// commit however many there are.
func (d pgDB) execEach(ctx context.Context, q string, args [][]any) ([]int64, error) {
	q = dollar(q)
	n := make([]int64, len(args))
	err := d.db.Write(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		for _, a := range args {
			b.Queue(q, a...)
		}
		br := tx.SendBatch(ctx, &b)
		for k := range args {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			n[k] = tag.RowsAffected()
		}
		return br.Close()
	})
	return n, err
}

func (d pgDB) queryRow(ctx context.Context, q string, args ...any) interface{ Scan(dest ...any) error } {
	return d.db.Pool.QueryRow(ctx, dollar(q), args...)
}

func (d pgDB) query(ctx context.Context, q string, args ...any) (closingRows, error) {
	return d.db.Pool.Query(ctx, dollar(q), args...)
}

func (pgDB) noRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
