-- 0006 (reembed): model upgrades as jobs (pipeline/jobs/reembed.py).
--
-- * jobs.kind gains 'reembed': re-embed a scope's enrolled faces from their stored crops with
--   another model pack, writing the new vectors beside the old ones.
-- * scope_models: the model a scope ('all' or 'group=<id>', as index snapshots name scopes) was
--   switched to by a finished reembed job. reindex and identify-batch without --model use it;
--   a scope without a row uses the model of most of its faces, as before.
-- (0004 is the job-leases migration, 0005 the API keys.)

ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN
    ('enroll', 'reidentify', 'detect', 'identify-batch', 'reindex', 'reembed'));

CREATE TABLE IF NOT EXISTS scope_models (
    scope       text PRIMARY KEY,
    model_id    text NOT NULL,
    job_id      uuid,
    switched_at timestamptz NOT NULL DEFAULT now()
);
