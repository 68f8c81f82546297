-- A job's block after silent workers (controller.SilentState, as JSON), so
-- that a restarted controller keeps it; '' when never stored.
ALTER TABLE jobs ADD COLUMN silent TEXT NOT NULL DEFAULT '';
