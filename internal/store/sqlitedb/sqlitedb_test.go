package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/mattn/go-sqlite3"
	"golang.org/x/sync/errgroup"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// schema is two migrations; the second depends on the first.
func schema() fstest.MapFS {
	return fstest.MapFS{
		"m/0001_init.sql":  {Data: []byte("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT NOT NULL);")},
		"m/0002_child.sql": {Data: []byte("CREATE TABLE b (a_id INTEGER NOT NULL REFERENCES a(id));")},
		"m/README":         {Data: []byte("not a migration")},
	}
}

func open(t *testing.T, file string, c Config) *sql.DB {
	t.Helper()
	db, err := Open(testCtx(t), file, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func version(t *testing.T, db *sql.DB, tr Tracking) int {
	t.Helper()
	q := "PRAGMA user_version"
	if tr == VersionTable {
		q = "SELECT COALESCE(MAX(version), 0) FROM schema_version"
	}
	var v int
	if err := db.QueryRow(q).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

var trackings = []struct {
	name string
	tr   Tracking
}{{"user_version", UserVersion}, {"schema_version", VersionTable}}

func TestModesArePrivateDespiteUmask(t *testing.T) {
	// Umask is process-wide; this package's tests do not run in parallel.
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := filepath.Join(t.TempDir(), "new", "state")
	file := filepath.Join(dir, "x.db")
	db := open(t, file, Config{Migrations: schema(), Dir: "m", CreateDir: true})
	// A write makes sure the -wal and -shm files exist while the db is open.
	if _, err := db.Exec("INSERT INTO a (v) VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, file: 0o600, file + "-wal": 0o600, file + "-shm": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}
}

func TestOpenTightensExistingWALFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.db")
	db := open(t, file, Config{Migrations: schema(), Dir: "m"})
	if _, err := db.Exec("INSERT INTO a (v) VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	// Loosen everything, as an older build or a hand-made copy might have.
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open(t, file, Config{Migrations: schema(), Dir: "m"})
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode %o after reopen, want 600", filepath.Base(p), got)
		}
	}
}

func TestPragmas(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "x.db"), Config{Migrations: schema(), Dir: "m", BusyTimeout: 1500 * time.Millisecond})
	db.SetMaxOpenConns(1) // PRAGMA values are per connection
	for _, c := range []struct{ pragma, want string }{
		{"journal_mode", "wal"}, {"foreign_keys", "1"}, {"busy_timeout", "1500"}, {"synchronous", "1"},
	} {
		var got string
		if err := db.QueryRow("PRAGMA " + c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %q, want %q", c.pragma, got, c.want)
		}
	}
	if _, err := db.Exec("INSERT INTO b (a_id) VALUES (42)"); err == nil {
		t.Error("row with a dangling foreign key was accepted")
	}
}

func TestMigrationsAppliedOnceAndInOrder(t *testing.T) {
	for _, tc := range trackings {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "x.db")
			clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
			c := Config{Migrations: schema(), Dir: "m", Tracking: tc.tr, Clock: clock}
			for i := 0; i < 3; i++ {
				db, err := Open(testCtx(t), file, c)
				if err != nil {
					t.Fatalf("open %d: %v", i+1, err)
				}
				if v := version(t, db, tc.tr); v != 2 {
					t.Errorf("open %d: version %d, want 2", i+1, v)
				}
				db.Close()
			}
			db := open(t, file, c)
			if tc.tr == VersionTable {
				var n int
				var applied string
				if err := db.QueryRow("SELECT COUNT(*), MIN(applied) FROM schema_version").Scan(&n, &applied); err != nil {
					t.Fatal(err)
				}
				if n != 2 || applied != "2026-11-21T12:00:00.000000000Z" {
					t.Errorf("schema_version: %d rows, applied %q; want 2 rows stamped by the clock", n, applied)
				}
			} else if _, err := db.Exec("SELECT 1 FROM schema_version"); err == nil {
				t.Error("user_version tracking created a schema_version table")
			}
		})
	}
}

