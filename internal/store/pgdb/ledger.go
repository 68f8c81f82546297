package pgdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"nightshift/internal/cmdledger"
)

// LedgerSchema is the commands table Ledger uses, the PostgreSQL spelling
// of cmdledger.Schema; a store adds it in one of its migrations.
const LedgerSchema = `CREATE TABLE commands (
	id       TEXT PRIMARY KEY,
	type     TEXT NOT NULL,
	sig      TEXT NOT NULL,
	state    TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	reply    BYTEA,
	started  BIGINT NOT NULL,
	updated  BIGINT NOT NULL
);
CREATE INDEX commands_updated ON commands(updated);`

// Ledger is a cmdledger.Ledger in the commands table of a store's schema.
// Its writes are fenced like the store's: a deposed leader cannot record a
// command as handled.
type Ledger struct{ DB *DB }

var _ cmdledger.Ledger = Ledger{}

const ledgerColumns = `id, type, sig, state, attempts, reply, started, updated`

func scanEntry(row pgx.Row) (cmdledger.Entry, error) {
	var e cmdledger.Entry
	var state string
	var reply []byte
	var started, updated int64
	if err := row.Scan(&e.ID, &e.Type, &e.Sig, &state, &e.Attempts, &reply, &started, &updated); err != nil {
		return cmdledger.Entry{}, err
	}
	e.State, e.Reply = cmdledger.State(state), reply
	e.Started, e.Updated = time.Unix(0, started).UTC(), time.Unix(0, updated).UTC()
	return e, nil
}

// Lookup implements cmdledger.Ledger.
func (l Ledger) Lookup(ctx context.Context, id string) (cmdledger.Entry, error) {
	e, err := scanEntry(l.DB.Pool.QueryRow(ctx, `SELECT `+ledgerColumns+` FROM commands WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return cmdledger.Entry{}, fmt.Errorf("command %q: %w", id, cmdledger.ErrNotFound)
	}
	if err != nil {
		return cmdledger.Entry{}, fmt.Errorf("look up command %q: %w", id, err)
	}
	return e, nil
}

// Start implements cmdledger.Ledger in one transaction; the upsert locks
// the row, so two consumers of one id count their attempts one by one.
func (l Ledger) Start(ctx context.Context, e cmdledger.Entry) (cmdledger.Entry, error) {
	var got cmdledger.Entry
	err := l.DB.Write(ctx, func(tx pgx.Tx) error {
		now := e.Started.UnixNano()
		if _, err := tx.Exec(ctx, `INSERT INTO commands AS c (id, type, sig, state, attempts, started, updated)
			VALUES ($1, $2, $3, $4, 1, $5, $5)
			ON CONFLICT (id) DO UPDATE SET attempts = c.attempts + 1, updated = excluded.updated WHERE c.state = $4`,
			e.ID, e.Type, e.Sig, string(cmdledger.StateStarted), now); err != nil {
			return err
		}
		var err error
		got, err = scanEntry(tx.QueryRow(ctx, `SELECT `+ledgerColumns+` FROM commands WHERE id = $1`, e.ID))
		return err
	})
	if err != nil {
		return cmdledger.Entry{}, fmt.Errorf("record command %q: %w", e.ID, err)
	}
	return got, nil
}

// Finish implements cmdledger.Ledger.
func (l Ledger) Finish(ctx context.Context, id string, reply []byte, now time.Time) error {
	err := l.DB.Write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE commands SET state = $1, reply = $2, updated = $3 WHERE id = $4`,
			string(cmdledger.StateDone), reply, now.UnixNano(), id)
		if err == nil && tag.RowsAffected() == 0 {
			return cmdledger.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("record result of command %q: %w", id, err)
	}
	return nil
}

// Prune implements cmdledger.Ledger.
func (l Ledger) Prune(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := l.DB.Write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM commands WHERE updated < $1`, before.UnixNano())
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune command ledger: %w", err)
	}
	return int(n), nil
}
