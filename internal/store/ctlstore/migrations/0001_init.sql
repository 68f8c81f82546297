-- Job configurations: file_config is the definition last read from the jobs
-- file; policy is the engine configuration in force (after reconfigure).
CREATE TABLE jobs (
	name          TEXT PRIMARY KEY,
	file_config   TEXT NOT NULL,
	policy        TEXT NOT NULL,
	last_scale_at INTEGER NOT NULL DEFAULT 0,
	updated       INTEGER NOT NULL
);

CREATE TABLE reconfigurations (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	time   INTEGER NOT NULL,
	job    TEXT NOT NULL,
	who    TEXT NOT NULL,
	what   TEXT NOT NULL,
	error  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE decisions (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	time    INTEGER NOT NULL,
	job     TEXT NOT NULL,
	engine  TEXT NOT NULL,
	reason  TEXT NOT NULL,
	actions TEXT NOT NULL,
	target  INTEGER NOT NULL,
	scaled  INTEGER NOT NULL DEFAULT 0,
	error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX decisions_job ON decisions (job, seq);

-- Launches recorded before they are sent. state: pending (not yet known to
-- have reached the provisioner), done (the provisioner has records for it),
-- refused (the provisioner said no; never resent).
CREATE TABLE launches (
	launch_id TEXT PRIMARY KEY,
	job       TEXT NOT NULL,
	seq       INTEGER NOT NULL,
	count     INTEGER NOT NULL,
	spec      TEXT NOT NULL,
	state     TEXT NOT NULL DEFAULT 'pending',
	error     TEXT NOT NULL DEFAULT '',
	created   INTEGER NOT NULL
);
CREATE INDEX launches_pending ON launches (state, job);

CREATE TABLE drains (
	job         TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	since       INTEGER NOT NULL,
	PRIMARY KEY (job, instance_id)
);

CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
