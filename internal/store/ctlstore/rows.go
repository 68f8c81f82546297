package ctlstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// rows is what database/sql's and pgx's result sets both offer, so each
// table's rows are decoded once for both backends; only the SQL dialect
// and the driver calls differ between store.go and pg.go.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// row is one result row (a result set's current row or a QueryRow).
type row interface {
	Scan(dest ...any) error
}

// collect decodes every row of rs with scan; what names the read in
// errors. The caller closes rs (the two drivers' Close differ).
func collect[T any](rs rows, what string, scan func(row) (T, error)) ([]T, error) {
	var out []T
	for rs.Next() {
		v, err := scan(rs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// jobColumns, scanJob: the jobs table. The silent state is returned
// undecoded so that the caller can tell a missing row (the driver's own
// ErrNoRows) from a bad value.
const jobColumns = `name, file_config, policy, last_scale_at, silent`

func scanJob(r row) (JobRecord, string, error) {
	var rec JobRecord
	var fc, pol, silent string
	var last int64
	if err := r.Scan(&rec.Name, &fc, &pol, &last, &silent); err != nil {
		return rec, "", err
	}
	rec.FileConfig, rec.Policy, rec.LastScaleAt = json.RawMessage(fc), json.RawMessage(pol), fromNanos(last)
	return rec, silent, nil
}

const reconfigurationColumns = `time, job, who, what, error`

func scanReconfiguration(r row) (Reconfiguration, error) {
	var rc Reconfiguration
	var t int64
	var what string
	if err := r.Scan(&t, &rc.Job, &rc.Who, &what, &rc.Error); err != nil {
		return rc, err
	}
	rc.Time, rc.What = fromNanos(t), json.RawMessage(what)
	return rc, nil
}

const decisionColumns = `seq, time, job, engine, reason, actions, target, scaled, error`

func scanDecision(r row) (Decision, error) {
	var d Decision
	var t int64
	var acts string
	if err := r.Scan(&d.Seq, &t, &d.Job, &d.Engine, &d.Reason, &acts, &d.Target, &d.Scaled, &d.Error); err != nil {
		return d, err
	}
	d.Time, d.Actions = fromNanos(t), json.RawMessage(acts)
	return d, nil
}

const launchColumns = `launch_id, job, seq, count, spec, state, created`

func scanLaunch(r row) (Launch, error) {
	var l Launch
	var spec string
	var created int64
	if err := r.Scan(&l.LaunchID, &l.Job, &l.Seq, &l.Count, &spec, &l.State, &created); err != nil {
		return l, err
	}
	l.Spec, l.Created = json.RawMessage(spec), fromNanos(created)
	return l, nil
}

// drain is one row of the drains table.
type drain struct {
	id    string
	since int64
}

func scanDrain(r row) (drain, error) {
	var d drain
	err := r.Scan(&d.id, &d.since)
	return d, err
}

// drainMap is Store.Draining's answer: drain start by instance id.
func drainMap(ds []drain) map[string]time.Time {
	out := make(map[string]time.Time, len(ds))
	for _, d := range ds {
		out[d.id] = fromNanos(d.since)
	}
	return out
}

const sampleColumns = `time, job, desired, running, healthy, queue_depth`

// scanSample reads a NULL queue depth as nil (both drivers scan NULL into
// a nil pointer).
func scanSample(r row) (Sample, error) {
	var sm Sample
	var t int64
	if err := r.Scan(&t, &sm.Job, &sm.Desired, &sm.Running, &sm.Healthy, &sm.QueueDepth); err != nil {
		return sm, err
	}
	sm.Time = fromNanos(t)
	return sm, nil
}

const revisionColumns = `job, number, digest, spec, time, who, outcome, note, updated`

func scanRevision(r row) (Revision, error) {
	var rv Revision
	var spec string
	var t, u int64
	if err := r.Scan(&rv.Job, &rv.Number, &rv.Digest, &spec, &t, &rv.Who, &rv.Outcome, &rv.Note, &u); err != nil {
		return rv, err
	}
	rv.Spec, rv.Time, rv.Updated = json.RawMessage(spec), fromNanos(t), fromNanos(u)
	return rv, nil
}
