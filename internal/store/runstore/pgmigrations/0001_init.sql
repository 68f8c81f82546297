-- Runs, their services and their append-only event history, in PostgreSQL.
-- Times are fixed-width RFC3339 UTC text with nanoseconds as in the SQLite
-- store (timestamptz keeps only microseconds); NULL means "not yet".

CREATE TABLE runs (
	name      TEXT PRIMARY KEY CHECK (name <> ''),
	plan_path TEXT NOT NULL,
	plan_hash TEXT NOT NULL,
	state     TEXT NOT NULL,
	plan      BYTEA,
	created   TEXT NOT NULL,
	updated   TEXT NOT NULL
);

CREATE TABLE services (
	run        TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE,
	name       TEXT NOT NULL CHECK (name <> ''),
	level      INTEGER NOT NULL,
	state      TEXT NOT NULL,
	attributes TEXT NOT NULL CHECK (attributes::jsonb IS NOT NULL),
	host       TEXT NOT NULL CHECK (host::jsonb IS NOT NULL),
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
	seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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

-- The history may only grow; the one way out is deleting the whole run,
-- whose cascade runs after the run row is gone.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		RAISE EXCEPTION 'events are append-only';
	END IF;
	IF EXISTS (SELECT 1 FROM runs WHERE name = OLD.run) THEN
		RAISE EXCEPTION 'events are append-only; delete the run instead';
	END IF;
	RETURN OLD;
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION events_append_only();
