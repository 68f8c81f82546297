-- The provisioner's ledger in PostgreSQL: the same tables as the SQLite
-- store (migrations/), times as Unix nanoseconds, in the store's own schema.
CREATE TABLE launches (
	launch_id TEXT PRIMARY KEY,
	job       TEXT NOT NULL,
	count     INTEGER NOT NULL,
	spec      BYTEA,
	created   BIGINT NOT NULL
);
CREATE TABLE instances (
	id        TEXT PRIMARY KEY,
	launch_id TEXT NOT NULL REFERENCES launches(launch_id),
	idx       INTEGER NOT NULL,
	job       TEXT NOT NULL,
	driver    TEXT NOT NULL,
	host      TEXT NOT NULL DEFAULT '',
	address   TEXT NOT NULL DEFAULT '',
	pid       INTEGER NOT NULL DEFAULT 0,
	state     TEXT NOT NULL,
	reason    TEXT NOT NULL DEFAULT '',
	live      BOOLEAN NOT NULL,
	created   BIGINT NOT NULL,
	updated   BIGINT NOT NULL
);
CREATE INDEX instances_launch ON instances(launch_id);
CREATE INDEX instances_live ON instances(live, job);
CREATE TABLE history (
	instance_id TEXT NOT NULL REFERENCES instances(id),
	seq         INTEGER NOT NULL,
	state       TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	time        BIGINT NOT NULL,
	PRIMARY KEY (instance_id, seq)
);
CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
-- The command ledger (pgdb.LedgerSchema).
CREATE TABLE commands (
	id       TEXT PRIMARY KEY,
	type     TEXT NOT NULL,
	sig      TEXT NOT NULL,
	state    TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	reply    BYTEA,
	started  BIGINT NOT NULL,
	updated  BIGINT NOT NULL
);
CREATE INDEX commands_updated ON commands(updated);
