package leader

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// State is what a replica says of itself in its state file (--lease-file),
// so that status on its host can show each replica's role without asking
// the database or the process: the same facts its lease metrics carry.
type State struct {
	// Role is RoleActive or RoleStandby.
	Role string `json:"role"`
	// Epoch is the lease's epoch while active, 0 while standing by.
	Epoch int64 `json:"epoch"`
	// PID is the replica's process, so a file left by a dead one is told apart.
	PID int `json:"pid"`
}

// The roles a replica has.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

// WriteState records st in path (0600), replacing it whole so that a reader
// never sees half a file. An empty path records nothing.
func WriteState(path string, st State) error {
	if path == "" {
		return nil
	}
	if st.PID == 0 {
		st.PID = os.Getpid()
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".lease-*")
	if err != nil {
		return fmt.Errorf("lease state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("lease state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("lease state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("lease state: %w", err)
	}
	return nil
}

// ReadState reads a replica's state file.
func ReadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("lease state %s: %w", path, err)
	}
	if st.Role != RoleActive && st.Role != RoleStandby {
		return State{}, fmt.Errorf("lease state %s: role %q", path, st.Role)
	}
	return st, nil
}
