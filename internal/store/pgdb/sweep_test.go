package pgdb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"nightshift/internal/store/pgdb"
	"nightshift/internal/store/pgdb/pgtest"
)

// TestSweeperDropsOnlyTheRunsSchemas: teardown's PostgreSQL sweep drops a
// run's daemon schemas, with their tables, and nothing else: not another
// run's (whose name the run's is a prefix of), not the home's run store.
// A dry run lists and keeps; a second sweep finds nothing; a server it
// cannot reach leaves the run's schemas remaining, not forgotten.
func TestSweeperDropsOnlyTheRunsSchemas(t *testing.T) {
	url := pgtest.Need(t)
	ctx := context.Background()
	var b [3]byte
	_, _ = rand.Read(b[:])
	run := "sw" + hex.EncodeToString(b[:])
	other := run + "-b" // sanitizes to ns_<run>_b_...: shares the prefix
	mine := pgdb.RunSchemas(run)
	slices.Sort(mine) // sweeps report sorted
	keep := append(pgdb.RunSchemas(other), "ns_runs_"+run)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range append(slices.Clone(mine), keep...) {
		t.Cleanup(func() { pgtest.Drop(t, url, s) })
		if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{s}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE `+pgx.Identifier{s, "t"}.Sanitize()+` (x INT)`); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(s string) bool {
		var n int
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM pg_namespace WHERE nspname = $1`, s).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	sw := pgdb.Sweeper{URL: url}
	if !strings.HasPrefix(sw.Name(), "pg-schema (") || strings.Contains(sw.Name(), "postgres@") {
		t.Errorf("name %q: want the kind and the server, no user", sw.Name())
	}

	d, rem, err := sw.Sweep(ctx, run, true)
	if err != nil || !slices.Equal(d, mine) || len(rem) != 0 {
		t.Fatalf("dry run: %v, %v, %v; want %v listed", d, rem, err, mine)
	}
	for _, s := range mine {
		if !exists(s) {
			t.Fatalf("dry run dropped %s", s)
		}
	}

	d, rem, err = sw.Sweep(ctx, run, false)
	if err != nil || !slices.Equal(d, mine) || len(rem) != 0 {
		t.Fatalf("sweep: destroyed %v, remaining %v, %v; want %v destroyed", d, rem, err, mine)
	}
	for _, s := range mine {
		if exists(s) {
			t.Errorf("%s still exists", s)
		}
	}
	for _, s := range keep {
		if !exists(s) {
			t.Errorf("%s, not the run's, was dropped", s)
		}
	}

	if d, rem, err := sw.Sweep(ctx, run, false); err != nil || len(d) != 0 || len(rem) != 0 {
		t.Fatalf("second sweep: %v, %v, %v; want nothing", d, rem, err)
	}

	dead := pgdb.Sweeper{URL: "postgres://postgres:s3cret@127.0.0.1:1/postgres?sslmode=disable"}
	d, rem, err = dead.Sweep(ctx, run, false)
	if err == nil || len(d) != 0 || len(rem) != len(mine) {
		t.Fatalf("unreachable: %v, %v, %v; want every schema remaining and an error", d, rem, err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(dead.Name(), "s3cret") {
		t.Errorf("the password shows: %v / %s", err, dead.Name())
	}
}
