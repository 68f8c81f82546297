package provbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/provisioner"
	"nightshift/sitter/sitterbus"
)

// WorkerUsers is a provisioner.Driver that gives every worker instance its
// own broker user. Launch creates the user (permissions from
// busid.WorkerPermissions), declares the worker's command queue and its
// job's work queue (the worker may not declare them), and hands the inner
// driver a URL carrying only that user's credentials; Terminate deletes
// the user after the instance is gone; List deletes the users of
// instances that no longer run, which covers a provisioner that crashed
// between creating a user and recording the instance's end.
//
// The user name derives from the instance id, which the provisioner
// records (write-ahead) before it calls Launch, and the password from Key,
// so a retried or recovered launch recreates exactly the same user: the
// ledger's instance record is the record of the user.
type WorkerUsers struct {
	Driver provisioner.Driver
	Admin  busid.Admin
	Bus    *amqpbus.Bus
	Run    string
	// Key derives worker passwords (busid.Password); the run's secret.
	Key []byte
	// BrokerURL is the URL workers reach the broker at; its credentials
	// are replaced by each worker's own.
	BrokerURL string
	Log       *slog.Logger
	// Redactor, when set, learns each worker's password as it is minted,
	// so this daemon's own log never shows one; Registry, when set, is the
	// run's secret registry (redact.Register), through which mgmt and a
	// resumed launch learn it too.
	Redactor *redact.Redactor
	Registry string

	mu       sync.Mutex
	inflight map[string]int  // instance ids whose Launch is running
	touched  map[string]bool // ids launched at any time since the current List began
	// missed: users whose instance the last List did not show. With an
	// eventually consistent driver one missing list is no proof that an
	// instance is gone, so its user is deleted only when the next List
	// misses it too, as the provisioner judges the instance itself.
	missed map[string]bool
}

// WorkerUsers wraps the real driver: what the provisioner asks of that
// driver beyond provisioner.Driver must reach it through the wrapper, or a
// restarted provisioner lists only the default region and judges every
// other worker from one list.
var (
	_ provisioner.Driver         = (*WorkerUsers)(nil)
	_ provisioner.Locator        = (*WorkerUsers)(nil)
	_ provisioner.EventualLister = (*WorkerUsers)(nil)
	_ provisioner.UIDPicker      = (*WorkerUsers)(nil)
)

// PickUIDs passes on to the inner driver when it runs instances under
// uids of their own (provisioner.UIDPicker); without it every local
// worker would share one user.
func (w *WorkerUsers) PickUIDs(ctx context.Context, spec json.RawMessage, n int, held func() (map[uint32]bool, error)) ([]uint32, error) {
	if p, ok := w.Driver.(provisioner.UIDPicker); ok {
		return p.PickUIDs(ctx, spec, n, held)
	}
	return nil, nil
}

// Locate passes the ledger's specs on to the inner driver when it keeps
// instances in more than one place (provisioner.Locator).
func (w *WorkerUsers) Locate(ctx context.Context, specs []json.RawMessage) error {
	if loc, ok := w.Driver.(provisioner.Locator); ok {
		return loc.Locate(ctx, specs)
	}
	return nil
}

// ListIsEventual says what the inner driver says (provisioner.EventualLister).
func (w *WorkerUsers) ListIsEventual() bool {
	el, ok := w.Driver.(provisioner.EventualLister)
	return ok && el.ListIsEventual()
}

// Name implements provisioner.Driver.
func (w *WorkerUsers) Name() string { return w.Driver.Name() }

// Exits passes on the inner driver's exit reports, if it has any.
func (w *WorkerUsers) Exits() <-chan provisioner.Exit {
	if ew, ok := w.Driver.(provisioner.ExitWatcher); ok {
		return ew.Exits()
	}
	return nil
}

func (w *WorkerUsers) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

