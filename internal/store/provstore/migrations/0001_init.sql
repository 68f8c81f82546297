CREATE TABLE launches (
	launch_id TEXT PRIMARY KEY,
	job       TEXT NOT NULL,
	count     INTEGER NOT NULL,
	spec      BLOB,
	created   INTEGER NOT NULL
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
	live      INTEGER NOT NULL,
	created   INTEGER NOT NULL,
	updated   INTEGER NOT NULL
);
CREATE INDEX instances_launch ON instances(launch_id);
CREATE INDEX instances_live ON instances(live, job);
CREATE TABLE history (
	instance_id TEXT NOT NULL REFERENCES instances(id),
	seq         INTEGER NOT NULL,
	state       TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	time        INTEGER NOT NULL,
	PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
