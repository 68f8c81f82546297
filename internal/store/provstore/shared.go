package provstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"nightshift"
	"nightshift/provisioner"
)

// closingRows is what database/sql's and pgx's result sets both offer
// (the SQLite side wraps Close, whose two forms differ), so each table's
// rows are decoded once for both backends.
type closingRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// conn is what the statements both stores share need of a database:
// SQLite's database/sql and PostgreSQL's pgx differ in how a statement
// runs (a write on PostgreSQL is a fenced transaction) and in how "no
// row" is told, not in what the statements do. Statements are written
// once, in SQLite's ? form; the PostgreSQL side numbers them (dollar).
type conn interface {
	// exec runs one write and returns the rows it affected.
	exec(ctx context.Context, q string, args ...any) (int64, error)
	// execEach runs q once for each argument list, all in one
	// transaction, and returns the rows each run affected.
	execEach(ctx context.Context, q string, args [][]any) ([]int64, error)
	queryRow(ctx context.Context, q string, args ...any) interface{ Scan(dest ...any) error }
	query(ctx context.Context, q string, args ...any) (closingRows, error)
	// noRows reports whether err is the driver's "no row" from queryRow.
	noRows(err error) bool
}

// dollar numbers the ? placeholders of q as PostgreSQL's $1, $2, ...; no
// shared statement holds a literal ?, and a statement already written for
// PostgreSQL alone (no ?) passes unchanged.
func dollar(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for _, c := range q {
		if c != '?' {
			b.WriteRune(c)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// shared is the part of provisioner.Store both backends implement alike;
// Store and PG embed it, so each of these methods exists once.
type shared struct {
	db conn
}

const (
	selectInstance = `SELECT i.id, i.launch_id, i.idx, i.job, i.driver, i.host, i.address, i.pid, i.state, i.reason, i.created, i.updated, i.dns_name, i.dns_address, i.health, i.worker_uid,
		h.state, h.reason, h.time
		FROM instances i JOIN history h ON h.instance_id = i.id`
	qInstance   = selectInstance + ` WHERE i.id = ? ORDER BY h.seq`
	qLaunch     = `SELECT launch_id, job, count, spec, created FROM launches WHERE launch_id = ?`
	qRevision   = `SELECT spec, created FROM revisions WHERE job = ? AND digest = ?`
	keyDisabled = "disabled"
)

// Launch implements provisioner.Store.
func (s shared) Launch(ctx context.Context, launchID string) (provisioner.Launch, error) {
	var l provisioner.Launch
	var spec []byte
	var created int64
	err := s.db.queryRow(ctx, qLaunch, launchID).Scan(&l.LaunchID, &l.Job, &l.Count, &spec, &created)
	if s.db.noRows(err) {
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
func (s shared) Instance(ctx context.Context, id string) (provisioner.Instance, error) {
	got, err := s.list(ctx, qInstance, id)
	if err != nil {
		return provisioner.Instance{}, fmt.Errorf("instance %s: %w", id, err)
	}
	if len(got) == 0 {
		return provisioner.Instance{}, fmt.Errorf("instance %s: %w", id, provisioner.ErrNotFound)
	}
	return got[0], nil
}

// list runs a selectInstance query and folds its rows into records.
func (s shared) list(ctx context.Context, q string, args ...any) ([]provisioner.Instance, error) {
	rs, err := s.db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	defer rs.Close()
	return foldInstances(rs)
}

// foldInstances folds the instance-history join (selectInstance), ordered
// by instance and then history sequence, into records.
func foldInstances(rows closingRows) ([]provisioner.Instance, error) {
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

// SetHealths implements provisioner.Store: one transaction whatever the
// number of workers, so the first report on a pool of thousands costs one
// commit. Each write is a compare-and-set on the record still being a
// running worker of job, and changes only a health that differs, so what
// it returns is exactly what changed.
func (s shared) SetHealths(ctx context.Context, job string, healths map[string]string) ([]string, error) {
	if len(healths) == 0 {
		return nil, nil
	}
	// In order, so that two writers of overlapping sets take the rows'
	// locks in the same order (PostgreSQL) instead of deadlocking.
	ids := slices.Sorted(maps.Keys(healths))
	args := make([][]any, len(ids))
	for k, id := range ids {
		args[k] = []any{healths[id], id, job, string(nightshift.StateRunning), healths[id]}
	}
	n, err := s.db.execEach(ctx, `UPDATE instances SET health = ? WHERE id = ? AND job = ? AND state = ? AND health <> ?`, args)
	if err != nil {
		return nil, fmt.Errorf("set health of %d workers of job %s: %w", len(ids), job, err)
	}
	var set []string
	for k, id := range ids {
		if n[k] > 0 {
			set = append(set, id)
		}
	}
	return set, nil
}

// Disabled implements provisioner.Store.
func (s shared) Disabled(ctx context.Context) (bool, error) {
	var v string
	err := s.db.queryRow(ctx, `SELECT value FROM settings WHERE key = ?`, keyDisabled).Scan(&v)
	if s.db.noRows(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read disabled flag: %w", err)
	}
	return v == "1", nil
}

// SetDisabled implements provisioner.Store.
func (s shared) SetDisabled(ctx context.Context, disabled bool) error {
	_, err := s.db.exec(ctx, `INSERT INTO settings(key, value) VALUES(?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, keyDisabled, fmt.Sprint(boolInt(disabled)))
	if err != nil {
		return fmt.Errorf("set disabled flag: %w", err)
	}
	return nil
}

// PutRevision implements provisioner.Store.
func (s shared) PutRevision(ctx context.Context, r provisioner.Revision) error {
	_, err := s.db.exec(ctx, `INSERT INTO revisions(job, digest, spec, created) VALUES(?,?,?,?)
		ON CONFLICT (job, digest) DO NOTHING`, r.Job, r.Digest, []byte(r.Spec), nanos(r.Created))
	if err != nil {
		return fmt.Errorf("put revision %s of job %s: %w", r.Digest, r.Job, err)
	}
	return nil
}

// Revision implements provisioner.Store.
func (s shared) Revision(ctx context.Context, job, digest string) (provisioner.Revision, error) {
	r := provisioner.Revision{Job: job, Digest: digest}
	var spec []byte
	var created int64
	err := s.db.queryRow(ctx, qRevision, job, digest).Scan(&spec, &created)
	if s.db.noRows(err) {
		return r, fmt.Errorf("revision %s of job %s: %w", digest, job, provisioner.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("revision %s of job %s: %w", digest, job, err)
	}
	r.Spec, r.Created = spec, fromNanos(created)
	return r, nil
}

// newConflicts checks a batch of UpdateInstances and returns its conflict
// slots, all nil.
func newConflicts(ups []provisioner.Update) ([]error, error) {
	for _, u := range ups {
		if len(u.Instance.History) == 0 {
			return nil, fmt.Errorf("update instance %s: no history entry to append", u.Instance.ID)
		}
	}
	return make([]error, len(ups)), nil
}
