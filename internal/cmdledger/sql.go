package cmdledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Schema is the table SQL uses. A store adds it in one of its own
// migrations (SQL files cannot import it, so they copy it; a test in each
// store checks that the ledger works on its database).
const Schema = `CREATE TABLE commands (
	id       TEXT PRIMARY KEY,
	type     TEXT NOT NULL,
	sig      TEXT NOT NULL,
	state    TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	reply    BLOB,
	started  INTEGER NOT NULL,
	updated  INTEGER NOT NULL
);
CREATE INDEX commands_updated ON commands(updated);`

// SQL is a Ledger in the commands table (see Schema) of a SQLite database.
type SQL struct {
	DB *sql.DB
}

var _ Ledger = SQL{}

// Lookup implements Ledger.
func (l SQL) Lookup(ctx context.Context, id string) (Entry, error) {
	e, err := scan(l.DB.QueryRowContext(ctx, `SELECT id, type, sig, state, attempts, reply, started, updated FROM commands WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, fmt.Errorf("command %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("look up command %q: %w", id, err)
	}
	return e, nil
}

func scan(row *sql.Row) (Entry, error) {
	var e Entry
	var state string
	var reply []byte
	var started, updated int64
	if err := row.Scan(&e.ID, &e.Type, &e.Sig, &state, &e.Attempts, &reply, &started, &updated); err != nil {
		return Entry{}, err
	}
	e.State, e.Reply = State(state), reply
	e.Started, e.Updated = time.Unix(0, started).UTC(), time.Unix(0, updated).UTC()
	return e, nil
}

// Start implements Ledger in one transaction.
func (l SQL) Start(ctx context.Context, e Entry) (Entry, error) {
	tx, err := l.DB.BeginTx(ctx, nil)
	if err != nil {
		return Entry{}, fmt.Errorf("record command %q: %w", e.ID, err)
	}
	defer tx.Rollback()
	now := e.Started.UnixNano()
	if _, err := tx.ExecContext(ctx, `INSERT INTO commands(id, type, sig, state, attempts, started, updated)
		VALUES (?, ?, ?, ?, 1, ?, ?)
		ON CONFLICT(id) DO UPDATE SET attempts = attempts + 1, updated = excluded.updated WHERE state = ?`,
		e.ID, e.Type, e.Sig, string(StateStarted), now, now, string(StateStarted)); err != nil {
		return Entry{}, fmt.Errorf("record command %q: %w", e.ID, err)
	}
	got, err := scan(tx.QueryRowContext(ctx, `SELECT id, type, sig, state, attempts, reply, started, updated FROM commands WHERE id = ?`, e.ID))
	if err != nil {
		return Entry{}, fmt.Errorf("record command %q: %w", e.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return Entry{}, fmt.Errorf("record command %q: %w", e.ID, err)
	}
	return got, nil
}

// Finish implements Ledger.
func (l SQL) Finish(ctx context.Context, id string, reply []byte, now time.Time) error {
	res, err := l.DB.ExecContext(ctx, `UPDATE commands SET state = ?, reply = ?, updated = ? WHERE id = ?`,
		string(StateDone), reply, now.UnixNano(), id)
	if err != nil {
		return fmt.Errorf("record result of command %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("record result of command %q: %w", id, ErrNotFound)
	}
	return nil
}

// Prune implements Ledger.
func (l SQL) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := l.DB.ExecContext(ctx, `DELETE FROM commands WHERE updated < ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("prune command ledger: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
