package pgdb

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"nightshift/internal/redact"
)

// DaemonRoles are the daemons that keep a store of their own per run in
// PostgreSQL (config store = "postgres://..."), each in the schema
// DaemonSchema names; replicas of a role share it.
var DaemonRoles = []string{"provisioner", "controller"}

// DaemonSchema is the schema of run's daemon role in its database.
func DaemonSchema(run, role string) string { return SchemaName("ns", run, role) }

// RunSchemas are every schema run's daemons may have created in one
// database. The home's run store (NIGHTSHIFT_STORE, ns_runs_<hash>) is
// not one of them: it is the home's, shared by every run, and a run's rows
// in it go with `mgmt rm`, as they do from the SQLite file.
func RunSchemas(run string) []string {
	out := make([]string, 0, len(DaemonRoles))
	for _, r := range DaemonRoles {
		out = append(out, DaemonSchema(run, r))
	}
	return out
}

// Sweeper drops a torn-down run's daemon schemas (RunSchemas) from one
// PostgreSQL database; it is one of teardown's sweepers (mgmt.Sweeper),
// run once the run's daemons are stopped, so nothing writes there again.
// Schemas are named exactly, never by pattern: no other run's, nor the
// home's run store, can match.
type Sweeper struct {
	// URL reaches the database (it may hold a password: never shown).
	URL string
	// Timeout bounds the whole sweep (default 30 s).
	Timeout time.Duration
}

// Name implements mgmt.Sweeper: the kind "pg-schema" and where, the
// server and database without credentials.
func (s Sweeper) Name() string { return "pg-schema (" + Where(s.URL) + ")" }

// Where names a database for a person: host:port/database, no user,
// password or options.
func Where(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redact.URL(raw)
	}
	return u.Host + u.Path
}

// Sweep implements mgmt.Sweeper: it lists the run's schemas that exist
// and, unless dryRun, drops each with everything in it, then looks again;
// what is still there is remaining. A database it cannot reach leaves
// every one of the run's schemas remaining, with why: not knowing is not
// "none left".
func (s Sweeper) Sweep(ctx context.Context, run string, dryRun bool) (destroyed, remaining []string, err error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want := RunSchemas(run)
	unknown := func(err error) ([]string, []string, error) {
		for _, n := range want {
			remaining = append(remaining, n+" (unreachable)")
		}
		return nil, remaining, fmt.Errorf("postgres %s: %s", Where(s.URL), redact.String(err.Error()))
	}
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return unknown(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	found, err := existing(ctx, conn, want)
	if err != nil {
		return unknown(err)
	}
	if dryRun {
		return found, nil, nil
	}
	var errs []error
	for _, n := range found {
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{n}.Sanitize()+` CASCADE`); err != nil {
			errs = append(errs, fmt.Errorf("drop schema %s: %s", n, redact.String(err.Error())))
		}
	}
	left, err := existing(ctx, conn, want)
	if err != nil {
		return nil, found, fmt.Errorf("postgres %s: %s", Where(s.URL), redact.String(err.Error()))
	}
	for _, n := range found {
		if !slices.Contains(left, n) {
			destroyed = append(destroyed, n)
		}
	}
	if len(errs) > 0 {
		err = fmt.Errorf("postgres %s: %v", Where(s.URL), errs)
	}
	return destroyed, left, err
}

// existing returns which of names are schemas of the database, sorted.
func existing(ctx context.Context, conn *pgx.Conn, names []string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname`, names)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
