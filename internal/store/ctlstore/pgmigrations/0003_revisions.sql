-- Each job's worker-spec revisions: the plan's, and each rollout's. spec is
-- the jobspec.Spec as JSON; outcome where the revision stands (current,
-- superseded, ...), note why.
CREATE TABLE revisions (
	job     TEXT NOT NULL,
	number  INTEGER NOT NULL,
	digest  TEXT NOT NULL,
	spec    TEXT NOT NULL,
	time    BIGINT NOT NULL,
	who     TEXT NOT NULL,
	outcome TEXT NOT NULL,
	note    TEXT NOT NULL DEFAULT '',
	updated BIGINT NOT NULL,
	PRIMARY KEY (job, number)
);
