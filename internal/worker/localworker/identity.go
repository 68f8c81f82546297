package localworker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"nightshift/internal/runlayout"
)

// Identity is who a run's local workers run as.
type Identity struct {
	// Isolated is true when they run as a user of their own (User);
	// false when they run as the provisioner's user (User), and can read
	// the run's secrets.
	Isolated bool   `json:"isolated"`
	User     string `json:"user"`
}

// NotIsolatedNote is what the operator is told, once at launch and in
// mgmt status, when local workers run as their own user.
func NotIsolatedNote(user string) string {
	return fmt.Sprintf("local workers run as your user %s: they can read this run's secrets; run as root to isolate them, or use ec2/ssh workers", user)
}

// WriteIdentity records who run's local workers run as (0600), so mgmt can
// tell the operator without asking the provisioner.
func WriteIdentity(home, run string, id Identity) error {
	path := runlayout.Of(home, run).WorkersIdentity()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("workers identity: %w", err)
	}
	b, err := json.Marshal(id)
	if err != nil {
		return fmt.Errorf("workers identity: %w", err)
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("workers identity: %w", err)
	}
	return nil
}

// ReadIdentity reads what WriteIdentity recorded; ok is false when the run
// has no local worker driver (or it has not started yet).
func ReadIdentity(home, run string) (id Identity, ok bool) {
	b, err := os.ReadFile(runlayout.Of(home, run).WorkersIdentity())
	if err != nil || json.Unmarshal(b, &id) != nil || id.User == "" {
		return Identity{}, false
	}
	return id, true
}

// RemoveWorkerDirs removes the directories of run's isolated workers,
// found through their owner.json files (mgmt rm, before the run's own
// directory goes). Only a directory named for this run and home is
// removed, whatever a marker says.
func RemoveWorkerDirs(home, run string) error {
	home, err := filepath.Abs(home)
	if err != nil {
		return fmt.Errorf("remove worker dirs: %w", err)
	}
	lay := runlayout.Of(home, run)
	ents, err := os.ReadDir(lay.Instances())
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove worker dirs: %w", err)
	}
	want := filepath.Base(lay.WorkerRunDir("/"))
	parents := map[string]bool{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		o, err := readOwner(filepath.Join(lay.Instances(), e.Name()))
		if err != nil || o.WorkerDir == "" || !filepath.IsAbs(o.WorkerDir) || filepath.Base(o.WorkerDir) != e.Name() {
			continue
		}
		if p := filepath.Dir(o.WorkerDir); filepath.Base(p) == want {
			parents[p] = true
		}
	}
	var errs []error
	for p := range parents {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove worker dirs: %w", err)
	}
	return nil
}
