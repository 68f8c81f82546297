package ctlstore

import (
	"context"
	"path/filepath"
	"testing"

	"nightshift/internal/cmdledger/ledgertest"
)

// TestCommandLedger: the ledger lives in this store's database and
// survives reopening it, as a restarted daemon needs.
func TestCommandLedger(t *testing.T) {
	ledgertest.Durable(t, filepath.Join(t.TempDir(), "s.db"), "migrations/0002_commands.sql",
		func(ctx context.Context, file string) (ledgertest.Store, error) { return Open(ctx, file) })
}
