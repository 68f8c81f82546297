// Package leader owns fenced leadership over PostgreSQL: a lease row (name,
// holder, epoch, expires_at) per role in a leases table, acquired when it
// has expired with epoch+1, renewed every TTL/3, released on shutdown, and
// the Fence every write transaction of a PostgreSQL store checks first, so
// that a holder that was deposed (paused, partitioned) can never write
// again. It is a client of the database's own locking: no consensus of our
// own.
package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jonboulle/clockwork"
)

// DefaultTTL is how long a lease lasts without renewal, Kubernetes'
// leader-election default.
const DefaultTTL = 15 * time.Second

// ErrFenced is what a fenced write fails with when its holder no longer
// holds the lease at its epoch.
var ErrFenced = errors.New("fenced: this process no longer holds the lease")

// ErrLost is what Hold returns when the lease could not be renewed in
// time or was taken over: the holder must stop acting.
var ErrLost = errors.New("lease lost")

// Table is the name of the lease table in a store's schema.
const Table = "leases"

// DB is what the lease needs of a connection, a pool or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Fence is one tenure of a lease: who held it at which epoch. Its zero
// value is no fence.
type Fence struct {
	// Schema holds the leases table; the store's own schema.
	Schema string
	Name   string
	Holder string
	Epoch  int64
}

// IsZero reports whether f fences nothing.
func (f Fence) IsZero() bool { return f.Name == "" }

func (f Fence) table() string { return pgx.Identifier{f.Schema, Table}.Sanitize() }

