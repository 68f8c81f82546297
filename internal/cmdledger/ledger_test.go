package cmdledger

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/internal/store/sqlitedb"
)

var t0 = time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)

func sqlLedger(t *testing.T) Ledger {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), filepath.Join(t.TempDir(), "l.db"), sqlitedb.Config{
		Migrations: os.DirFS("testdata"), Dir: "migrations", Tracking: sqlitedb.UserVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return SQL{DB: db}
}

func dirLedger(t *testing.T) Ledger { return &Dir{Path: filepath.Join(t.TempDir(), "commands")} }

// TestLedgerContract runs the same story against every implementation:
// recorded before acting, attempts counted while unfinished, a done entry
// never reopened, and pruning.
func TestLedgerContract(t *testing.T) {
	for name, open := range map[string]func(*testing.T) Ledger{"sql": sqlLedger, "dir": dirLedger} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			l := open(t)
			if _, err := l.Lookup(ctx, "c1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Lookup of a new id = %v, want ErrNotFound", err)
			}
			e, err := l.Start(ctx, Entry{ID: "c1", Type: "x.do", Sig: "aa", Started: t0})
			if err != nil || e.State != StateStarted || e.Attempts != 1 || e.Type != "x.do" || e.Sig != "aa" {
				t.Fatalf("first Start = %+v, %v", e, err)
			}
			if e, err = l.Start(ctx, Entry{ID: "c1", Type: "x.do", Sig: "aa", Started: t0.Add(time.Second)}); err != nil || e.State != StateStarted || e.Attempts != 2 {
				t.Fatalf("second Start = %+v, %v; want attempt 2, still started", e, err)
			}
			if err := l.Finish(ctx, "c1", []byte(`{"ok":true}`), t0.Add(2*time.Second)); err != nil {
				t.Fatal(err)
			}
			e, err = l.Start(ctx, Entry{ID: "c1", Type: "x.do", Sig: "aa", Started: t0.Add(3 * time.Second)})
			if err != nil || e.State != StateDone || e.Attempts != 2 || string(e.Reply) != `{"ok":true}` {
				t.Fatalf("Start after Finish = %+v, %v; want the done entry untouched", e, err)
			}
			if got, err := l.Lookup(ctx, "c1"); err != nil || got.State != StateDone || !got.Updated.Equal(t0.Add(2*time.Second)) {
				t.Fatalf("Lookup = %+v, %v", got, err)
			}
			if err := l.Finish(ctx, "nope", nil, t0); !errors.Is(err, ErrNotFound) {
				t.Errorf("Finish of an unrecorded id = %v, want ErrNotFound", err)
			}
			// Ids are sender-chosen: nothing in one may reach a path.
			odd := "../../etc/passwd\x00"
			if _, err := l.Start(ctx, Entry{ID: odd, Type: "x.do", Sig: "bb", Started: t0}); err != nil {
				t.Fatal(err)
			}
			if got, err := l.Lookup(ctx, odd); err != nil || got.ID != odd {
				t.Fatalf("Lookup(odd id) = %+v, %v", got, err)
			}
			// SQL prunes by the recorded time, Dir by file time: a cut in
			// the future covers both.
			n, err := l.Prune(ctx, time.Now().Add(time.Hour))
			if err != nil || n != 2 {
				t.Fatalf("Prune = %d, %v; want 2", n, err)
			}
			if _, err := l.Lookup(ctx, "c1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Lookup after Prune = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDirRefusesDamagedEntry(t *testing.T) {
	ctx := context.Background()
	d := &Dir{Path: filepath.Join(t.TempDir(), "commands")}
	if _, err := d.Start(ctx, Entry{ID: "c1", Type: "x", Sig: "s", Started: t0}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.file("c1"), []byte(`{"id":"c1","state":"done","attempts":1}{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lookup(ctx, "c1"); err == nil || !strings.Contains(err.Error(), "trailing data") {
		t.Errorf("Lookup of a damaged entry = %v, want an error saying so", err)
	}
	fi, err := os.Stat(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("ledger dir mode %04o, want no group or other access", fi.Mode().Perm())
	}
}

// TestSchemaInTestdata keeps the test migration equal to Schema, which the
// stores' migrations copy.
func TestSchemaInTestdata(t *testing.T) {
	b, err := os.ReadFile("testdata/migrations/0001_commands.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), Schema) {
		t.Error("testdata/migrations/0001_commands.sql does not hold Schema")
	}
}
