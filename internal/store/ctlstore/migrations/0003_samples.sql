-- The pools' history: one row per job per sample (every second), thinned to
-- one a minute once older than an hour and dropped after the retention.
-- queue_depth is NULL when the depth could not be read.
CREATE TABLE samples (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	time        INTEGER NOT NULL,
	job         TEXT NOT NULL,
	desired     INTEGER NOT NULL,
	running     INTEGER NOT NULL,
	healthy     INTEGER NOT NULL,
	queue_depth INTEGER
);
CREATE INDEX samples_job_time ON samples (job, time);
