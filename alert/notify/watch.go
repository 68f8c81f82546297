package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"nightshift/alert"
)

// Watcher runs an alert.Evaluator over what a process watches, every
// Every, and publishes its transitions to a Dispatcher; it also applies
// `mgmt reconfigure RUN @alerts ...` to both.
type Watcher struct {
	// Source reads what the process watches at now; it must not block on
	// anything slower than a lock (the controller's pools are in memory).
	Source   func(now time.Time) alert.Input
	Dispatch *Dispatcher
	Every    time.Duration
	Now      func() time.Time
	// StatePath, when set, keeps reconfigurations across restarts for as
	// long as the plan's [alerts] table is unchanged.
	StatePath string

	mu   sync.Mutex
	eval *alert.Evaluator
	file alert.Config
	cfg  alert.Config
}

type watchState struct {
	File   alert.Config `json:"file"`
	Config alert.Config `json:"config"`
}

// NewWatcher builds a watcher for run with the plan's configuration file,
// restoring the reconfigured one from statePath (when the plan's is
// unchanged) and the alerts still firing from the journal's records.
func NewWatcher(run string, file alert.Config, statePath string, firing []alert.Event, d *Dispatcher, source func(time.Time) alert.Input) (*Watcher, error) {
	cfg := file
	if statePath != "" {
		data, err := os.ReadFile(statePath)
		switch {
		case err == nil:
			var st watchState
			fileJSON, _ := json.Marshal(file)
			if err := json.Unmarshal(data, &st); err != nil {
				return nil, fmt.Errorf("alert state %s: %w", statePath, err)
			}
			storedJSON, _ := json.Marshal(st.File)
			if bytes.Equal(fileJSON, storedJSON) {
				cfg = st.Config
			}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("alert state: %w", err)
		}
	}
	w := &Watcher{Source: source, Dispatch: d, Every: time.Second, Now: time.Now, StatePath: statePath,
		eval: alert.NewEvaluator(run, cfg), file: file, cfg: cfg}
	w.eval.Restore(firing)
	d.Configure(cfg)
	return w, nil
}

// Config is the configuration in force.
func (w *Watcher) Config() alert.Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

// Reconfigure applies values (see alert.Config.Reconfigure) to the
// thresholds and sinks; a bad value changes nothing.
func (w *Watcher) Reconfigure(values map[string]any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	cfg, err := w.cfg.Reconfigure(values)
	if err != nil {
		return err
	}
	if w.StatePath != "" {
		data, err := json.Marshal(watchState{File: w.file, Config: cfg})
		if err != nil {
			return fmt.Errorf("alert state: %w", err)
		}
		tmp := w.StatePath + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fmt.Errorf("alert state: %w", err)
		}
		if err := os.Rename(tmp, w.StatePath); err != nil {
			return fmt.Errorf("alert state: %w", err)
		}
	}
	w.cfg = cfg
	w.eval.SetConfig(cfg)
	w.Dispatch.Configure(cfg)
	return nil
}

// Step evaluates once at now and publishes the transitions, which it
// returns.
func (w *Watcher) Step(now time.Time) []alert.Event {
	in := w.Source(now)
	w.mu.Lock()
	evs := w.eval.Evaluate(now, in)
	w.mu.Unlock()
	w.Dispatch.Publish(evs...)
	return evs
}

// Run steps every Every until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		w.Step(w.Now())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
