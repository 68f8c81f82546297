package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"nightshift/controller"
	"nightshift/internal/runlayout"
)

// Series is one pool's history, as History reads it from its controller's
// store: what `mgmt plot` draws and the dashboard shows.
//
//	{
//	  "run": "local", "job": "sleeper", "since": "2026-12-02T18:00:00Z",
//	  "samples": [   // oldest first; one a second, one a minute when over an hour old
//	    {"time": "...", "job": "sleeper", "desired": 3, "running": 3, "healthy": 3, "queue_depth": 0}
//	  ],             // queue_depth is null when the controller could not read it
//	  "decisions": [ // oldest first
//	    {"seq": 7, "time": "...", "action": "launch", "reason": "queue 40 > 10 per worker: 1 -> 4",
//	     "target": 4, "actions": [{"type": "launch", "count": 3, "launch_id": "...", "reason": "..."}]}
//	  ]
//	}
//
// Values are as the controller stored them, not redacted: a caller that
// shows them redacts them first (App.Redactor, as status does).
type Series struct {
	Run       string              `json:"run"`
	Job       string              `json:"job"`
	Since     time.Time           `json:"since"`
	Samples   []controller.Sample `json:"samples"`
	Decisions []SeriesDecision    `json:"decisions"`
}

// SeriesDecision is one decision of a Series. Action names what it did in
// one word, for a marker: the types of its actions joined with "+" (launch,
// terminate, drain, terminate+launch), or none.
type SeriesDecision struct {
	Seq     int64            `json:"seq"`
	Time    time.Time        `json:"time"`
	Action  string           `json:"action"`
	Reason  string           `json:"reason"`
	Target  int              `json:"target"`
	Error   string           `json:"error,omitempty"`
	Actions []DecisionAction `json:"actions"`
}

// HistoryStore is the read side of a controller's store that History
// needs; OpenHistory opens one read-only. The store adapter
// (internal/store/ctlstore) is handed in by the caller, so mgmt decides
// what to show without reaching for a database itself.
type HistoryStore interface {
	HasJob(ctx context.Context, job string) (bool, error)
	Samples(ctx context.Context, job string, since time.Time) ([]controller.Sample, error)
	DecisionsSince(ctx context.Context, job string, since time.Time, limit int) ([]controller.Decision, error)
	Close() error
}

// OpenHistory opens the controller store at file read-only; a file that
// does not exist is an error wrapping fs.ErrNotExist.
type OpenHistory func(ctx context.Context, file string) (HistoryStore, error)

// ErrNoHistory is what History wraps when no controller store of the run
// holds the job.
var ErrNoHistory = errors.New("no history")

// History reads the samples and decisions of one pool of a run taken at or
// after since, straight from its controller's store file, read-only: it
// works whether the controller runs or not, and changes nothing. The store
// is found among the run's controller services' work directories
// (runs/RUN/work/SERVICE/controller/controller.db); the one that holds job
// is read. A controller on PostgreSQL leaves a locator of its schema there
// instead, read the same way.
func History(ctx context.Context, open OpenHistory, home, run, job string, since time.Time) (Series, error) {
	out := Series{Run: run, Job: job, Since: since, Samples: []controller.Sample{}, Decisions: []SeriesDecision{}}
	files, err := ControllerStores(home, run)
	if err != nil {
		return out, fmt.Errorf("history of job %q: %w", job, err)
	}
	for _, f := range files {
		found, err := readHistory(ctx, open, f, job, since, &out)
		if err != nil {
			return out, fmt.Errorf("history of job %q: %w", job, err)
		}
		if found {
			return out, nil
		}
	}
	return out, fmt.Errorf("history of job %q of run %q: %w: no controller store under %s holds it", job, run,
		ErrNoHistory, runlayout.Of(home, run).Work(""))
}

// ControllerStores lists the controller store files of a run, sorted: each
// controller's SQLite file, or the locator of its PostgreSQL schema
// (controller.pg.json, which OpenHistory reads) when it keeps none.
func ControllerStores(home, run string) ([]string, error) {
	var files []string
	for _, name := range []string{"controller.db", "controller.pg.json"} {
		found, err := filepath.Glob(filepath.Join(runlayout.Of(home, run).Work("*"), "controller", name))
		if err != nil {
			return nil, err
		}
		files = append(files, found...)
	}
	sort.Strings(files)
	return files, nil
}

func readHistory(ctx context.Context, open OpenHistory, file, job string, since time.Time, out *Series) (bool, error) {
	st, err := open(ctx, file)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer st.Close()
	ok, err := st.HasJob(ctx, job)
	if err != nil || !ok {
		return false, err
	}
	samples, err := st.Samples(ctx, job, since)
	if err != nil {
		return true, err
	}
	if samples != nil {
		out.Samples = samples
	}
	ds, err := st.DecisionsSince(ctx, job, since, 0)
	if err != nil {
		return true, err
	}
	for _, d := range ds {
		sd := SeriesDecision{Seq: d.Seq, Time: d.Time, Reason: d.Reason, Target: d.Target, Error: d.Error, Actions: []DecisionAction{}}
		if len(d.Actions) > 0 {
			if err := json.Unmarshal(d.Actions, &sd.Actions); err != nil {
				return true, fmt.Errorf("decision %d: actions: %w", d.Seq, err)
			}
		}
		sd.Action = actionWord(sd.Actions)
		out.Decisions = append(out.Decisions, sd)
	}
	return true, nil
}

func actionWord(acts []DecisionAction) string {
	var types []string
	seen := map[string]bool{}
	for _, a := range acts {
		if !seen[a.Type] {
			seen[a.Type] = true
			types = append(types, a.Type)
		}
	}
	if len(types) == 0 {
		return "none"
	}
	return strings.Join(types, "+")
}
