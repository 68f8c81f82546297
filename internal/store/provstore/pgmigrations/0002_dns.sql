-- A worker's DNS name (issue 20), chosen when its launch is recorded and
-- before any record is written, so a restarted provisioner repairs the
-- record from what is live.
ALTER TABLE instances ADD COLUMN dns_name TEXT NOT NULL DEFAULT '';
