// Package ledgertest holds the test every store that keeps a command ledger
// in its database runs: the ledger survives reopening the store, and the
// store's migration carries cmdledger.Schema. It is imported by tests only.
package ledgertest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"nightshift/internal/cmdledger"
)

// Store is what a daemon's store offers for its ledger.
type Store interface {
	Commands() cmdledger.Ledger
	Close() error
}

// Durable opens a store at file with open, records a handled command, reopens
// it and checks the command is still answered from the ledger. migration is
// the store's migration file that must hold cmdledger.Schema.
func Durable(t *testing.T, file, migration string, open func(ctx context.Context, file string) (Store, error)) {
	t.Helper()
	ctx := context.Background()
	s, err := open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	if _, err := s.Commands().Start(ctx, cmdledger.Entry{ID: "c1", Type: "t", Sig: "s", Started: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commands().Finish(ctx, "c1", []byte(`{"live":3}`), now); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Commands().Lookup(ctx, "c1")
	if err != nil || e.State != cmdledger.StateDone || string(e.Reply) != `{"live":3}` {
		t.Fatalf("after reopening: %+v, %v", e, err)
	}
	if _, err := s.Commands().Lookup(ctx, "c2"); !errors.Is(err, cmdledger.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	b, err := os.ReadFile(migration)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), cmdledger.Schema) {
		t.Errorf("%s does not hold cmdledger.Schema", migration)
	}
}
