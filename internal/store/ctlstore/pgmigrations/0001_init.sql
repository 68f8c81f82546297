-- The controller's store in PostgreSQL: the same tables as the SQLite store
-- (migrations/), times as Unix nanoseconds (0 = never), in its own schema.
CREATE TABLE jobs (
	name          TEXT PRIMARY KEY,
	file_config   TEXT NOT NULL,
	policy        TEXT NOT NULL,
	last_scale_at BIGINT NOT NULL DEFAULT 0,
	updated       BIGINT NOT NULL
);

CREATE TABLE reconfigurations (
	id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time   BIGINT NOT NULL,
	job    TEXT NOT NULL,
	who    TEXT NOT NULL,
	what   TEXT NOT NULL,
	error  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE decisions (
	seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time    BIGINT NOT NULL,
	job     TEXT NOT NULL,
	engine  TEXT NOT NULL,
	reason  TEXT NOT NULL,
	actions TEXT NOT NULL,
	target  INTEGER NOT NULL,
	scaled  BOOLEAN NOT NULL DEFAULT false,
	error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX decisions_job ON decisions (job, seq);

CREATE TABLE launches (
	launch_id TEXT PRIMARY KEY,
	job       TEXT NOT NULL,
	seq       BIGINT NOT NULL,
	count     INTEGER NOT NULL,
	spec      TEXT NOT NULL,
	state     TEXT NOT NULL DEFAULT 'pending',
	error     TEXT NOT NULL DEFAULT '',
	created   BIGINT NOT NULL
);
CREATE INDEX launches_pending ON launches (state, job);

CREATE TABLE drains (
	job         TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	since       BIGINT NOT NULL,
	PRIMARY KEY (job, instance_id)
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

-- The pools' history.
CREATE TABLE samples (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time        BIGINT NOT NULL,
	job         TEXT NOT NULL,
	desired     INTEGER NOT NULL,
	running     INTEGER NOT NULL,
	healthy     INTEGER NOT NULL,
	queue_depth INTEGER
);
CREATE INDEX samples_job_time ON samples (job, time);
