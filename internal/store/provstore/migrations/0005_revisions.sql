-- Revisions of a job's worker spec handed over by a signed provisioner.revise
-- (issue 21), so a provisioner restarted mid-rollout still launches them.
CREATE TABLE revisions (
	job     TEXT NOT NULL,
	digest  TEXT NOT NULL,
	spec    BLOB NOT NULL,
	created INTEGER NOT NULL,
	PRIMARY KEY (job, digest)
);
