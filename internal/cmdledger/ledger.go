// Package cmdledger makes the handling of signed commands idempotent by
// command id, durably: a Ledger records each id before its command is acted
// on ("started") and its reply once handled ("done"), and Guard puts the rule
// in one place for every consumer (provisioner, controller, sitter). A repeat
// of a handled id, whether the broker redelivered it or someone re-published
// it, is answered with the recorded reply and never executed again; the
// redelivered flag plays no part. A command whose handling did not finish (a
// crash, a passing failure) stays "started" and may be handled again, which
// is what at-least-once delivery needs.
//
// SQL keeps the ledger in a table of a component's own SQLite database (the
// provisioner's provstore, the controller's ctlstore, each adding Schema in a
// migration); Dir keeps it as files in a sitter's state directory.
package cmdledger

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// State is where a command's handling stands.
type State string

const (
	// StateStarted: recorded before acting; the outcome is unknown.
	StateStarted State = "started"
	// StateDone: handled; Reply is what its sender was told.
	StateDone State = "done"
)

// Entry is one recorded command.
type Entry struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Sig is the command's signature: an id seen again with another
	// signature is not the same command.
	Sig      string          `json:"sig"`
	State    State           `json:"state"`
	Attempts int             `json:"attempts"`
	Reply    json.RawMessage `json:"reply,omitempty"`
	Started  time.Time       `json:"started"`
	Updated  time.Time       `json:"updated"`
}

// ErrNotFound is returned by Lookup for an id never recorded.
var ErrNotFound = errors.New("command id not recorded")

// Ledger stores command ids durably. Implementations are safe for
// concurrent use.
type Ledger interface {
	// Lookup returns the entry of id or an error wrapping ErrNotFound.
	Lookup(ctx context.Context, id string) (Entry, error)
	// Start records e (ID, Type, Sig, Started) as started with one attempt
	// unless its id is recorded already; then a started entry counts one
	// more attempt and a done one is left alone. It returns the entry as
	// stored.
	Start(ctx context.Context, e Entry) (Entry, error)
	// Finish marks id done with its reply.
	Finish(ctx context.Context, id string, reply []byte, now time.Time) error
	// Prune forgets entries last updated before before and returns how
	// many.
	Prune(ctx context.Context, before time.Time) (int, error)
}
