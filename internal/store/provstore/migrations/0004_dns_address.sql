-- The address a worker's DNS record holds (issue 20), from the driver once
-- it runs, so a restarted provisioner repairs the record without asking.
ALTER TABLE instances ADD COLUMN dns_address TEXT NOT NULL DEFAULT '';
