-- 0008 (job lease): the hold of a job that runs as one long task (reembed), like item leases.
--
-- * jobs.lease_owner / lease_until: the run holding the job renews its lease while it works
--   (pipeline/jobs/lease.py); a job still 'running' after its lease ended lost its worker, and
--   the watchdog re-sends its task, which resumes where the database says it stopped.
-- * jobs.lease_resends: how often the watchdog re-sent the job's task; past
--   watchdog_max_resends the job fails with ITEM_LOST instead of travelling forever.

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_owner text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_resends integer NOT NULL DEFAULT 0;
