package simworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Control files. A person or a benchmark asks a running simulator (inside
// the provisioner process) to kill instances by writing a KillRequest as
// NAME.kill into its control directory (runlayout.Run.Sim); the simulator
// removes it, acts, and writes the KillResult as NAME.done. It also keeps
// StatsFile current. Files, not bus messages: the simulator's broker
// identity may only publish heartbeats, and these commands are for the
// machine the simulation runs on.
const (
	KillSuffix = ".kill"
	DoneSuffix = ".done"
	StatsFile  = "stats.json"
)

// KillRequest names instances to kill: IDs, or Count (or Fraction, 0..1,
// of the live ones) chosen at random among Job's (all jobs when empty).
type KillRequest struct {
	Job      string   `json:"job,omitempty"`
	Count    int      `json:"count,omitempty"`
	Fraction float64  `json:"fraction,omitempty"`
	IDs      []string `json:"ids,omitempty"`
}

// KillResult is what a KillRequest did, and when.
type KillResult struct {
	Killed []string  `json:"killed"`
	Time   time.Time `json:"time"`
	Error  string    `json:"error,omitempty"`
}

// StatsSnapshot is StatsFile's content.
type StatsSnapshot struct {
	Stats
	Time time.Time `json:"time"`
}

func (d *Driver) execute(req KillRequest) KillResult {
	const reason = "killed by simulator command"
	switch {
	case len(req.IDs) > 0 && (req.Count != 0 || req.Fraction != 0):
		return KillResult{Error: "ids and count/fraction are exclusive"}
	case req.Count < 0 || req.Fraction < 0 || req.Fraction > 1:
		return KillResult{Error: fmt.Sprintf("count %d, fraction %v: want count >= 0 and fraction in 0..1", req.Count, req.Fraction)}
	case len(req.IDs) > 0:
		return KillResult{Killed: d.Kill(req.IDs, reason)}
	}
	n := req.Count
	if req.Fraction > 0 {
		live := 0
		for _, o := range d.snapshot() {
			if req.Job == "" || o.Job == req.Job {
				live++
			}
		}
		n = int(float64(live)*req.Fraction + 0.5)
	}
	return KillResult{Killed: d.KillRandom(req.Job, n, reason)}
}

// Serve watches dir until ctx ends: it carries out kill requests and
// rewrites StatsFile every poll.
func (d *Driver) Serve(ctx context.Context, dir string, poll time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sim control dir: %w", err)
	}
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	for {
		if err := d.ServeOnce(dir); err != nil {
			d.cfg.Log.Warn("sim control", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.cfg.Clock.After(poll):
		}
	}
}

// ServeOnce handles the kill requests in dir and writes StatsFile.
func (d *Driver) ServeOnce(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "*"+KillSuffix))
	if err != nil {
		return err
	}
	sort.Strings(names)
	var errs []error
	for _, p := range names {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		var req KillRequest
		var res KillResult
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			res.Error = fmt.Sprintf("%s: %v", filepath.Base(p), err)
		} else {
			res = d.execute(req)
		}
		res.Time = d.cfg.Clock.Now().UTC()
		if res.Killed == nil {
			res.Killed = []string{}
		}
		if err := writeJSON(strings.TrimSuffix(p, KillSuffix)+DoneSuffix, res); err != nil {
			errs = append(errs, err)
		}
	}
	if err := writeJSON(filepath.Join(dir, StatsFile), StatsSnapshot{Stats: d.Stats(), Time: d.cfg.Clock.Now().UTC()}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *Driver) snapshot() []ownedView {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ownedView, 0, len(d.insts))
	for _, in := range d.insts {
		out = append(out, ownedView{Job: in.owned.Job})
	}
	return out
}

type ownedView struct{ Job string }

// writeJSON replaces path atomically, so a reader never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
