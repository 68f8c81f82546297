-- Each job's latest rollout (controller.Rollout as JSON), so a controller
-- restarted mid-rollout resumes it.
CREATE TABLE rollouts (
	job     TEXT PRIMARY KEY,
	state   TEXT NOT NULL,
	updated BIGINT NOT NULL
);
