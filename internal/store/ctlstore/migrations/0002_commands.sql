-- The command ledger (internal/cmdledger.Schema): reconfigure, freeze and unfreeze by id, recorded
-- before they are acted on, so a repeat is answered and never run again.
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
