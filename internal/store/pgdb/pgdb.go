// Package pgdb owns how Nightshift's PostgreSQL stores (provisioner,
// controller, run) connect and write: a connection pool whose search_path
// is the store's own schema (so several runs and daemons share one
// database), embedded ordered migrations applied once under an advisory
// lock with refusal of a newer schema, write transactions that check the
// holder's leader.Fence first and retry serialization failures, and the
// command ledger (cmdledger.Ledger) in a store's schema.
package pgdb

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"nightshift/internal/leader"
	"nightshift/internal/redact"
	"nightshift/internal/store/sqlitedb"
)

// IsURL reports whether a store setting names PostgreSQL rather than a
// SQLite file.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// IdleInTransactionTimeout is how long the server lets a store's session
// sit idle inside a transaction; the stores' transactions are a few
// statements, so this is only ever reached by a stuck or paused process.
const IdleInTransactionTimeout = "5s"

// Config describes one store's schema in a database.
type Config struct {
	// URL is postgres://user:password@host:port/db?...; it may hold a
	// password, so it is only ever shown through redact.URL.
	URL string
	// Schema is the store's namespace (see SchemaName).
	Schema string
	// Migrations holds NNNN_name.sql files under Dir, numbered 1, 2, 3...
	Migrations fs.FS
	Dir        string
	// Fence, when set, is checked at the start of every write
	// transaction: a deposed leader's writes fail with leader.ErrFenced.
	Fence leader.Fence
	// MaxConns bounds the pool (default 4: a daemon's writes are few).
	MaxConns int32
}

// DB is one store's schema.
type DB struct {
	Pool   *pgxpool.Pool
	Schema string
	fence  leader.Fence
}

// Open connects, creates the schema if needed and applies the missing
// migrations. Errors show the URL without its password.
func Open(ctx context.Context, c Config) (*DB, error) {
	if c.Schema == "" {
		return nil, errors.New("postgres store: empty schema")
	}
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		// pgx's parse errors may quote the URL; say only which one.
		return nil, fmt.Errorf("postgres store %s: invalid URL", redact.URL(c.URL))
	}
	pc.ConnConfig.RuntimeParams["search_path"] = c.Schema
	// A process paused inside a transaction (SIGSTOP) would hold the share
	// lock its fence check took on the lease row, and so keep a standby
	// from taking over; the server ends such a session instead.
	pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = IdleInTransactionTimeout
	pc.MaxConns = 4
	if c.MaxConns > 0 {
		pc.MaxConns = c.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: %s", redact.URL(c.URL), redact.String(err.Error()))
	}
	db := &DB{Pool: pool, Schema: c.Schema, fence: c.Fence}
	if err := db.migrate(ctx, c); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store %s schema %s: %w", redact.URL(c.URL), c.Schema, err)
	}
	return db, nil
}

// Connect opens a pool of at most maxConns connections to url, outside any
// schema: a replica's lease gets one of its own, so that renewals never
// queue behind the store's writes.
func Connect(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: invalid URL", redact.URL(url))
	}
	pc.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %s", redact.URL(url), redact.String(err.Error()))
	}
	return pool, nil
}

// OpenReadOnly connects to an existing schema for reading only: nothing is
// created or migrated, and the server refuses every write of the session
// (default_transaction_read_only), so a reader such as mgmt can never
// change a daemon's store. A schema that does not exist is an error
// wrapping fs.ErrNotExist.
func OpenReadOnly(ctx context.Context, url, schema string) (*DB, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: invalid URL", redact.URL(url))
	}
	pc.ConnConfig.RuntimeParams["search_path"] = schema
	pc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: %s", redact.URL(url), redact.String(err.Error()))
	}
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&ok); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store %s: %w", redact.URL(url), err)
	}
	if !ok {
		pool.Close()
		return nil, fmt.Errorf("postgres store %s schema %s: %w", redact.URL(url), schema, fs.ErrNotExist)
	}
	return &DB{Pool: pool, Schema: schema}, nil
}

// Close releases the pool.
func (db *DB) Close() { db.Pool.Close() }

// WithFence returns the same schema and pool whose writes check f: a
// replica opens its store as a standby (migrations applied, reads
// allowed) and fences it once it holds the lease.
func (db *DB) WithFence(f leader.Fence) *DB {
	c := *db
	c.fence = f
	return &c
}

// Fence is the fence the store's writes check (zero: none).
func (db *DB) Fence() leader.Fence { return db.fence }

// migrate applies the missing migrations in one transaction under an
// advisory lock on the schema, so replicas starting together apply each
// exactly once.
func (db *DB) migrate(ctx context.Context, c Config) error {
	ms, err := sqlitedb.ReadMigrations(c.Migrations, c.Dir)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte("nightshift-migrate:" + c.Schema))
	key := int64(binary.BigEndian.Uint64(sum[:8]))
	return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{c.Schema}.Sanitize()); err != nil {
			return fmt.Errorf("migrate: create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrate: create schema_version: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&have); err != nil {
			return fmt.Errorf("migrate: read schema_version: %w", err)
		}
		if have > len(ms) {
			return fmt.Errorf("migrate: schema version %d is newer than this program knows (%d); use a newer nightshift", have, len(ms))
		}
		for _, m := range ms[have:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("migrate: record %s: %w", m.Name, err)
			}
		}
		return nil
	})
}

// maxAttempts bounds Write's retries of serialization failures and
// deadlocks.
const maxAttempts = 5

// Write runs fn in a transaction that first checks the store's fence
// (when it has one) and commits if fn succeeds. A serialization failure or
// deadlock runs the whole transaction again, so fn must only touch tx. An
// error of a deposed holder wraps leader.ErrFenced.
func (db *DB) Write(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.WriteOpts(ctx, pgx.TxOptions{}, fn)
}

// WriteOpts is Write with transaction options (an isolation level).
func (db *DB) WriteOpts(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = pgx.BeginTxFunc(ctx, db.Pool, opts, func(tx pgx.Tx) error {
			if !db.fence.IsZero() {
				if err := db.fence.Check(ctx, tx); err != nil {
					return err
				}
			}
			return fn(tx)
		})
		if err == nil || attempt == maxAttempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// IsUniqueViolation reports a duplicate key.
func IsUniqueViolation(err error) bool { return hasCode(err, "23505") }

// IsForeignKeyViolation reports a missing referenced row.
func IsForeignKeyViolation(err error) bool { return hasCode(err, "23503") }

func hasCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

var unsafeIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// SchemaName builds a schema name from parts ("ns", run, "provisioner"):
// lower case, anything but letters, digits and '_' replaced by '_', and
// kept within PostgreSQL's 63 bytes by a hash of the whole when longer, so
// two runs never share a schema.
func SchemaName(parts ...string) string {
	whole := strings.Join(parts, "_")
	s := unsafeIdent.ReplaceAllString(strings.ToLower(whole), "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "s_" + s
	}
	if len(s) > 63 || s != strings.ToLower(whole) {
		sum := sha256.Sum256([]byte(whole))
		h := hex.EncodeToString(sum[:4])
		s = s[:min(len(s), 63-len(h)-1)] + "_" + h
	}
	return s
}