// Check verifies, inside the write transaction tx, that f's holder still
// holds the lease at f's epoch and that it has not expired, and takes a
// share lock on the lease row: a takeover (which updates the row) waits
// until tx ends, so a write either commits while its holder leads or is
// refused. Expiry is judged by the database's now(), never by the caller's
// clock, so clock skew between hosts cannot stretch a tenure. It returns
// an error wrapping ErrFenced when the holder was deposed.
func (f Fence) Check(ctx context.Context, tx DB) error {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT expires_at > now() FROM `+f.table()+
		` WHERE name = $1 AND holder = $2 AND epoch = $3 FOR SHARE`, f.Name, f.Holder, f.Epoch).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !ok) {
		return fmt.Errorf("lease %s epoch %d of %s: %w", f.Name, f.Epoch, f.Holder, ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("check lease %s: %w", f.Name, err)
	}
	return nil
}

// Config describes one candidate for one lease.
type Config struct {
	// DB reaches the database (a *pgxpool.Pool).
	DB DB
	// Schema holds the leases table; Name is the role ("provisioner").
	Schema, Name string
	// Holder names this candidate uniquely (host, pid and a random part):
	// a restarted process is a new holder.
	Holder string
	// TTL is the lease's length (DefaultTTL when zero); it is renewed
	// every TTL/3.
	TTL time.Duration
	// Retry is how often a standby tries to take the lease at most apart
	// (TTL/3 when zero); it tries sooner when the lease it saw expires
	// sooner, so a takeover follows the expiry within moments, not up to
	// Retry later.
	Retry time.Duration
	Clock clockwork.Clock
	Log   *slog.Logger
}

// Lease is one candidate's handle on a lease row.
type Lease struct {
	c  Config
	db ops

	mu sync.Mutex
	// sent is when the acquire of epoch was sent: the tenure's first
	// "good renewal", from which Hold counts even when it starts later.
	sent  time.Time
	epoch int64
}

// ops are the three statements, behind an interface so that the renewal
// logic can be tested with an injected clock and a failing database.
// acquire reports, when it did not take the lease, how long the lease it
// found has left by the database's clock (0 when unknown).
type ops interface {
	acquire(ctx context.Context, name, holder string, ttl time.Duration) (epoch int64, ok bool, left time.Duration, err error)
	renew(ctx context.Context, f Fence, ttl time.Duration) (ok bool, err error)
	release(ctx context.Context, f Fence) error
}

// New returns a candidate. It ensures the leases table exists.
func New(ctx context.Context, c Config) (*Lease, error) {
	if c.DB == nil || c.Schema == "" || c.Name == "" || c.Holder == "" {
		return nil, errors.New("leader: DB, Schema, Name and Holder are required")
	}
	if _, err := c.DB.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{c.Schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("lease %s: create schema: %w", c.Name, err)
	}
	if _, err := c.DB.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgx.Identifier{c.Schema, Table}.Sanitize()+` (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	epoch      BIGINT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL)`); err != nil && !isDuplicate(err) {
		return nil, fmt.Errorf("lease %s: create table: %w", c.Name, err)
	}
	return newLease(c, sqlOps{db: c.DB, table: pgx.Identifier{c.Schema, Table}.Sanitize()}), nil
}

func newLease(c Config, db ops) *Lease {
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Retry <= 0 {
		c.Retry = c.TTL / 3
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return &Lease{c: c, db: db}
}

// isDuplicate: two candidates creating the table at once race in the
// catalog, and one gets a unique violation although IF NOT EXISTS.
func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07")
}

// TryAcquire takes the lease if it is free (never held, released or
// expired by the database's clock), with the epoch one above the last.
func (l *Lease) TryAcquire(ctx context.Context) (Fence, bool, error) {
	f, ok, _, err := l.tryAcquire(ctx)
	return f, ok, err
}

// tryAcquire is TryAcquire that also says how long the lease it could not
// take has left.
func (l *Lease) tryAcquire(ctx context.Context) (Fence, bool, time.Duration, error) {
	sent := l.c.Clock.Now()
	epoch, ok, left, err := l.db.acquire(ctx, l.c.Name, l.c.Holder, l.c.TTL)
	if err != nil || !ok {
		return Fence{}, false, left, err
	}
	l.mu.Lock()
	l.sent, l.epoch = sent, epoch
	l.mu.Unlock()
	return Fence{Schema: l.c.Schema, Name: l.c.Name, Holder: l.c.Holder, Epoch: epoch}, true, 0, nil
}

// expiryMargin is how long after the expiry it saw a standby tries again:
// a moment, so that the database's clock has surely passed it.
const expiryMargin = 5 * time.Millisecond

// Acquire waits as a standby until it holds the lease, trying every
// Retry, or just after the lease it found expires when that is sooner: a
// holder killed mid-tenure is replaced as soon as the database lets
// anyone in, which is what the TTL alone decides. Trying early is always
// safe, the database refuses a lease that has not expired; a database
// error is logged and retried.
func (l *Lease) Acquire(ctx context.Context) (Fence, error) {
	for {
		f, ok, left, err := l.tryAcquire(ctx)
		if ok {
			l.c.Log.Info("lease acquired", "lease", l.c.Name, "holder", l.c.Holder, "epoch", f.Epoch)
			return f, nil
		}
		if err != nil {
			l.c.Log.Warn("lease: acquire failed", "lease", l.c.Name, "err", err)
		}
		wait := l.c.Retry
		if err == nil && left > 0 && left+expiryMargin < wait {
			wait = left + expiryMargin
		}
		t := l.c.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Fence{}, ctx.Err()
		case <-t.Chan():
		}
	}
}

// Hold renews f every TTL/3 until ctx ends, then releases it (so a standby
// takes over at once) and returns nil. It returns an error wrapping ErrLost
// as soon as the lease was taken over, or when no renewal succeeded within
// TTL of the last good one: measured from when that renewal was sent, by
// this process's monotonic clock, so it stops no later than the database
// lets another candidate in. A process paused past its TTL (SIGSTOP) sees
// that on its first tick after resuming, and meanwhile every fenced write
// it attempts is refused by the database.
func (l *Lease) Hold(ctx context.Context, f Fence) error {
	clock := l.c.Clock
	every := l.c.TTL / 3
	// The tenure began when its acquire was sent, not when Hold started:
	// a daemon may take seconds to set up between the two.
	lastOK := clock.Now()
	l.mu.Lock()
	if l.epoch == f.Epoch && !l.sent.IsZero() {
		lastOK = l.sent
	}
	l.mu.Unlock()
	t := clock.NewTimer(max(0, every-clock.Since(lastOK)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.c.TTL/3)
			err := l.db.release(rctx, f)
			cancel()
			if err != nil {
				l.c.Log.Warn("lease: release failed; it expires on its own", "lease", f.Name, "err", err)
			} else {
				l.c.Log.Info("lease released", "lease", f.Name, "epoch", f.Epoch)
			}
			return nil
		case <-t.Chan():
		}
		sent := clock.Now()
		if sent.Sub(lastOK) >= l.c.TTL {
			return fmt.Errorf("lease %s epoch %d: not renewed for %v: %w", f.Name, f.Epoch, sent.Sub(lastOK), ErrLost)
		}
		// A renewal must answer before the lease would expire.
		rctx, cancel := context.WithTimeout(ctx, l.c.TTL-sent.Sub(lastOK))
		ok, err := l.db.renew(rctx, f, l.c.TTL)
		cancel()
		switch {
		case err == nil && !ok:
			return fmt.Errorf("lease %s epoch %d: taken over or expired: %w", f.Name, f.Epoch, ErrLost)
		case err == nil:
			lastOK = sent
			t.Reset(every)
		case ctx.Err() != nil:
			t.Reset(0)
		default:
			l.c.Log.Warn("lease: renewal failed; retrying", "lease", f.Name, "err", err)
			wait := min(l.c.Retry, every/3+1)
			t.Reset(wait)
		}
	}
}

// sqlOps are the statements on a real database. Every expiry is computed
// by the database's now(): hosts' clocks never decide who holds the lease.
type sqlOps struct {
	db    DB
	table string
}

func (o sqlOps) acquire(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, time.Duration, error) {
	var epoch int64
	err := o.db.QueryRow(ctx, `INSERT INTO `+o.table+` AS l (name, holder, epoch, expires_at)
		VALUES ($1, $2, 1, now() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = l.epoch + 1, expires_at = excluded.expires_at
		WHERE l.expires_at <= now()
		RETURNING epoch`, name, holder, ttl.Microseconds()).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		// Held: how long it has left, by the database's clock alone (a
		// difference of its own timestamps), so this host's clock only
		// times the wait and can at worst make the next try early.
		var us int64
		err := o.db.QueryRow(ctx, `SELECT GREATEST(0, (EXTRACT(EPOCH FROM expires_at - now()) * 1000000)::BIGINT)
			FROM `+o.table+` WHERE name = $1`, name).Scan(&us)
		if err != nil {
			return 0, false, 0, nil // it is held; the next try reads it again
		}
		return 0, false, time.Duration(us) * time.Microsecond, nil
	}
	if err != nil {
		return 0, false, 0, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return epoch, true, 0, nil
}

func (o sqlOps) renew(ctx context.Context, f Fence, ttl time.Duration) (bool, error) {
	tag, err := o.db.Exec(ctx, `UPDATE `+o.table+` SET expires_at = now() + $4 * interval '1 microsecond'
		WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()`, f.Name, f.Holder, f.Epoch, ttl.Microseconds())
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", f.Name, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (o sqlOps) release(ctx context.Context, f Fence) error {
	_, err := o.db.Exec(ctx, `UPDATE `+o.table+` SET expires_at = now()
		WHERE name = $1 AND holder = $2 AND epoch = $3`, f.Name, f.Holder, f.Epoch)
	if err != nil {
		return fmt.Errorf("release lease %s: %w", f.Name, err)
	}
	return nil
}

// Current reads who holds a lease, at which epoch and whether it is live
// by the database's clock (for status and tests).
func Current(ctx context.Context, db DB, schema, name string) (holder string, epoch int64, live bool, err error) {
	err = db.QueryRow(ctx, `SELECT holder, epoch, expires_at > now() FROM `+pgx.Identifier{schema, Table}.Sanitize()+
		` WHERE name = $1`, name).Scan(&holder, &epoch, &live)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("read lease %s: %w", name, err)
	}
	return holder, epoch, live, nil
}

// NewHolder names a candidate uniquely: host, pid and a random part, so a
// restarted process (same host and maybe the same pid) is a new holder.
func NewHolder(prefix string) string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s@%s:%d:%s", prefix, host, os.Getpid(), hex.EncodeToString(b[:]))
}
