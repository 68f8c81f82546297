package ctlstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/internal/cmdledger"
)

// TestCommandLedger: the ledger lives in this store's database and
// survives reopening it, as a restarted daemon needs.
func TestCommandLedger(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(ctx, file)
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
	s, err = Open(ctx, file)
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
	b, err := os.ReadFile("migrations/0002_commands.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), cmdledger.Schema) {
		t.Error("migrations/0002_commands.sql does not hold cmdledger.Schema")
	}
}
