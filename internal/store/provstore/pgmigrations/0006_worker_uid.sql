-- The uid an isolated local worker runs as, one of its own (issue 15):
-- chosen and recorded with its launch, before the process starts, so a
-- restarted provisioner relaunches it under the same uid and never hands
-- that uid to another worker while this one lives. 0: none (the driver
-- runs it as a named user, or as the provisioner's own).
ALTER TABLE instances ADD COLUMN worker_uid BIGINT NOT NULL DEFAULT 0;
-- No two live workers share a uid, whoever allocates.
CREATE UNIQUE INDEX instances_worker_uid ON instances(worker_uid) WHERE live AND worker_uid > 0;
