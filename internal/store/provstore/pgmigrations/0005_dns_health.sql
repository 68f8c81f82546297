-- The controller's last word on a running worker's health, for its DNS
-- records (issue 20): '' until first healthy, then 'healthy' or
-- 'unhealthy'. In the ledger, so a restarted provisioner publishes the
-- same records without waiting for the controller to speak again.
ALTER TABLE instances ADD COLUMN health TEXT NOT NULL DEFAULT '';
