-- Runs, their services and their append-only event history.
-- Times are fixed-width RFC3339 UTC text with nanoseconds, so that text order
-- is time order; NULL means "not yet".

CREATE TABLE runs (
	name      TEXT PRIMARY KEY NOT NULL CHECK (name <> ''),
	plan_path TEXT NOT NULL,
	plan_hash TEXT NOT NULL,
	state     TEXT NOT NULL,
	plan      BLOB,
	created   TEXT NOT NULL,
	updated   TEXT NOT NULL
);

CREATE TABLE services (
	run        TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
	name       TEXT NOT NULL CHECK (name <> ''),
	level      INTEGER NOT NULL,
	state      TEXT NOT NULL,
	attributes TEXT NOT NULL CHECK (json_valid(attributes)),
	host       TEXT NOT NULL CHECK (json_valid(host)),
	error      TEXT NOT NULL DEFAULT '',
	log_path   TEXT NOT NULL DEFAULT '',
	restarts   INTEGER NOT NULL DEFAULT 0,
	started    TEXT,
	ready_at   TEXT,
	ended      TEXT,
	updated    TEXT NOT NULL,
	PRIMARY KEY (run, name)
);

CREATE INDEX services_by_level ON services (run, level, name);

CREATE TABLE events (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	run     TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
	time    TEXT NOT NULL,
	level   INTEGER NOT NULL DEFAULT 0,
	service TEXT NOT NULL DEFAULT '',
	step    TEXT NOT NULL DEFAULT '',
	kind    TEXT NOT NULL,
	state   TEXT NOT NULL DEFAULT '',
	message TEXT NOT NULL DEFAULT ''
);

CREATE INDEX events_by_run ON events (run, seq);

-- The history is evidence of what happened: it may only grow. The one way
-- out is deleting the whole run, which the cascade does after the run row
-- is gone, so deletes are allowed only for events whose run no longer exists.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
	SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN EXISTS (SELECT 1 FROM runs WHERE name = OLD.run)
BEGIN
	SELECT RAISE(ABORT, 'events are append-only; delete the run instead');
END;
