package runstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nightshift/bootlevel"
	"nightshift/internal/store/runstore/storetest"
	"nightshift/internal/store/sqlitedb"
)

// migrations is the schema this build applies.
func migrations() ([]sqlitedb.Migration, error) {
	return sqlitedb.ReadMigrations(migrationFS, "migrations")
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func newTestStore(t *testing.T) *Store {
	return openAt(t, filepath.Join(t.TempDir(), "runs.db"))
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) bootlevel.Store { return newTestStore(t) })
}

func TestDurable(t *testing.T) {
	storetest.RunDurable(t,
		func(t *testing.T, path string) bootlevel.Store { return openAt(t, path) },
		func(s bootlevel.Store) error { return s.(*Store).Close() })
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestFileModes(t *testing.T) {
	// A permissive umask must not loosen anything. Umask is process-wide,
	// which is fine here: this package's tests do not run in parallel.
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := filepath.Join(t.TempDir(), "new", "state")
	path := filepath.Join(dir, "runs.db")
	s := openAt(t, path)
	ctx := testCtx(t)
	// Write so that the -wal and -shm files certainly exist.
	if err := s.CreateRun(ctx, storetest.NewRun("m")); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("parent dir mode = %o, want 700", got)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if got := mode(t, p); got != 0o600 {
			t.Errorf("%s mode = %o, want 600", filepath.Base(p), got)
		}
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openAt(t, path)
	if got := mode(t, path); got != 0o600 {
		t.Errorf("mode = %o, want 600", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"empty", "", "empty path"},
		{"parent is a file", filepath.Join(notDir, "runs.db"), notDir},
		{"path is a dir", dir, dir},
		{"not a database", garbage, garbage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(testCtx(t), c.path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestPragmasAndIntegrity(t *testing.T) {
	s := newTestStore(t)
	ctx := testCtx(t)
	if err := s.CreateRun(ctx, storetest.NewRun("p")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutService(ctx, storetest.NewService("p", "web", 1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"synchronous", "1"}, // NORMAL
		{"integrity_check", "ok"},
	} {
		var got string
		if err := s.DB().QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", c.pragma, err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %q, want %q", c.pragma, got, c.want)
		}
	}
	rows, err := s.DB().QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Error("PRAGMA foreign_key_check reports violations")
	}
}

func count(t *testing.T, s *Store, table, run string) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow("SELECT COUNT(*) FROM "+table+" WHERE run = ?", run).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEventsAppendOnlyAndDeleteCascadeRows(t *testing.T) {
	s := newTestStore(t)
	ctx := testCtx(t)
	if err := s.CreateRun(ctx, storetest.NewRun("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutService(ctx, storetest.NewService("a", "web", 1)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: "a", Time: time.Now(), Kind: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DB().ExecContext(ctx, `UPDATE events SET message = 'rewritten' WHERE run = 'a'`); err == nil ||
		!strings.Contains(err.Error(), "append-only") {
		t.Errorf("UPDATE events = %v, want append-only error", err)
	}
	if _, err := s.DB().ExecContext(ctx, `DELETE FROM events WHERE run = 'a'`); err == nil ||
		!strings.Contains(err.Error(), "append-only") {
		t.Errorf("DELETE events = %v, want append-only error", err)
	}
	if n := count(t, s, "events", "a"); n != 3 {
		t.Fatalf("events after refused rewrites = %d, want 3", n)
	}
	if err := s.DeleteRun(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "events", "a"); n != 0 {
		t.Errorf("events left after DeleteRun = %d", n)
	}
	if n := count(t, s, "services", "a"); n != 0 {
		t.Errorf("services left after DeleteRun = %d", n)
	}
}

func TestMigrationsOnceAndNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	ctx := testCtx(t)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		var n, max int
		if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) || max != len(ms) {
			t.Errorf("open %d: schema_version has %d rows, max %d; want %d", i+1, n, max, len(ms))
		}
		if i == 1 {
			if _, err := s.DB().ExecContext(ctx, `INSERT INTO schema_version VALUES (?, 'future.sql', '')`, len(ms)+1); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(ctx, path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should say the schema is newer and name the file", err)
	}
}

func TestMalformedRowsNameTheColumn(t *testing.T) {
	s := newTestStore(t)
	ctx := testCtx(t)
	if err := s.CreateRun(ctx, storetest.NewRun("bad")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutService(ctx, storetest.NewService("bad", "web", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO events (run, time, kind) VALUES ('bad', 'yesterday', 'k')`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `UPDATE services SET ready_at = '21/11/2026' WHERE run = 'bad'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Events(ctx, "bad", 0); err == nil || !strings.Contains(err.Error(), "column time") {
		t.Errorf("Events = %v, want error naming column time", err)
	}
	if _, err := s.Services(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "service web: column ready_at") {
		t.Errorf("Services = %v, want error naming service web and column ready_at", err)
	}
	if _, err := s.DB().ExecContext(ctx, `UPDATE runs SET created = 'soon' WHERE name = 'bad'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRun(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "column created") {
		t.Errorf("GetRun = %v, want error naming column created", err)
	}
}

func TestPathWithURICharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #dir%41", "runs&x=1.db")
	s := openAt(t, path)
	if err := s.CreateRun(testCtx(t), storetest.NewRun("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
}

const (
	helperPath = "RUNSTORE_HELPER_PATH"
	helperID   = "RUNSTORE_HELPER_ID"
)

const helperEvents = 40

// writeAsProcess is what each writer process does: open the (possibly fresh)
// file, create its own run and append events and services to it.
func writeAsProcess(ctx context.Context, path, id string) error {
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	run := "proc-" + id
	if err := s.CreateRun(ctx, storetest.NewRun(run)); err != nil {
		return err
	}
	for i := 0; i < helperEvents; i++ {
		if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: run, Time: time.Now(), Kind: "k", Message: strconv.Itoa(i)}); err != nil {
			return err
		}
		if err := s.PutService(ctx, storetest.NewService(run, fmt.Sprintf("s%d", i%5), i%3)); err != nil {
			return err
		}
	}
	return nil
}

// TestHelperWriter is not a test: TestMultiProcessWriters runs the test
// binary with it as a separate writer process.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(helperPath)
	if path == "" {
		t.Skip("helper process for TestMultiProcessWriters")
	}
	if err := writeAsProcess(testCtx(t), path, os.Getenv(helperID)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
}

func TestMultiProcessWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.db")
	ctx := testCtx(t)
	const procs = 3
	var cmds []*exec.Cmd
	for i := 0; i < procs; i++ {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperPath+"="+path, helperID+"="+strconv.Itoa(i))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("writer %d output:\n%s", i, out.String())
			}
		})
	}
	// This process writes at the same time, through its own connection pool.
	if err := writeAsProcess(ctx, path, "parent"); err != nil {
		t.Error(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	s := openAt(t, path)
	runs, err := s.ListRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != procs+1 {
		t.Fatalf("runs = %d, want %d", len(runs), procs+1)
	}
	seen := map[int64]bool{}
	for _, r := range runs {
		evs, err := s.Events(ctx, r.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != helperEvents {
			t.Errorf("run %s has %d events, want %d", r.Name, len(evs), helperEvents)
		}
		for i, e := range evs {
			if seen[e.Seq] {
				t.Errorf("seq %d used twice", e.Seq)
			}
			seen[e.Seq] = true
			if e.Message != strconv.Itoa(i) {
				t.Errorf("run %s event %d message %q, want %d (order lost)", r.Name, i, e.Message, i)
			}
		}
		svcs, err := s.Services(ctx, r.Name)
		if err != nil || len(svcs) != 5 {
			t.Errorf("run %s services = %d, %v; want 5", r.Name, len(svcs), err)
		}
	}
	ms, _ := migrations()
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_version`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("schema_version rows = %d after concurrent opens, want %d", n, len(ms))
	}
	var ok string
	if err := s.DB().QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Errorf("integrity_check = %q, %v", ok, err)
	}
}

// FuzzServiceRoundTrip feeds arbitrary text through every string column: the
// store must give back exactly what it was given.
func FuzzServiceRoundTrip(f *testing.F) {
	f.Add("web", "port", "8080", "boot: exit 1", "/var/log/x.log", "host-1")
	f.Add("a b", `"q"`, "$(rm -rf /); `x`", "line1\nline2", "", "")
	f.Add("\x00nul", "ünï", "\u2028", "\t", "%41?#", "'; DROP TABLE runs; --")
	s, err := Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	if err := s.CreateRun(context.Background(), storetest.NewRun("fz")); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, key, value, errText, logPath, hostname string) {
		if name == "" || !utf8Valid(name, key, value, hostname) {
			t.Skip("names and JSON-held values are UTF-8 by contract")
		}
		ctx := context.Background()
		want := bootlevel.ServiceRecord{
			Run: "fz", Name: name, Level: 1, State: bootlevel.ServiceBooting,
			Attributes: map[string]string{key: value}, Host: bootlevel.Host{Hostname: hostname},
			Error: errText, LogPath: logPath, Updated: time.Unix(0, int64(len(value))).UTC(),
		}
		if err := s.PutService(ctx, want); err != nil {
			t.Fatal(err)
		}
		svcs, err := s.Services(ctx, "fz")
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range svcs {
			if got.Name != name {
				continue
			}
			if got.Attributes[key] != value || len(got.Attributes) != 1 || got.Error != errText ||
				got.LogPath != logPath || got.Host.Hostname != hostname || !got.Updated.Equal(want.Updated) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			return
		}
		t.Fatalf("service %q not found", name)
	})
}

func utf8Valid(ss ...string) bool {
	for _, s := range ss {
		if strings.ToValidUTF8(s, "\uFFFD") != s {
			return false
		}
	}
	return true
}

func TestErrNotFoundWrapsName(t *testing.T) {
	s := newTestStore(t)
	_, err := s.GetRun(testCtx(t), "nope")
	if !errors.Is(err, bootlevel.ErrNotFound) || err.Error() != "get run nope: not found" {
		t.Errorf("GetRun = %q", err)
	}
}

func benchStore(b *testing.B) *Store {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.CreateRun(context.Background(), storetest.NewRun("b")); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkPutService is the engine's per-transition write.
func BenchmarkPutService(b *testing.B) {
	s, ctx := benchStore(b), context.Background()
	rec := storetest.NewService("b", "web", 1)
	for b.Loop() {
		rec.Restarts++
		if err := s.PutService(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendEvent is the engine's per-step history write.
func BenchmarkAppendEvent(b *testing.B) {
	s, ctx := benchStore(b), context.Background()
	for b.Loop() {
		if _, err := s.AppendEvent(ctx, bootlevel.Event{Run: "b", Time: time.Now(), Kind: "service.state"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventsPage is mgmt tailing a run: read everything after a seq.
func BenchmarkEventsPage(b *testing.B) {
	s, ctx := benchStore(b), context.Background()
	var mid int64
	for i := 0; i < 1000; i++ {
		e, err := s.AppendEvent(ctx, bootlevel.Event{Run: "b", Time: time.Now(), Kind: "k"})
		if err != nil {
			b.Fatal(err)
		}
		if i == 900 {
			mid = e.Seq
		}
	}
	for b.Loop() {
		if evs, err := s.Events(ctx, "b", mid); err != nil || len(evs) != 99 {
			b.Fatalf("Events = %d, %v", len(evs), err)
		}
	}
}
