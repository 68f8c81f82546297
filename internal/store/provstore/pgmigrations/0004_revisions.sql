-- Revisions of a job's worker spec handed over by a signed provisioner.revise
-- (issue 21), so a provisioner restarted mid-rollout, or a standby taking
-- over, still launches them.
CREATE TABLE revisions (
	job     TEXT NOT NULL,
	digest  TEXT NOT NULL,
	spec    BYTEA NOT NULL,
	created BIGINT NOT NULL,
	PRIMARY KEY (job, digest)
);
