-- The ledger's table, as a store's migration adds it.
CREATE TABLE commands (
	id       TEXT PRIMARY KEY,
	type     TEXT NOT NULL,
	sig      TEXT NOT NULL,
	state    TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	reply    BLOB,
	started  INTEGER NOT NULL,
	updated  INTEGER NOT NULL
);
CREATE INDEX commands_updated ON commands(updated);