// TestOldLayoutOpens builds databases the way the stores did before this
// package (DDL by hand, version recorded by hand) and checks that only the
// missing migration runs.
func TestOldLayoutOpens(t *testing.T) {
	for _, tc := range trackings {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "old.db")
			old, err := sql.Open("sqlite3", file)
			if err != nil {
				t.Fatal(err)
			}
			stmts := []string{"CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT NOT NULL)", "INSERT INTO a (v) VALUES ('kept')"}
			if tc.tr == UserVersion {
				stmts = append(stmts, "PRAGMA user_version = 1")
			} else {
				stmts = append(stmts, "CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied TEXT NOT NULL)",
					"INSERT INTO schema_version VALUES (1, '0001_init.sql', '2026-01-01T00:00:00.000000000Z')")
			}
			for _, s := range stmts {
				if _, err := old.Exec(s); err != nil {
					t.Fatal(err)
				}
			}
			old.Close()
			db := open(t, file, Config{Migrations: schema(), Dir: "m", Tracking: tc.tr})
			if v := version(t, db, tc.tr); v != 2 {
				t.Errorf("version %d, want 2", v)
			}
			var v string
			if err := db.QueryRow("SELECT v FROM a").Scan(&v); err != nil || v != "kept" {
				t.Errorf("old row: %q, %v", v, err)
			}
			if _, err := db.Exec("INSERT INTO b (a_id) VALUES (1)"); err != nil {
				t.Errorf("second migration not applied: %v", err)
			}
		})
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	for _, tc := range trackings {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "x.db")
			c := Config{Migrations: schema(), Dir: "m", Tracking: tc.tr}
			db := open(t, file, c)
			bump := "PRAGMA user_version = 3"
			if tc.tr == VersionTable {
				bump = "INSERT INTO schema_version VALUES (3, '0003_future.sql', '')"
			}
			if _, err := db.Exec(bump); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db2, err := Open(testCtx(t), file, c)
			if err == nil {
				db2.Close()
				t.Fatal("Open of a newer schema succeeded")
			}
			if !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "3") {
				t.Errorf("error %q should say the schema (3) is newer", err)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	good := schema()
	cases := []struct {
		name, file string
		c          Config
		want       string
	}{
		{"empty path", "", Config{Migrations: good, Dir: "m"}, "empty path"},
		{"missing dir without CreateDir", filepath.Join(dir, "missing", "x.db"), Config{Migrations: good, Dir: "m"}, "no such file"},
		{"path is a dir", dir, Config{Migrations: good, Dir: "m"}, "directory"},
		{"not a database", garbage, Config{Migrations: good, Dir: "m"}, "not a database"},
		{"no migrations", filepath.Join(dir, "a.db"), Config{}, "no migrations"},
		{"bad name", filepath.Join(dir, "b.db"), Config{Migrations: fstest.MapFS{"init.sql": {Data: []byte("")}}}, "init.sql"},
		{"gap", filepath.Join(dir, "c.db"), Config{Migrations: fstest.MapFS{"0001_a.sql": {}, "0003_c.sql": {}}}, "0003_c.sql"},
		{"bad sql", filepath.Join(dir, "d.db"), Config{Migrations: fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLEX")}}}, "0001_a.sql"},
		{"unknown tracking", filepath.Join(dir, "e.db"), Config{Migrations: good, Dir: "m", Tracking: 7}, "tracking"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := Open(testCtx(t), c.file, c.c)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestFailedMigrationLeavesNothingBehind(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.db")
	bad := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (id INTEGER);")},
		"0002_b.sql": {Data: []byte("CREATE TABLE broken (;")},
	}
	if db, err := Open(testCtx(t), file, Config{Migrations: bad}); err == nil {
		db.Close()
		t.Fatal("Open with a broken migration succeeded")
	}
	// All or nothing: the good first step was rolled back too.
	db := open(t, file, Config{Migrations: fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLE a (id INTEGER);")}}})
	if v := version(t, db, UserVersion); v != 1 {
		t.Errorf("version %d, want 1", v)
	}
}

func TestConcurrentOpensMigrateOnce(t *testing.T) {
	for _, tc := range trackings {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "x.db")
			// A migration that fails when run twice: INSERT into a UNIQUE column.
			ms := fstest.MapFS{
				"0001_a.sql": {Data: []byte("CREATE TABLE a (k TEXT PRIMARY KEY); INSERT INTO a VALUES ('once');")},
				"0002_b.sql": {Data: []byte("INSERT INTO a VALUES ('twice-would-fail');")},
			}
			c := Config{Migrations: ms, Tracking: tc.tr}
			ctx := testCtx(t)
			const n = 8
			dbs := make([]*sql.DB, n)
			var g errgroup.Group
			for i := range dbs {
				g.Go(func() error {
					db, err := Open(ctx, file, c)
					if err != nil {
						return fmt.Errorf("open %d: %w", i, err)
					}
					dbs[i] = db
					return nil
				})
			}
			err := g.Wait()
			for _, db := range dbs {
				if db != nil {
					db.Close()
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			db := open(t, file, c)
			var rows int
			if err := db.QueryRow("SELECT COUNT(*) FROM a").Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows != 2 || version(t, db, tc.tr) != 2 {
				t.Errorf("rows %d version %d, want 2 and 2", rows, version(t, db, tc.tr))
			}
		})
	}
}

func TestReadMigrationsOrder(t *testing.T) {
	ms, err := ReadMigrations(fstest.MapFS{
		"0010_j.sql": {}, "0002_b.sql": {}, "0001_a.sql": {}, "0003_c.sql": {}, "0004_d.sql": {},
		"0005_e.sql": {}, "0006_f.sql": {}, "0007_g.sql": {}, "0008_h.sql": {}, "0009_i.sql": {},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("position %d holds %s", i, m.Name)
		}
	}
}

func TestIsBusy(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("migrate: %w", sqlite3.Error{Code: sqlite3.ErrBusy}), true},
		{fmt.Errorf("migrate: %w", sqlite3.Error{Code: sqlite3.ErrLocked}), true},
		{fmt.Errorf("migrate: %w", sqlite3.Error{Code: sqlite3.ErrConstraint}), false},
		{errors.New("database is locked"), false}, // only typed errors count
	} {
		if got := isBusy(tc.err); got != tc.want {
			t.Errorf("isBusy(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestOpenDaemon(t *testing.T) {
	fsys := fstest.MapFS{
		"migrations/0001_init.sql": {Data: []byte("CREATE TABLE a (id INTEGER PRIMARY KEY);")},
		"migrations/0002_more.sql": {Data: []byte("CREATE TABLE b (id INTEGER PRIMARY KEY);")},
	}
	db, err := OpenDaemon(testCtx(t), filepath.Join(t.TempDir(), "d.db"), fsys)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := db.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("max open connections = %d, want 1 (one writer)", n)
	}
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 2 {
		t.Errorf("user_version = %d, want 2", v)
	}
	var busy int
	if err := db.QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if busy != 10000 {
		t.Errorf("busy_timeout = %d ms, want 10000", busy)
	}
	if _, err := OpenDaemon(testCtx(t), filepath.Join(t.TempDir(), "missing", "d.db"), fsys); err == nil {
		t.Error("a missing directory was created; want an error")
	}
}
