-- 0004 (pipeline): who submitted a job, item leases, listing progress and the watchdog's notes.
--
-- * jobs.origin: 'cli' and 'schedule' jobs are an operator's (local paths allowed); 'http' and
--   's3-event' jobs are a caller's, whose sources are never read from the local file system.
-- * job_items.lease_until / lease_owner: a claimed item is held by one chunk run until its lease
--   ends; the run renews it while it works. An item still 'running' after its lease ended lost
--   its worker: the watchdog puts it back to 'pending' and re-sends its chunk.
-- * job_items.resends: how often the watchdog re-sent the item; past the limit it fails with a
--   code instead of being sent forever.
-- * jobs.listing_token / listing_next_seq: where the listing stopped, so a lost listing task is
--   resumed from its last page rather than restarted.
-- * jobs.progress_at: the last time any item of the job finished or was claimed (stall checks).
-- * jobs.stalled: the watchdog's last finding about a job that makes no progress (NULL: none).

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'cli'
    CHECK (origin IN ('cli', 'http', 's3-event', 'schedule'));
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS listing_token text;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS listing_next_seq integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress_at timestamptz;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS stalled jsonb;

ALTER TABLE job_items ADD COLUMN IF NOT EXISTS lease_until timestamptz;
ALTER TABLE job_items ADD COLUMN IF NOT EXISTS lease_owner text;
ALTER TABLE job_items ADD COLUMN IF NOT EXISTS resends integer NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS job_items_running_lease_idx ON job_items (lease_until)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_unfinished_idx ON jobs (created_at)
    WHERE status IN ('pending', 'running');