// Launch implements provisioner.Driver.
func (w *WorkerUsers) Launch(ctx context.Context, spec provisioner.InstanceSpec) (provisioner.LaunchResult, error) {
	w.mu.Lock()
	if w.inflight == nil {
		w.inflight = map[string]int{}
	}
	w.inflight[spec.ID]++
	if w.touched != nil {
		w.touched[spec.ID] = true
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		if w.inflight[spec.ID]--; w.inflight[spec.ID] <= 0 {
			delete(w.inflight, spec.ID)
		}
		w.mu.Unlock()
	}()
	queue, err := WorkQueue(spec.Spec)
	if err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	if queue != "" && busid.Reserved(w.Run, queue) {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: work queue %q is one of the run's own queues", spec.ID, queue)
	}
	user := busid.WorkerUser(w.Run, spec.ID)
	pass := busid.Password(w.Key, user)
	w.Redactor.Add(pass)
	if w.Registry != "" {
		if err := redact.Register(w.Registry, pass); err != nil {
			return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
		}
	}
	if err := w.Admin.EnsureUser(ctx, user, pass, busid.WorkerPermissions(w.Run, spec.Job, spec.ID, queue)); err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	if err := w.Bus.DeclareCommandQueue(ctx, sitterbus.Component(spec.ID)); err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	if queue != "" {
		if err := w.Bus.DeclareQueue(ctx, queue); err != nil {
			return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
		}
	}
	if spec.BrokerURL, err = busid.WithUser(w.BrokerURL, user, pass); err != nil {
		return provisioner.LaunchResult{}, fmt.Errorf("launch %s: %w", spec.ID, err)
	}
	return w.Driver.Launch(ctx, spec)
}

// Terminate implements provisioner.Driver: the instance first, then its
// user and command queue, so a worker never runs without its identity.
func (w *WorkerUsers) Terminate(ctx context.Context, id string) error {
	if err := w.Driver.Terminate(ctx, id); err != nil {
		return err
	}
	return w.forget(ctx, id)
}

func (w *WorkerUsers) forget(ctx context.Context, id string) error {
	return errors.Join(
		w.Admin.DeleteUser(ctx, busid.WorkerUser(w.Run, id)),
		w.Bus.DeleteCommandQueue(ctx, sitterbus.Component(id)))
}

// List implements provisioner.Driver, and deletes the users of instances
// that are neither live nor being launched.
func (w *WorkerUsers) List(ctx context.Context) ([]provisioner.Owned, error) {
	// A launch running at any moment of this List may have started its
	// instance after the driver's listing: its user is not a leftover.
	w.mu.Lock()
	w.touched = map[string]bool{}
	for id := range w.inflight {
		w.touched[id] = true
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.touched = nil
		w.mu.Unlock()
	}()
	owned, err := w.Driver.List(ctx)
	if err != nil {
		return nil, err
	}
	users, err := w.Admin.Users(ctx, busid.WorkerPrefix(w.Run))
	if err != nil {
		w.log().Warn("cannot list worker broker users; leftovers stay until the next reconcile", "err", err)
		return owned, nil
	}
	live := map[string]bool{}
	for _, o := range owned {
		live[busid.WorkerUser(w.Run, o.InstanceID)] = true
	}
	w.mu.Lock()
	for id := range w.touched {
		live[busid.WorkerUser(w.Run, id)] = true
	}
	missed := w.missed
	w.missed = map[string]bool{}
	w.mu.Unlock()
	eventual := w.ListIsEventual()
	for _, u := range users {
		if live[u] {
			continue
		}
		if eventual && !missed[u] {
			w.mu.Lock()
			w.missed[u] = true
			w.mu.Unlock()
			continue
		}
		id := u[len(busid.WorkerPrefix(w.Run)):]
		if err := w.forget(ctx, id); err != nil {
			w.log().Warn("cannot delete a leftover worker broker user", "user", u, "err", err)
			continue
		}
		w.log().Info("deleted the broker user of an instance that no longer runs", "user", u)
	}
	return owned, nil
}

// WorkQueue returns the work queue a launch spec's worker consumes: the
// NIGHTSHIFT_WORK_QUEUE of its environment, or "" when it has none.
func WorkQueue(spec json.RawMessage) (string, error) {
	if len(spec) == 0 {
		return "", nil
	}
	var s struct {
		Worker struct {
			Env map[string]string `json:"env"`
		} `json:"worker"`
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return "", fmt.Errorf("launch spec: field worker.env: %w", err)
	}
	return s.Worker.Env[nsenv.WorkQueue], nil
}
