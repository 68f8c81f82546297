package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"nightshift/internal/app"
	"nightshift/internal/nsenv"
	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
	"nightshift/mgmt"
)

// TestPostgresStoreEndToEnd: plans/local.toml with store = "postgres://..."
// on its provisioner and controller boots, reaches policy, keeps it after
// the controller is killed -9 (the keeper restarts it on the same schema),
// and tears down clean. The state is in the run's two schemas, not in
// SQLite files, mgmt reads the pools' history from there, and the store's
// password appears in no log.
func TestPostgresStoreEndToEnd(t *testing.T) {
	requireRuns(t)
	pgURL := pgtest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Trust authentication ignores the password, which lets the test hand
	// one over and look for it in the logs.
	const password = "e2eStorePassw0rd"
	withPass := strings.Replace(pgURL, "postgres@", "postgres:"+password+"@", 1)
	if withPass == pgURL {
		t.Skipf("cannot add a password to %s", pgURL)
	}
	b, err := os.ReadFile(filepath.Join(env.Root, "plans", "local.toml"))
	if err != nil {
		t.Fatal(err)
	}
	plan := string(b)
	for _, r := range []struct{ old, new string }{
		{`driver = "local" }`, fmt.Sprintf(`driver = "local", store = %q }`, withPass)},
		{"[level.service.controller.config]\n", fmt.Sprintf("[level.service.controller.config]\nstore = %q\n", withPass)},
	} {
		if !strings.Contains(plan, r.old) {
			t.Fatalf("plans/local.toml no longer has %q; update this test", r.old)
		}
		plan = strings.Replace(plan, r.old, r.new, 1)
	}
	path := filepath.Join(env.PlanDir, "local-postgres.toml")
	if err := os.WriteFile(path, []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}
	r := env.NewRun(t, path, "pg")
	// launch, mgmt and the keeper keep the home's run store there too.
	r.ExtraEnv = []string{nsenv.Store + "=" + withPass}
	provSchema, ctlSchema := pgdb.SchemaName("ns", r.Name, "provisioner"), pgdb.SchemaName("ns", r.Name, "controller")
	runSchema := app.RunStoreSchema(r.Home)
	t.Cleanup(func() {
		// Cleanups run last-registered first: tear down before the run
		// store it needs is dropped.
		r.Mgmt(context.Background(), "teardown", r.Name)
		pgtest.Drop(t, pgURL, provSchema)
		pgtest.Drop(t, pgURL, ctlSchema)
		pgtest.Drop(t, pgURL, runSchema)
	})
	r.Launch(ctx)
	mustWait(t, r, ctx, "pools at policy after launch", 90*time.Second, atPolicy)

	pid, alive, err := r.DaemonPID("controller", "controller")
	if err != nil || !alive {
		t.Fatalf("controller pid %d alive %v: %v", pid, alive, err)
	}
	if err := r.Kill9("controller", pid); err != nil {
		t.Fatal(err)
	}
	mustWait(t, r, ctx, "a restarted controller", 60*time.Second, func(*mgmt.RunStatus) (bool, string) {
		p, ok, _ := r.DaemonPID("controller", "controller")
		return ok && p != pid, fmt.Sprintf("controller pid %d (killed %d)", p, pid)
	})
	mustWait(t, r, ctx, "pools at policy after the restart", 60*time.Second, atPolicy)
	assertAgrees(t, r, ctx, "on PostgreSQL")

	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []struct{ what, sql string }{
		{"instances in the provisioner's schema", `SELECT COUNT(*) FROM ` + pgx.Identifier{provSchema, "instances"}.Sanitize()},
		{"decisions in the controller's schema", `SELECT COUNT(*) FROM ` + pgx.Identifier{ctlSchema, "decisions"}.Sanitize()},
		{"events in the home's run store", `SELECT COUNT(*) FROM ` + pgx.Identifier{runSchema, "events"}.Sanitize()},
	} {
		var n int
		if err := conn.QueryRow(ctx, q.sql).Scan(&n); err != nil || n == 0 {
			t.Errorf("%d %s (%v), want some", n, q.what, err)
		}
	}
	// mgmt finds the controller's history through the locator it left.
	h, err := mgmt.History(ctx, app.OpenHistory, r.Home, r.Name, "sleeper", time.Now().Add(-time.Hour))
	if err != nil || len(h.Samples) == 0 || len(h.Decisions) == 0 {
		t.Errorf("history of sleeper: %d samples, %d decisions (%v), want some of each", len(h.Samples), len(h.Decisions), err)
	}
	err = filepath.WalkDir(r.Home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch name := d.Name(); {
		case name == "provisioner.db" || name == "controller.db":
			t.Errorf("%s exists: a daemon on PostgreSQL kept a SQLite store", p)
		case name == "nightshift.db":
			t.Errorf("%s exists: launch and mgmt kept the run store in SQLite with %s set", p, nsenv.Store)
		case strings.HasSuffix(name, ".log"):
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), password) {
				t.Errorf("%s holds the store's password", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Teardown drops the daemons' schemas once they are stopped, says so,
	// and leaves the home's run store, whose rows of the run go with
	// `mgmt rm`.
	res := r.Mgmt(ctx, "teardown", "--json", r.Name)
	if res.Code != 0 {
		t.Fatalf("teardown exit %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
	var rep mgmt.TeardownReport
	if err := json.Unmarshal([]byte(res.Stdout), &rep); err != nil {
		t.Fatalf("teardown --json: %v\n%s", err, res.Stdout)
	}
	dropped := map[string]bool{}
	for _, it := range rep.Destroyed {
		if it.Kind == "pg-schema" {
			dropped[it.ID] = true
			if strings.Contains(it.Where, password) || it.Where == "" {
				t.Errorf("pg-schema item where %q: want the server, no password", it.Where)
			}
		}
	}
	if !dropped[provSchema] || !dropped[ctlSchema] || len(dropped) != 2 || len(rep.Remaining) != 0 {
		t.Errorf("teardown destroyed pg-schemas %v, remaining %+v; want exactly %s and %s, none left", dropped, rep.Remaining, provSchema, ctlSchema)
	}
	schemaExists := func(s string) bool {
		var n int
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM pg_namespace WHERE nspname = $1`, s).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for _, s := range []string{provSchema, ctlSchema} {
		if schemaExists(s) {
			t.Errorf("schema %s left after teardown", s)
		}
	}
	var runs int
	if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM `+pgx.Identifier{runSchema, "runs"}.Sanitize()+` WHERE name = $1`, r.Name).Scan(&runs); err != nil || runs != 1 {
		t.Errorf("the home's run store holds %d records of the run (%v), want it kept for mgmt rm", runs, err)
	}
	if res := r.Mgmt(ctx, "teardown", "--json", r.Name); res.Code != 0 {
		t.Errorf("a second teardown exit %d: %s", res.Code, res.Stdout)
	}
	if res := r.Mgmt(ctx, "rm", r.Name); res.Code != 0 {
		t.Fatalf("rm exit %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, tbl := range []string{"runs", "services", "events"} {
		var n int
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM `+pgx.Identifier{runSchema, tbl}.Sanitize()+` WHERE `+map[bool]string{true: "name", false: "run"}[tbl == "runs"]+` = $1`, r.Name).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows of the run in the home's %s after rm (%v)", n, tbl, err)
		}
	}
	if !schemaExists(runSchema) {
		t.Errorf("the home's run store %s was dropped", runSchema)
	}
	r.AssertNoProcesses()
}
